/*
 * mpq_file_io.c - input and output tensors as raw binary files through C stdio. Used by the
 * host board (real files) and qemu_m7 (newlib's semihosting: files on QEMU's host, paths
 * relative to QEMU's working directory).
 */
#include <stdio.h>

#include "model.h"
#include "mpq_file_io.h"

static uint8_t input[MPQ_INPUT_BYTES];

const uint8_t *mpq_file_read_input(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("MPQ_ERROR cannot open input file %s\n", path);
        return NULL;
    }
    size_t n = fread(input, 1, sizeof input, f);
    int extra = fgetc(f);
    fclose(f);
    if (n != sizeof input || extra != EOF) {
        printf("MPQ_ERROR input file %s must hold exactly %d bytes\n", path,
               (int)MPQ_INPUT_BYTES);
        return NULL;
    }
    return input;
}

int mpq_file_write_output(const char *path, const uint8_t *output)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        printf("MPQ_ERROR cannot create output file %s\n", path);
        return -1;
    }
    size_t n = fwrite(output, 1, MPQ_OUTPUT_BYTES, f);
    if (fclose(f) != 0 || n != MPQ_OUTPUT_BYTES) {
        printf("MPQ_ERROR cannot write output file %s\n", path);
        return -1;
    }
    return 0;
}
