/* mpq_file_io.h - tensors as raw binary files (host, and QEMU through semihosting). */
#ifndef MPQ_FILE_IO_H
#define MPQ_FILE_IO_H

#include <stdint.h>

/* Read exactly MPQ_INPUT_BYTES from path into a static buffer; NULL (and an MPQ_ERROR
 * line) if the file is missing or has another size. */
const uint8_t *mpq_file_read_input(const char *path);

/* Write MPQ_OUTPUT_BYTES to path; 0 on success, else -1 and an MPQ_ERROR line. */
int mpq_file_write_output(const char *path, const uint8_t *output);

#endif /* MPQ_FILE_IO_H */
