/*
 * startup_qemu_m7.c - vector table and reset handler for QEMU's mps2-an500 (Cortex-M7, FPU).
 * Reset: enable the FPU, copy .data, zero .bss, trap integer division by zero, open the
 * semihosting console, run constructors, exit(main()).
 * Faults are left to escalate to HardFault (the reset default); the MPQ_FAULT line carries
 * CFSR/HFSR so the host can tell which fault it was.
 */
#include <stdint.h>
#include <stdlib.h>

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_CCR (*(volatile uint32_t *)0xE000ED14u)

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, __stack_top;
extern int main(int argc, char **argv);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);
extern void mpq_fault_handler(void);

/* -nostartfiles drops crti/crtn; __libc_init_array still calls these. */
void _init(void) {}
void _fini(void) {}

__attribute__((noreturn)) void Reset_Handler(void)
{
    SCB_CPACR |= 0xFu << 20; /* CP10, CP11: full access to the FPU */
    __asm volatile("dsb\n isb" ::: "memory");
    for (uint32_t *src = &_sidata, *dst = &_sdata; dst < &_edata;) *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    SCB_CCR |= 1u << 4; /* DIV_0_TRP */
    __asm volatile("dsb\n isb" ::: "memory");
    initialise_monitor_handles();
    __libc_init_array();
    exit(main(0, NULL));
}

static void default_handler(void)
{
    mpq_fault_handler();
}

typedef void (*vector_t)(void);
__attribute__((section(".isr_vector"), used)) static const vector_t vectors[16 + 32] = {
    (vector_t)&__stack_top,
    Reset_Handler,
    mpq_fault_handler, /* NMI */
    mpq_fault_handler, /* HardFault */
    mpq_fault_handler, /* MemManage */
    mpq_fault_handler, /* BusFault */
    mpq_fault_handler, /* UsageFault */
    [11] = default_handler, /* SVCall */
    [12] = default_handler, /* DebugMonitor */
    [14] = default_handler, /* PendSV */
    [15] = default_handler, /* SysTick */
    [16 ... 47] = default_handler,
};
