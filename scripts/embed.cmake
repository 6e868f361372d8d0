# Generates a C file embedding files as byte arrays (run with cmake -P):
#   -DOUT=file.c -DFILES="name1=path1;name2=path2"
# The sproc executable loads its Lua API from these, so it needs no files
# beside it.
set(body "#include <stddef.h>\n#include \"sp_embed.h\"\n\n")
set(table "const sp_embedded sp_embedded_files[] = {\n")
set(i 0)
foreach(entry IN LISTS FILES)
  string(REPLACE "=" ";" parts "${entry}")
  list(GET parts 0 name)
  list(GET parts 1 path)
  file(READ "${path}" hex HEX)
  string(LENGTH "${hex}" hexlen)
  math(EXPR n "${hexlen} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "static const unsigned char f${i}[] = {${bytes}0};\n")
  string(APPEND table "    {\"${name}\", (const char *)f${i}, ${n}},\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND table "    {NULL, NULL, 0}\n};\n")
file(WRITE "${OUT}.tmp" "${body}\n${table}")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
