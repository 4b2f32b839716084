/*
 * mpq_main.c - the firmware's main program, shared by all boards: read the input tensor,
 * run the generated model once, report per-layer counters, deliver the output tensor.
 * The console lines it prints are listed in mpq_board.h.
 */
#include <inttypes.h>
#include <stdio.h>

#include "model.h"
#include "mpq_board.h"

#ifdef MPQ_PROFILE
static uint32_t layer_start[MPQ_NUM_LAYERS];
static uint32_t layer_count[MPQ_NUM_LAYERS];

/* Called by the generated model around each layer (only when MPQ_PROFILE is defined).
 * noinline: the instruction-counting QEMU plugin marks these functions' entry points. */
__attribute__((noinline)) void mpq_profile_begin(int layer)
{
    if (layer >= 0 && layer < MPQ_NUM_LAYERS) layer_start[layer] = mpq_board_counter();
}

__attribute__((noinline)) void mpq_profile_end(int layer)
{
    if (layer >= 0 && layer < MPQ_NUM_LAYERS)
        layer_count[layer] += mpq_board_counter() - layer_start[layer];
}
#endif

#ifdef MPQ_IO_IN_ARENA
/* Input and output live in the model's arena (model.h: mpq_model_input/output): no
 * separate buffers, so the firmware's RAM is the arena plus stack and heap. */
#define OUTPUT_DST ((uint8_t *)0)
#define OUTPUT_BUF (mpq_model_output())
#else
static uint8_t output[MPQ_OUTPUT_BYTES];
#define OUTPUT_DST (output)
#define OUTPUT_BUF (output)
#endif

int main(int argc, char **argv)
{
    mpq_board_init();
    printf("MPQ_START board=%s counter=%s input_bytes=%d output_bytes=%d\n", MPQ_BOARD_NAME,
           mpq_board_counter_unit, (int)MPQ_INPUT_BYTES, (int)MPQ_OUTPUT_BYTES);
    const uint8_t *input = mpq_board_input(argc, argv);
    if (!input) return MPQ_EXIT_IO;

    /* One inference per input tensor (a batch file holds several, back to back). The
     * per-layer and total counters add up over the batch. */
    int status = 0;
    int runs = 0;
    uint32_t total = 0;
    while (input) {
        uint32_t start = mpq_board_counter();
        status = mpq_model_run(input, OUTPUT_DST);
        total += mpq_board_counter() - start;
        runs++;
        if (status != 0) break;
        if (mpq_board_output(argc, argv, OUTPUT_BUF) != 0) return MPQ_EXIT_IO;
        input = mpq_board_next_input();
    }

#ifdef MPQ_PROFILE
    for (int i = 0; i < MPQ_NUM_LAYERS; i++)
        printf("MPQ_PROFILE %d %s %" PRIu32 "\n", i, mpq_layer_names[i], layer_count[i]);
#endif
    printf("MPQ_TOTAL %" PRIu32 "\n", total);
    printf("MPQ_RUNS %d\n", runs);
    mpq_board_finish();
    printf("MPQ_DONE status=%d\n", status);
    fflush(stdout);
    return status == 0 ? MPQ_EXIT_OK : MPQ_EXIT_MODEL;
}
