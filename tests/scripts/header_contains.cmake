# cmake -DHEADER=file -DEXPECT="regex" -P header_contains.cmake
# Passes when the generated header exists and matches EXPECT.
if(NOT EXISTS "${HEADER}")
  message(FATAL_ERROR "'${HEADER}' was not generated")
endif()
file(READ "${HEADER}" text)
if(NOT text MATCHES "${EXPECT}")
  message(FATAL_ERROR "'${HEADER}' does not contain '${EXPECT}'")
endif()
