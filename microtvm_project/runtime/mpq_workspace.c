/*
 * mpq_workspace.c - TVM's dynamic workspace hooks, as weak definitions that fail loudly.
 * The static memory plan (MPQ_ARENA_BYTES) must own every byte of RAM the model uses, so a
 * call here is a code-generation bug: it is reported on the console and refused.
 */
#include <stdint.h>
#include <stdio.h>

__attribute__((weak)) void *TVMBackendAllocWorkspace(int device_type, int device_id,
                                                     uint64_t nbytes, int dtype_code_hint,
                                                     int dtype_bits_hint)
{
    (void)device_type, (void)device_id, (void)dtype_code_hint, (void)dtype_bits_hint;
    printf("MPQ_ERROR TVMBackendAllocWorkspace(%lu bytes) called: the static memory plan "
           "must own every buffer\n", (unsigned long)nbytes);
    return NULL;
}

__attribute__((weak)) int TVMBackendFreeWorkspace(int device_type, int device_id, void *ptr)
{
    (void)device_type, (void)device_id, (void)ptr;
    printf("MPQ_ERROR TVMBackendFreeWorkspace called: the static memory plan must own every "
           "buffer\n");
    return -1;
}

__attribute__((weak)) void TVMAPISetLastError(const char *msg)
{
    printf("MPQ_ERROR TVM: %s\n", msg);
}
