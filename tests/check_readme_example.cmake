# Fails when the C example in README.md is not byte for byte
# plugins/seen.c, which the build compiles with -Werror: the README's
# example then always builds.
file(READ "${README}" readme)
file(READ "${SOURCE}" source)
string(FIND "${readme}" "```c\n/* seen.c" start)
if(start EQUAL -1)
  message(FATAL_ERROR "README.md has no ```c block starting with /* seen.c")
endif()
math(EXPR start "${start} + 5")
string(SUBSTRING "${readme}" ${start} -1 rest)
string(FIND "${rest}" "```" end)
string(SUBSTRING "${rest}" 0 ${end} block)
if(NOT block STREQUAL source)
  message(FATAL_ERROR "the example in README.md differs from plugins/seen.c")
endif()
message(STATUS "README.md example equals plugins/seen.c")
