# Turns a file into a C source defining `const char <NAME>[]` (its bytes and
# a NUL) and `const size_t <NAME>_len`, so a binary carries the file without
# reading it at run time:
#   cmake -DIN=proto/openapi.json -DOUT=openapi.c -DNAME=ds_openapi_json -P proto/embed.cmake
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" digits)
math(EXPR len "${digits} / 2")
# 0xNN, per byte (one long line: the file is read by compilers only).
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
file(WRITE "${OUT}.tmp"
     "/* Generated from ${IN} by proto/embed.cmake; do not edit. */\n"
     "#include <stddef.h>\n"
     "const char ${NAME}[] = {\n${bytes}0};\n"
     "const size_t ${NAME}_len = ${len};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
