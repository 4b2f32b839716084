/*
 * mpq_fault.c - Cortex-M fault handlers shared by the ARM boards. Each prints one line
 *   MPQ_FAULT <HardFault|MemManage|BusFault|UsageFault|NMI> pc=0x.. lr=0x.. cfsr=0x..
 *             hfsr=0x.. mmfar=0x.. bfar=0x..
 * through the board's unbuffered fault console and stops with status MPQ_EXIT_FAULT.
 * pc/lr are taken from the exception frame the core stacked on MSP or PSP.
 */
#include <stdint.h>

#include "mpq_board.h"

#define SCB_CFSR (*(volatile uint32_t *)0xE000ED28u)
#define SCB_HFSR (*(volatile uint32_t *)0xE000ED2Cu)
#define SCB_MMFAR (*(volatile uint32_t *)0xE000ED34u)
#define SCB_BFAR (*(volatile uint32_t *)0xE000ED38u)

static char *put_str(char *p, const char *s)
{
    while (*s) *p++ = *s++;
    return p;
}

static char *put_hex(char *p, const char *label, uint32_t v)
{
    p = put_str(p, label);
    for (int shift = 28; shift >= 0; shift -= 4) *p++ = "0123456789abcdef"[(v >> shift) & 0xFu];
    return p;
}

/* frame: r0, r1, r2, r3, r12, lr, pc, xpsr as stacked on exception entry. */
__attribute__((used, noreturn)) void mpq_fault_report(const uint32_t *frame, uint32_t ipsr)
{
    static const char *const names[] = {"Thread", "Reset", "NMI", "HardFault", "MemManage",
                                         "BusFault", "UsageFault"};
    uint32_t exc = ipsr & 0x1FFu;
    char line[160], *p = put_str(line, "MPQ_FAULT ");
    p = put_str(p, exc < sizeof names / sizeof names[0] ? names[exc] : "Exception");
    p = put_hex(p, " pc=0x", frame[6]);
    p = put_hex(p, " lr=0x", frame[5]);
    p = put_hex(p, " cfsr=0x", SCB_CFSR);
    p = put_hex(p, " hfsr=0x", SCB_HFSR);
    p = put_hex(p, " mmfar=0x", SCB_MMFAR);
    p = put_hex(p, " bfar=0x", SCB_BFAR);
    p = put_str(p, "\n");
    *p = '\0';
    mpq_board_fault_puts(line);
    mpq_board_fault_exit(MPQ_EXIT_FAULT);
}

/* Entry for every fault vector: pick the stack the frame was pushed on (EXC_RETURN bit 2). */
__attribute__((naked)) void mpq_fault_handler(void)
{
    __asm volatile("tst lr, #4      \n"
                   "ite eq          \n"
                   "mrseq r0, msp   \n"
                   "mrsne r0, psp   \n"
                   "mrs r1, ipsr    \n"
                   "b mpq_fault_report\n");
}
