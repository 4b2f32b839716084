/*
 * board_nucleo_h743zi.c - Nucleo-H743ZI: console on USART3 (PD8 TX, PD9 RX, AF7; the
 * ST-LINK virtual COM port) at 115200 8N1, counter = DWT->CYCCNT (core cycles at 400 MHz).
 * The input tensor is compiled in: if model.h defines MPQ_HAS_TEST_INPUT, the generated code
 * provides `const uint8_t mpq_test_input[MPQ_INPUT_BYTES]` (read from FLASH in place); else
 * the input is a zeroed RAM buffer (where an application would put its sensor data). The
 * output tensor is printed as MPQ_OUTPUT lines of hex (32 bytes a line). Also the few newlib
 * system calls that printf needs.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#include "model.h"
#include "mpq_board.h"

#define REG(addr) (*(volatile uint32_t *)(addr))
#define RCC_AHB4ENR REG(0x580244E0u)
#define RCC_APB1LENR REG(0x580244E8u)
#define GPIOD_MODER REG(0x58020C00u)
#define GPIOD_AFRH REG(0x58020C24u)
#define USART3_CR1 REG(0x40004800u)
#define USART3_BRR REG(0x4000480Cu)
#define USART3_ISR REG(0x4000481Cu)
#define USART3_TDR REG(0x40004828u)
#define DEMCR REG(0xE000EDFCu)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)
#define DWT_LAR REG(0xE0001FB0u)

#define USART3_KERNEL_CLOCK_HZ 100000000u /* rcc_pclk1, see system_h743.c */
#define CONSOLE_BAUD 115200u

const char *const mpq_board_counter_unit = "cycles";
#ifdef MPQ_HAS_TEST_INPUT
extern const uint8_t mpq_test_input[MPQ_INPUT_BYTES];
#endif

void mpq_board_init(void)
{
    RCC_AHB4ENR |= 1u << 3;   /* GPIOD */
    RCC_APB1LENR |= 1u << 18; /* USART3 */
    (void)RCC_APB1LENR;       /* read back: the clock is on before the first access */
    GPIOD_MODER = (GPIOD_MODER & ~(0xFu << 16)) | (0xAu << 16); /* PD8, PD9: alternate */
    GPIOD_AFRH = (GPIOD_AFRH & ~0xFFu) | 0x77u;                  /* AF7 = USART3 */
    USART3_BRR = (USART3_KERNEL_CLOCK_HZ + CONSOLE_BAUD / 2) / CONSOLE_BAUD;
    USART3_CR1 = (1u << 3) | (1u << 2) | 1u; /* TE, RE, UE */

    DEMCR |= 1u << 24; /* TRCENA */
    DWT_LAR = 0xC5ACCE55u;
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;
}

uint32_t mpq_board_counter(void) { return DWT_CYCCNT; }

static void uart_putc(char c)
{
    while (!(USART3_ISR & (1u << 7))) {} /* TXE */
    USART3_TDR = (uint8_t)c;
}

const uint8_t *mpq_board_input(int argc, char **argv)
{
    (void)argc, (void)argv;
#ifdef MPQ_HAS_TEST_INPUT
    return mpq_test_input;
#else
    static uint8_t zeros[MPQ_INPUT_BYTES];
    printf("MPQ_INFO input=zeros (model.h defines no MPQ_HAS_TEST_INPUT)\n");
    return zeros;
#endif
}

const uint8_t *mpq_board_next_input(void) { return NULL; }

void mpq_board_finish(void) {  }

int mpq_board_output(int argc, char **argv, const uint8_t *output)
{
    (void)argc, (void)argv;
    for (int i = 0; i < MPQ_OUTPUT_BYTES; i += 32) {
        fputs("MPQ_OUTPUT ", stdout);
        for (int j = i; j < i + 32 && j < MPQ_OUTPUT_BYTES; j++) printf("%02x", output[j]);
        fputs("\n", stdout);
    }
    return 0;
}

void mpq_board_fault_puts(const char *s)
{
    for (; *s; s++) {
        if (*s == '\n') uart_putc('\r');
        uart_putc(*s);
    }
}

void mpq_board_fault_exit(int status)
{
    (void)status;
    for (;;) __asm volatile("bkpt 0"); /* stops under a debugger; else lockup-free spin */
}

/* --- newlib system calls: stdout/stderr to the UART, a bounded heap, nothing else --- */
extern char end, __heap_limit;

int _write(int fd, const char *buf, int n)
{
    (void)fd;
    for (int i = 0; i < n; i++) {
        if (buf[i] == '\n') uart_putc('\r');
        uart_putc(buf[i]);
    }
    return n;
}

void *_sbrk(ptrdiff_t incr)
{
    static char *brk = &end;
    if (brk + incr > &__heap_limit) {
        errno = ENOMEM;
        return (void *)-1;
    }
    char *prev = brk;
    brk += incr;
    return prev;
}

int _read(int fd, char *buf, int n) { (void)fd, (void)buf, (void)n; return 0; }
int _close(int fd) { (void)fd; return -1; }
int _lseek(int fd, int offset, int whence) { (void)fd, (void)offset, (void)whence; return 0; }
int _isatty(int fd) { (void)fd; return 1; }
int _fstat(int fd, struct stat *st) { (void)fd; st->st_mode = S_IFCHR; return 0; }
int _getpid(void) { return 1; }
int _kill(int pid, int sig) { (void)pid, (void)sig; errno = EINVAL; return -1; }
void _exit(int status) { mpq_board_fault_exit(status); }
