/*
 * mpq_file_io.c - input and output tensors as raw binary files through C stdio. Used by the
 * host board (real files) and qemu_m7 (newlib's semihosting: files on QEMU's host, paths
 * relative to QEMU's working directory). See mpq_file_io.h for batches.
 */
#include <stdio.h>

#include "model.h"
#include "mpq_file_io.h"

#ifdef MPQ_IO_IN_ARENA
/* The model keeps its input inside its static arena: read straight into it. */
#define INPUT_BUF (mpq_model_input())
#else
static uint8_t input_buf[MPQ_INPUT_BYTES];
#define INPUT_BUF (input_buf)
#endif
static FILE *in_file;
static FILE *out_file;

static const char *in_path;

const uint8_t *mpq_file_read_input(const char *path)
{
    in_path = path;
    in_file = fopen(path, "rb");
    if (!in_file) {
        printf("MPQ_ERROR cannot open input file %s\n", path);
        return NULL;
    }
    const uint8_t *first = mpq_file_next_input();
    if (!first && in_file) {
        printf("MPQ_ERROR input file %s must hold exactly %d bytes (or a multiple: a batch)\n",
               path, (int)MPQ_INPUT_BYTES);
    }
    return first;
}

/* Semihosting files cannot seek to their end on every host, so the size is checked while
 * reading: a record must be complete, and the file must end on a record boundary. */
const uint8_t *mpq_file_next_input(void)
{
    if (!in_file) return NULL;
    size_t n = fread(INPUT_BUF, 1, MPQ_INPUT_BYTES, in_file);
    if (n == MPQ_INPUT_BYTES) return INPUT_BUF;
    if (n != 0) {
        printf("MPQ_ERROR input file %s must hold exactly %d bytes (or a multiple: a batch)\n",
               in_path, (int)MPQ_INPUT_BYTES);
        fclose(in_file);
        in_file = NULL;
        return NULL;
    }
    return NULL;
}

int mpq_file_write_output(const char *path, const uint8_t *output)
{
    if (!out_file) {
        out_file = fopen(path, "wb");
        if (!out_file) {
            printf("MPQ_ERROR cannot create output file %s\n", path);
            return -1;
        }
    }
    size_t n = fwrite(output, 1, MPQ_OUTPUT_BYTES, out_file);
    if (n != MPQ_OUTPUT_BYTES || fflush(out_file) != 0) {
        printf("MPQ_ERROR cannot write output file %s\n", path);
        return -1;
    }
    return 0;
}

void mpq_file_close(void)
{
    if (in_file) fclose(in_file);
    if (out_file) fclose(out_file);
    in_file = out_file = NULL;
}
