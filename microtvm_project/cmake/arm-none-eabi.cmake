# Toolchain file: arm-none-eabi-gcc (Debian gcc-arm-none-eabi 12.2) for a Cortex-M7 with the
# double-precision FPU (STM32H743 and QEMU's mps2-an500). CMakeLists.txt selects it for every
# board except `host`; it can also be passed by hand with -DCMAKE_TOOLCHAIN_FILE=.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)

set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_ASM_COMPILER arm-none-eabi-gcc)
set(CMAKE_OBJCOPY arm-none-eabi-objcopy CACHE FILEPATH "objcopy for the target")
set(CMAKE_SIZE arm-none-eabi-size CACHE FILEPATH "size for the target")

# No OS to link a test program against: check the compiler with a static library.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(MPQ_CPU_FLAGS "-mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16")
set(CMAKE_C_FLAGS_INIT "${MPQ_CPU_FLAGS} -O2 -ffunction-sections -fdata-sections")
set(CMAKE_ASM_FLAGS_INIT "${MPQ_CPU_FLAGS}")
set(CMAKE_EXE_LINKER_FLAGS_INIT "${MPQ_CPU_FLAGS} -Wl,--gc-sections")
set(CMAKE_EXECUTABLE_SUFFIX_C .elf)

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
