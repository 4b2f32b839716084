/* mpq_file_io.h - tensors as raw binary files (host, and QEMU through semihosting).
 *
 * An input file holds one input tensor (MPQ_INPUT_BYTES) or a batch of them back to back
 * (a multiple of MPQ_INPUT_BYTES): the firmware then runs the model once per tensor and
 * writes the outputs back to back (how a data set is evaluated in one emulator run). */
#ifndef MPQ_FILE_IO_H
#define MPQ_FILE_IO_H

#include <stdint.h>

/* Open path and read the first input tensor into a static buffer; NULL (and an MPQ_ERROR
 * line) if the file is missing, empty or not a multiple of MPQ_INPUT_BYTES. */
const uint8_t *mpq_file_read_input(const char *path);

/* The next input tensor of the file opened by mpq_file_read_input, or NULL at its end. */
const uint8_t *mpq_file_next_input(void);

/* Write MPQ_OUTPUT_BYTES to path: the first call creates the file, later calls append.
 * 0 on success, else -1 and an MPQ_ERROR line. */
int mpq_file_write_output(const char *path, const uint8_t *output);

/* Close the files (flushes the outputs). */
void mpq_file_close(void);

#endif /* MPQ_FILE_IO_H */
