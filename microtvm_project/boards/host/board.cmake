# Board `host`: the native C compiler; the firmware is an ordinary program taking
# `input.bin output.bin`. Used to check generated code and as a bit-exact reference for QEMU.
set(MPQ_BOARD_SOURCES
    "${MPQ_BOARD_DIR}/board_host.c"
    "${MPQ_RUNTIME_DIR}/mpq_file_io.c")
set(MPQ_BOARD_DEFINITIONS "")
set(MPQ_BOARD_LINK_OPTIONS "")
set(MPQ_BOARD_LINK_LIBRARIES "")
set(MPQ_BOARD_LINKER_SCRIPT "")
add_compile_options(-O2)
