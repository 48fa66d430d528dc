# loopgrad_add_network(<target> SPEC <file.cpp>
#                      [NAMESPACE <name>] [SCALAR float|double]
#                      [OUTPUT_DIR <dir>] [REPORT_DIR <dir>] [BLAS_MIN_FLOPS <n>] [PORTABLE]
#                      [COMPILE_DEFINITIONS <def>...] [INCLUDE_DIRECTORIES <dir>...]
#                      [LAYER_LOCAL <state>... | "*"])
#
# Builds the generator from SPEC (a source that declares a network with the DSL and ends with
# LOOPGRAD_GENERATOR(net)), runs it at build time, and makes <target> an INTERFACE library whose
# include directory holds the emitted kernel header <target>.hpp. The generator reruns whenever the
# spec or loopgrad changes. The graph, the report and the inspector page go to REPORT_DIR (default:
# OUTPUT_DIR) as <target>.dot, <target>.json and <target>.html (the page draws the graph with
# Graphviz's dot when it is on the PATH at build time). The target's properties LOOPGRAD_HEADER,
# LOOPGRAD_DOT, LOOPGRAD_JSON and LOOPGRAD_HTML hold the four paths. A file whose text did not
# change is not rewritten, so nothing that includes the header rebuilds after a comment-only edit.
#
# COMPILE_DEFINITIONS and INCLUDE_DIRECTORIES go to the spec's compilation, so that one spec file
# can generate several networks (e.g. COMPILE_DEFINITIONS HIDDEN=128 with a spec that reads HIDDEN).
# The analysis's warnings (parameters that reach no loss, Recurrency-Abstraction violations) print
# at build time, one line each.
#
# LAYER_LOCAL names states (or "*" for all) whose Delta keeps only its own loop's parameters: the
# layer_local approximation, NOT exact, for comparing with the exact kernel (docs/guide.md); the
# header's first lines and the report's "approximation" say what it dropped.
#
# BLAS_MIN_FLOPS n makes every dense product of at least n flops a CBLAS call (the kernel then
# needs OpenBLAS, which <target> links); without it the header needs nothing but the standard
# library. NAMESPACE defaults to <target>, SCALAR to double, OUTPUT_DIR to
# ${CMAKE_CURRENT_BINARY_DIR}/<target>. (Halide's generator helpers work the same way.)
#
# Code that links <target> is compiled for the building machine (-march=native, where the
# compiler takes it): the emitted loops then use its vector units (AVX2, AVX-512), 2-4x faster
# than the baseline x86-64 build. For binaries that must run on other machines, pass PORTABLE or
# configure with -DLOOPGRAD_PORTABLE=ON.
include(CheckCXXCompilerFlag)
option(LOOPGRAD_PORTABLE "Compile code that links a generated kernel for any CPU of the architecture, not for this machine" OFF)
check_cxx_compiler_flag(-march=native LOOPGRAD_HAVE_MARCH_NATIVE)
function(loopgrad_add_network target)
  cmake_parse_arguments(ARG "PORTABLE" "SPEC;NAMESPACE;SCALAR;OUTPUT_DIR;REPORT_DIR;BLAS_MIN_FLOPS"
                        "COMPILE_DEFINITIONS;INCLUDE_DIRECTORIES;LAYER_LOCAL" ${ARGN})
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "loopgrad_add_network(${target}): unknown arguments ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_SPEC)
    message(FATAL_ERROR "loopgrad_add_network(${target}): SPEC <file> is required: the source that declares the network")
  endif()
  get_filename_component(spec "${ARG_SPEC}" ABSOLUTE)
  if(NOT EXISTS "${spec}")
    message(FATAL_ERROR "loopgrad_add_network(${target}): spec file '${spec}' does not exist")
  endif()
  if(NOT ARG_NAMESPACE)
    set(ARG_NAMESPACE ${target})
  endif()
  if(NOT ARG_SCALAR)
    set(ARG_SCALAR double)
  endif()
  if(NOT ARG_SCALAR MATCHES "^(float|double)$")
    message(FATAL_ERROR "loopgrad_add_network(${target}): SCALAR must be float or double, not '${ARG_SCALAR}'")
  endif()
  if(NOT ARG_OUTPUT_DIR)
    set(ARG_OUTPUT_DIR ${CMAKE_CURRENT_BINARY_DIR}/${target})
  endif()
  if(NOT ARG_REPORT_DIR)
    set(ARG_REPORT_DIR ${ARG_OUTPUT_DIR})
  endif()

  set(blas_option)
  if(ARG_BLAS_MIN_FLOPS)
    find_library(LOOPGRAD_OPENBLAS_LIBRARY openblas)
    if(NOT LOOPGRAD_OPENBLAS_LIBRARY)
      message(FATAL_ERROR "loopgrad_add_network(${target}): BLAS_MIN_FLOPS needs OpenBLAS (apt-get install libopenblas-dev)")
    endif()
    set(blas_option --blas-min-flops ${ARG_BLAS_MIN_FLOPS})
  endif()

  set(layer_local_option)
  if(ARG_LAYER_LOCAL)
    list(JOIN ARG_LAYER_LOCAL "," layer_local)
    set(layer_local_option --layer-local ${layer_local})
  endif()

  set(generator ${target}_generator)
  add_executable(${generator} ${spec})
  target_link_libraries(${generator} PRIVATE loopgrad::dsl loopgrad::codegen)
  target_compile_features(${generator} PRIVATE cxx_std_20)
  if(ARG_COMPILE_DEFINITIONS)
    target_compile_definitions(${generator} PRIVATE ${ARG_COMPILE_DEFINITIONS})
  endif()
  if(ARG_INCLUDE_DIRECTORIES)
    target_include_directories(${generator} PRIVATE ${ARG_INCLUDE_DIRECTORIES})
  endif()

  set(header ${ARG_OUTPUT_DIR}/${target}.hpp)
  set(dot ${ARG_REPORT_DIR}/${target}.dot)
  set(json ${ARG_REPORT_DIR}/${target}.json)
  set(html ${ARG_REPORT_DIR}/${target}.html)
  add_custom_command(
    OUTPUT ${header} ${dot} ${json} ${html}
    COMMAND ${generator} --header ${header} --dot ${dot} --json ${json} --html ${html}
            --namespace ${ARG_NAMESPACE} --scalar ${ARG_SCALAR} ${blas_option} ${layer_local_option} --quiet
    DEPENDS ${generator}
    COMMENT "loopgrad: generating ${target}.hpp from ${ARG_SPEC}"
    VERBATIM)
  add_custom_target(${target}_generate DEPENDS ${header} ${dot} ${json} ${html})

  add_library(${target} INTERFACE)
  target_include_directories(${target} INTERFACE ${ARG_OUTPUT_DIR})
  target_compile_features(${target} INTERFACE cxx_std_20)
  add_dependencies(${target} ${target}_generate)
  if(ARG_BLAS_MIN_FLOPS)
    target_link_libraries(${target} INTERFACE ${LOOPGRAD_OPENBLAS_LIBRARY})
  endif()
  if(NOT ARG_PORTABLE AND NOT LOOPGRAD_PORTABLE AND LOOPGRAD_HAVE_MARCH_NATIVE)
    target_compile_options(${target} INTERFACE -march=native)
  endif()
  set_target_properties(${target} PROPERTIES LOOPGRAD_HEADER ${header} LOOPGRAD_DOT ${dot} LOOPGRAD_JSON ${json}
                                             LOOPGRAD_HTML ${html})
endfunction()
