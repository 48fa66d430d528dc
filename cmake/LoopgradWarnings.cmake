# Warnings as errors for loopgrad's own code. Dependencies come in through imported targets,
# so their headers are system headers and their warnings stay out of the way.
add_library(loopgrad_warnings INTERFACE)
target_compile_options(loopgrad_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Werror -Wshadow -Wnon-virtual-dtor -Wold-style-cast)

# Sanitizers apply to everything the build compiles and links, generated kernels and the
# generators that loopgrad_add_network builds included.
if(LOOPGRAD_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

# loopgrad_project_options(<target>): what every target of the project compiles with.
function(loopgrad_project_options target)
  target_compile_features(${target} PRIVATE cxx_std_20)
  set_target_properties(${target} PROPERTIES CXX_EXTENSIONS OFF)
  target_link_libraries(${target} PRIVATE $<BUILD_INTERFACE:loopgrad_warnings>)
endfunction()
