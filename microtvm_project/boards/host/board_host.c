/*
 * board_host.c - the firmware as a native program, for checking generated code on the build
 * machine:  mpq_firmware input.bin output.bin
 * No counter (unit "none"); faults are the operating system's (signals).
 */
#include <stdio.h>
#include <stdlib.h>

#include "mpq_board.h"
#include "mpq_file_io.h"

const char *const mpq_board_counter_unit = "none";

void mpq_board_init(void) {}

const uint8_t *mpq_board_input(int argc, char **argv)
{
    if (argc != 3) {
        printf("MPQ_ERROR usage: %s INPUT.bin OUTPUT.bin\n", argc > 0 ? argv[0] : "mpq_firmware");
        return NULL;
    }
    return mpq_file_read_input(argv[1]);
}

const uint8_t *mpq_board_next_input(void) { return mpq_file_next_input(); }

void mpq_board_finish(void) { mpq_file_close(); }

int mpq_board_output(int argc, char **argv, const uint8_t *output)
{
    (void)argc;
    return mpq_file_write_output(argv[2], output);
}

uint32_t mpq_board_counter(void) { return 0; }

void mpq_board_fault_puts(const char *s) { fputs(s, stdout); }

void mpq_board_fault_exit(int status)
{
    fflush(stdout);
    exit(status);
}
