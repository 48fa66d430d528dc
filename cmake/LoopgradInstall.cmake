# Installs the libraries, headers and the package config that find_package(loopgrad) reads.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(LOOPGRAD_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/loopgrad)
set(_loopgrad_installed loopgrad_codegen loopgrad_dsl loopgrad_runtime loopgrad_kernel_io)
set(LOOPGRAD_WITH_DISTRIBUTED OFF)
if(TARGET loopgrad_distributed)
  list(APPEND _loopgrad_installed loopgrad_distributed)
  set(LOOPGRAD_WITH_DISTRIBUTED ON)
endif()
install(TARGETS ${_loopgrad_installed} EXPORT loopgradTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/codegen/include/ ${PROJECT_SOURCE_DIR}/dsl/include/
                  ${PROJECT_SOURCE_DIR}/runtime/include/ ${PROJECT_SOURCE_DIR}/distributed/include/
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT loopgradTargets NAMESPACE loopgrad:: DESTINATION ${LOOPGRAD_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/loopgradConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/loopgradConfig.cmake INSTALL_DESTINATION ${LOOPGRAD_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/loopgradConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/loopgradConfig.cmake ${PROJECT_BINARY_DIR}/loopgradConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/LoopgradAddNetwork.cmake
        DESTINATION ${LOOPGRAD_CMAKE_DIR})
