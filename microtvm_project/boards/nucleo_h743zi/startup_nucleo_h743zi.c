/*
 * startup_nucleo_h743zi.c - vector table and reset handler for the STM32H743ZI.
 * Reset: enable the FPU, copy .data, zero .bss, clocks to 400 MHz, caches on, trap integer
 * division by zero, run constructors and main(); then sleep forever. Faults escalate to
 * HardFault (the reset default); the MPQ_FAULT line carries CFSR/HFSR.
 */
#include <stddef.h>
#include <stdint.h>

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_CCR (*(volatile uint32_t *)0xE000ED14u)

#define H743_NUM_IRQS 150

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, __stack_top;
extern int main(int argc, char **argv);
extern void __libc_init_array(void);
extern void mpq_fault_handler(void);
extern void mpq_system_clock_init(void);
extern void mpq_system_cache_enable(void);

void _init(void) {}
void _fini(void) {}

__attribute__((noreturn)) void Reset_Handler(void)
{
    SCB_CPACR |= 0xFu << 20;
    __asm volatile("dsb\n isb" ::: "memory");
    for (uint32_t *src = &_sidata, *dst = &_sdata; dst < &_edata;) *dst++ = *src++;
    for (uint32_t *dst = &_sbss; dst < &_ebss;) *dst++ = 0;
    SCB_CCR |= 1u << 4; /* DIV_0_TRP */
    mpq_system_clock_init();
    mpq_system_cache_enable();
    __libc_init_array();
    main(0, NULL);
    for (;;) __asm volatile("wfi");
}

static void default_handler(void)
{
    mpq_fault_handler();
}

typedef void (*vector_t)(void);
__attribute__((section(".isr_vector"), used)) static const vector_t vectors[16 + H743_NUM_IRQS] = {
    (vector_t)&__stack_top,
    Reset_Handler,
    mpq_fault_handler, /* NMI */
    mpq_fault_handler, /* HardFault */
    mpq_fault_handler, /* MemManage */
    mpq_fault_handler, /* BusFault */
    mpq_fault_handler, /* UsageFault */
    [11] = default_handler,
    [12] = default_handler,
    [14] = default_handler,
    [15] = default_handler,
    [16 ... 16 + H743_NUM_IRQS - 1] = default_handler,
};
