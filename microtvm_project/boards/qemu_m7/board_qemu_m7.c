/*
 * board_qemu_m7.c - QEMU mps2-an500. Tensors are files on QEMU's host through semihosting:
 * "input.bin" is read and "output.bin" written, relative to QEMU's working directory.
 * Counter: CMSDK timer 0 at 0x40000000, counting down at 25 MHz, read as an up-counter; with
 * QEMU's `-icount shift=0` one tick is exactly 40 guest instructions.
 */
#include "mpq_board.h"
#include "mpq_file_io.h"

#define CMSDK_TIMER0_CTRL (*(volatile uint32_t *)0x40000000u)
#define CMSDK_TIMER0_VALUE (*(volatile uint32_t *)0x40000004u)
#define CMSDK_TIMER0_RELOAD (*(volatile uint32_t *)0x40000008u)

#define SEMIHOSTING_SYS_WRITE0 0x04
#define SEMIHOSTING_SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

const char *const mpq_board_counter_unit = "cmsdk_ticks";

void mpq_board_init(void)
{
    CMSDK_TIMER0_CTRL = 0;
    CMSDK_TIMER0_RELOAD = 0xFFFFFFFFu;
    CMSDK_TIMER0_VALUE = 0xFFFFFFFFu;
    CMSDK_TIMER0_CTRL = 1; /* enable, no interrupt */
}

uint32_t mpq_board_counter(void) { return 0xFFFFFFFFu - CMSDK_TIMER0_VALUE; }

const uint8_t *mpq_board_input(int argc, char **argv)
{
    (void)argc, (void)argv;
    return mpq_file_read_input("input.bin");
}

const uint8_t *mpq_board_next_input(void) { return mpq_file_next_input(); }

void mpq_board_finish(void) { mpq_file_close(); }

int mpq_board_output(int argc, char **argv, const uint8_t *output)
{
    (void)argc, (void)argv;
    return mpq_file_write_output("output.bin", output);
}

static uint32_t semihosting_call(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm("r0") = op;
    register const void *r1 __asm("r1") = arg;
    __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void mpq_board_fault_puts(const char *s) { semihosting_call(SEMIHOSTING_SYS_WRITE0, s); }

void mpq_board_fault_exit(int status)
{
    const uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status};
    for (;;) semihosting_call(SEMIHOSTING_SYS_EXIT_EXTENDED, block);
}
