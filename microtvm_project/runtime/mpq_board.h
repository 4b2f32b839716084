/*
 * mpq_board.h - what runtime/mpq_main.c needs from a board (boards/<name>/).
 *
 * Console protocol (one line each, parsed by tvm_mpq.target):
 *   MPQ_START board=<name> counter=<unit> input_bytes=<n> output_bytes=<n>
 *   MPQ_PROFILE <layer> <name> <count>     (only with MPQ_PROFILE; count in <unit>)
 *   MPQ_TOTAL <count>                      (mpq_model_run, summed over a batch, in <unit>)
 *   MPQ_RUNS <n>                           (inferences run: the batch size)
 *   MPQ_OUTPUT <hex>                       (boards without files: the output tensor)
 *   MPQ_ERROR <text>                       (runtime error, e.g. input file missing)
 *   MPQ_INFO <text>                        (a remark; not an error)
 *   MPQ_FAULT <name> pc=0x.. lr=0x.. cfsr=0x.. hfsr=0x.. mmfar=0x.. bfar=0x..
 *   MPQ_DONE status=<return value of mpq_model_run>
 * Counter units: "none" (always 0), "cmsdk_ticks" (QEMU CMSDK timer, 25 MHz; with
 * -icount shift=0 one tick is 40 instructions), "cycles" (DWT->CYCCNT on real silicon).
 */
#ifndef MPQ_BOARD_H
#define MPQ_BOARD_H

#include <stddef.h>
#include <stdint.h>

/* Exit status of the firmware process (host) or of QEMU (semihosting exit). */
#define MPQ_EXIT_OK 0
#define MPQ_EXIT_MODEL 100 /* mpq_model_run returned nonzero */
#define MPQ_EXIT_IO 101    /* input could not be read or output not written */
#define MPQ_EXIT_FAULT 102 /* a CPU fault (ARM boards) */

extern const char *const mpq_board_counter_unit;

/* Clocks, console, counter. Called first by main(). */
void mpq_board_init(void);

/* The input tensor (MPQ_INPUT_BYTES), or NULL after printing an MPQ_ERROR line.
 * argc/argv are main's: only the host board has a command line. */
const uint8_t *mpq_board_input(int argc, char **argv);

/* The next input tensor of a batch (boards with files), or NULL: no more inputs. */
const uint8_t *mpq_board_next_input(void);

/* Deliver the output tensor (MPQ_OUTPUT_BYTES); 0 on success, else prints MPQ_ERROR.
 * Called once per input of a batch, in order. */
int mpq_board_output(int argc, char **argv, const uint8_t *output);

/* Flush and close what the board opened (files). */
void mpq_board_finish(void);

/* A free-running up-counter (wraps modulo 2^32) in mpq_board_counter_unit. */
uint32_t mpq_board_counter(void);

/* Fault path (runtime/mpq_fault.c): write a string with no buffering or allocation,
 * then stop with an exit status (QEMU exits; a real board halts). */
void mpq_board_fault_puts(const char *s);
void mpq_board_fault_exit(int status) __attribute__((noreturn));

#endif /* MPQ_BOARD_H */
