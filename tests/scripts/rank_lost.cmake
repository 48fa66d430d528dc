# cmake -DCOMMAND="mpirun;-np;3;prog;--kill-rank;1" -DBOUND=seconds -P rank_lost.cmake
# Passes when the job ends by itself within BOUND seconds (every rank gone, none left waiting for
# the lost one) with a failure, and says which rank was lost.
string(TIMESTAMP start "%s")
execute_process(COMMAND ${COMMAND} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT ${BOUND})
string(TIMESTAMP end "%s")
math(EXPR seconds "${end} - ${start}")
if(rc MATCHES "timeout")
  message(FATAL_ERROR "the job still ran after ${BOUND} s: a rank waits for the lost one\n${out}${err}")
endif()
if(rc EQUAL 0)
  message(FATAL_ERROR "the job succeeded although a rank was lost:\n${out}${err}")
endif()
if(NOT "${out}${err}" MATCHES "rank 1|process rank 1|signal 9|Killed")
  message(FATAL_ERROR "the output does not say which rank was lost:\n${out}${err}")
endif()
message(STATUS "every rank ended in ${seconds} s (exit ${rc}):\n${err}")
