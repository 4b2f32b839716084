/*
 * system_h743.c - STM32H743 clocks and caches, by register (no HAL), from RM0433.
 * SYSCLK 400 MHz from the 64 MHz HSI: PLL1 M=4 (16 MHz, range 8-16 MHz), N=50 (VCO 800 MHz,
 * wide range), P=2. Core voltage scale 1 (enough for 400 MHz on every silicon revision), LDO
 * supply as on the Nucleo-H743ZI. AHB/AXI 200 MHz, APB1..4 100 MHz (so USART3's kernel clock,
 * rcc_pclk1 after reset, is 100 MHz). Flash: 2 wait states, WRHIGHFREQ=2 (RM0433 table 17).
 */
#include <stdint.h>

#define REG(addr) (*(volatile uint32_t *)(addr))

#define PWR_BASE 0x58024800u
#define PWR_CSR1 REG(PWR_BASE + 0x04)
#define PWR_CR3 REG(PWR_BASE + 0x0C)
#define PWR_D3CR REG(PWR_BASE + 0x18)

#define RCC_BASE 0x58024400u
#define RCC_CR REG(RCC_BASE + 0x00)
#define RCC_CFGR REG(RCC_BASE + 0x10)
#define RCC_D1CFGR REG(RCC_BASE + 0x18)
#define RCC_D2CFGR REG(RCC_BASE + 0x1C)
#define RCC_D3CFGR REG(RCC_BASE + 0x20)
#define RCC_PLLCKSELR REG(RCC_BASE + 0x28)
#define RCC_PLLCFGR REG(RCC_BASE + 0x2C)
#define RCC_PLL1DIVR REG(RCC_BASE + 0x30)

#define FLASH_ACR REG(0x52002000u)

#define SCB_CCR REG(0xE000ED14u)
#define SCB_CCSIDR REG(0xE000ED80u)
#define SCB_CSSELR REG(0xE000ED84u)
#define SCB_ICIALLU REG(0xE000EF50u)
#define SCB_DCISW REG(0xE000EF60u)

uint32_t mpq_system_core_clock_hz = 64000000u;

static inline void barrier(void) { __asm volatile("dsb\n isb" ::: "memory"); }

void mpq_system_clock_init(void)
{
    /* Supply: LDO on, bypass off; then voltage scale 1. */
    PWR_CR3 = (PWR_CR3 & ~0x7u) | (1u << 1);
    while (!(PWR_CSR1 & (1u << 13))) {} /* ACTVOSRDY */
    PWR_D3CR = (PWR_D3CR & ~(3u << 14)) | (3u << 14);
    while (!(PWR_D3CR & (1u << 13))) {} /* VOSRDY */

    /* Flash wait states before the clock goes up. */
    FLASH_ACR = (FLASH_ACR & ~0x3Fu) | (2u << 4) | 2u;
    while ((FLASH_ACR & 0xFu) != 2u) {}

    /* PLL1 from HSI (on after reset): 64 MHz / 4 * 50 / 2 = 400 MHz on P. */
    RCC_PLLCKSELR = (RCC_PLLCKSELR & ~((0x3Fu << 4) | 0x3u)) | (4u << 4); /* DIVM1=4, HSI */
    RCC_PLLCFGR = (RCC_PLLCFGR & ~0xFu) | (3u << 2) | (1u << 16);         /* RGE=3, DIVP1EN */
    RCC_PLL1DIVR = (49u << 0) | (1u << 9) | (3u << 16) | (1u << 24);       /* N=50 P=2 Q=4 R=2 */
    RCC_CR |= 1u << 24;                                                    /* PLL1ON */
    while (!(RCC_CR & (1u << 25))) {}                                      /* PLL1RDY */

    /* Bus prescalers: CPU /1, AHB /2, APB3 /2; APB1, APB2 /2; APB4 /2. Then switch. */
    RCC_D1CFGR = (0u << 8) | (4u << 4) | 8u;
    RCC_D2CFGR = (4u << 8) | (4u << 4);
    RCC_D3CFGR = 4u << 4;
    RCC_CFGR = (RCC_CFGR & ~0x7u) | 3u; /* SW = PLL1 */
    while (((RCC_CFGR >> 3) & 0x7u) != 3u) {}
    mpq_system_core_clock_hz = 400000000u;
}

void mpq_system_cache_enable(void)
{
    barrier();
    SCB_ICIALLU = 0;
    barrier();
    SCB_CCR |= 1u << 17; /* IC */
    barrier();

    SCB_CSSELR = 0; /* level 1 data cache */
    barrier();
    uint32_t ccsidr = SCB_CCSIDR;
    for (uint32_t set = (ccsidr >> 13) & 0x7FFFu;; set--) {
        for (uint32_t way = (ccsidr >> 3) & 0x3FFu;; way--) {
            SCB_DCISW = ((set & 0x1FFu) << 5) | ((way & 0x3u) << 30);
            if (way == 0) break;
        }
        if (set == 0) break;
    }
    barrier();
    SCB_CCR |= 1u << 16; /* DC */
    barrier();
}
