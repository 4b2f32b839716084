# Board `qemu_m7`: QEMU `-M mps2-an500` (Cortex-M7, FPU) linked with the STM32H743's FLASH and
# RAM sizes. Semihosting (newlib rdimon) gives printf and file I/O on QEMU's host.
set(MPQ_BOARD_SOURCES
    "${MPQ_BOARD_DIR}/startup_qemu_m7.c"
    "${MPQ_BOARD_DIR}/board_qemu_m7.c"
    "${MPQ_RUNTIME_DIR}/mpq_file_io.c"
    "${MPQ_RUNTIME_DIR}/mpq_fault.c")
set(MPQ_BOARD_DEFINITIONS "")
set(MPQ_BOARD_LINK_OPTIONS --specs=rdimon.specs -nostartfiles)
set(MPQ_BOARD_LINK_LIBRARIES -lc -lrdimon)
set(MPQ_BOARD_LINKER_SCRIPT "${MPQ_BOARD_DIR}/qemu_m7.ld")
