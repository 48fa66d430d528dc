# The documentation check (ctest: "documentation: ..."):
#  1. Doxygen over the public headers and the docs (docs/Doxyfile.in) must print no warning: every
#     public class, member, function, enum and namespace is documented, and no comment is malformed.
#  2. Every repository path that README.md, docs/*.md or the code generator names (docs/..., examples/...,
#     tests/..., ...) exists, so that nothing sends a reader to a file a clone does not have.
# Arguments: -DDOXYGEN=<doxygen> -DDOXYFILE=<configured Doxyfile> -DWARNINGS=<its WARN_LOGFILE> -DSOURCE=<repository root>
cmake_minimum_required(VERSION 3.25)
foreach(arg DOXYGEN DOXYFILE WARNINGS SOURCE)
  if(NOT DEFINED ${arg})
    message(FATAL_ERROR "doc_check.cmake: -D${arg}=... is missing")
  endif()
endforeach()

file(REMOVE "${WARNINGS}")
execute_process(COMMAND "${DOXYGEN}" "${DOXYFILE}" RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "doxygen failed (${status}):\n${out}${err}")
endif()
if(EXISTS "${WARNINGS}")
  file(READ "${WARNINGS}" warnings)
  string(STRIP "${warnings}" warnings)
  if(NOT warnings STREQUAL "")
    string(REGEX MATCHALL "warning:" count "${warnings}")
    list(LENGTH count n)
    message(FATAL_ERROR "doxygen: ${n} warning(s). Document each entity named below with a /// comment "
                        "(a ///< comment after a member), or fix the comment:\n${warnings}")
  endif()
endif()
message(STATUS "doxygen: no warnings")

file(GLOB docs "${SOURCE}/README.md" "${SOURCE}/docs/*.md")
file(GLOB_RECURSE code "${SOURCE}/codegen/src/*.cpp" "${SOURCE}/codegen/src/*.hpp" "${SOURCE}/codegen/include/*.hpp"
     "${SOURCE}/runtime/include/*.hpp" "${SOURCE}/dsl/include/*.hpp" "${SOURCE}/cmake/*.cmake")
set(missing "")
set(checked 0)
foreach(file IN LISTS docs code)
  file(READ "${file}" text)
  # A path starts after a space, a parenthesis, a quote or a backquote, so that the tail of a longer
  # path (loopgrad/runtime/x.hpp, build/release/benchmarks/x) is not taken for one. ('[' is left
  # out: CMake's lists group what stands between brackets; a Markdown link's target is in
  # parentheses anyway.)
  string(REGEX MATCHALL "[ \t\n(`\"]((docs|examples|benchmarks|scripts|cmake|tests|dsl|codegen|runtime)/[A-Za-z0-9_./-]*[A-Za-z0-9_])"
         found "${text}")
  foreach(hit IN LISTS found)
    string(SUBSTRING "${hit}" 1 -1 path)
    math(EXPR checked "${checked} + 1")
    if(NOT EXISTS "${SOURCE}/${path}")
      file(RELATIVE_PATH where "${SOURCE}" "${file}")
      list(APPEND missing "${where} names ${path}")
    endif()
  endforeach()
endforeach()
if(missing)
  list(REMOVE_DUPLICATES missing)
  list(JOIN missing "\n  " lines)
  message(FATAL_ERROR "paths named in the documentation or the generated code that a clone does not have:\n  ${lines}")
endif()
message(STATUS "${checked} repository paths named in the documentation and the generator: all exist")
