# Board `nucleo_h743zi`: the real STM32H743ZI (Nucleo-H743ZI). Builds here, cannot run here:
# flash build/mpq_firmware.elf with OpenOCD (`openocd -f board/st_nucleo_h743zi.cfg -c
# "program build/mpq_firmware.elf verify reset exit"`) or st-flash, and read the console on
# the ST-LINK virtual COM port at 115200 baud.
set(MPQ_BOARD_SOURCES
    "${MPQ_BOARD_DIR}/startup_nucleo_h743zi.c"
    "${MPQ_BOARD_DIR}/system_h743.c"
    "${MPQ_BOARD_DIR}/board_nucleo_h743zi.c"
    "${MPQ_RUNTIME_DIR}/mpq_fault.c")
set(MPQ_BOARD_DEFINITIONS "")
set(MPQ_BOARD_LINK_OPTIONS --specs=nano.specs -nostartfiles)
set(MPQ_BOARD_LINK_LIBRARIES -lc -lm -lgcc)
set(MPQ_BOARD_LINKER_SCRIPT "${MPQ_BOARD_DIR}/nucleo_h743zi.ld")
