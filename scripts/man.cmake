# Writes the man page sproc(1) from `sproc --help`, so that the two say
# the same: cmake -DSPROC=path/to/sproc -DOUT=sproc.1 -DVERSION=x -P man.cmake
execute_process(COMMAND ${SPROC} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "sproc --help failed: ${rc}")
endif()
# roff: a backslash is written \e, and a line may not start with . or '
string(REPLACE "\\" "\\e" help "${help}")
string(REGEX REPLACE "\n([.'])" "\n\\\\&\\1" help "${help}")
file(WRITE ${OUT} ".TH SPROC 1 \"\" \"sproc ${VERSION}\" \"User Commands\"
.SH NAME
sproc \\- a Kafka stream processor scripted in Lua
.SH SYNOPSIS
.B sproc
.I SCRIPT.lua
[options]
.br
.B sproc describe
.I SCRIPT.lua
[--dot]
.br
.B sproc test
[DIR] [busted options]
.SH DESCRIPTION
sproc runs a pipeline written in Lua over Kafka topics (and files): it
reads records, runs them through the script's operators, windows, stores
and joins, and writes topics, files or stdout, with at-least-once or
exactly-once delivery. The usage, options and settings follow, as
.B sproc --help
prints them.
.PP
.nf
${help}.fi
.SH FILES
/usr/share/doc/sproc/README.md (the guide), /usr/share/doc/sproc/examples.
.SH SEE ALSO
.BR kafka-topics (1)
")
