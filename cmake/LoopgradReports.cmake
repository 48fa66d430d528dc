# loopgrad_add_reports(<target> SOURCES <files>...)
# Builds <target> from SOURCES (a main() that hands networks to loopgrad::emit::report_main) and
# runs it at build time, writing <network>.dot, <network>.json and <network>.html (the inspector)
# into ${LOOPGRAD_REPORT_DIR}.
set(LOOPGRAD_REPORT_DIR ${CMAKE_BINARY_DIR}/reports CACHE PATH "Where the build writes network reports")
function(loopgrad_add_reports target)
  cmake_parse_arguments(ARG "" "" "SOURCES" ${ARGN})
  add_executable(${target} ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE loopgrad::dsl loopgrad::codegen)
  loopgrad_project_options(${target})
  set(stamp ${CMAKE_CURRENT_BINARY_DIR}/${target}.stamp)
  add_custom_command(OUTPUT ${stamp}
    COMMAND ${target} --out ${LOOPGRAD_REPORT_DIR}
    COMMAND ${CMAKE_COMMAND} -E touch ${stamp}
    DEPENDS ${target}
    COMMENT "Writing network reports of ${target} to ${LOOPGRAD_REPORT_DIR}"
    VERBATIM)
  add_custom_target(${target}_run ALL DEPENDS ${stamp})
endfunction()
