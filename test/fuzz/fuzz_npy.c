/* fuzz_npy.c — libFuzzer target for the .npy header parser (npy_parse_header) and formatter. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    NpyHeader h;
    if (npy_parse_header(data, size, "fuzz.npy", &h) < 0)
        return 0;
    /* What a successful parse promises. */
    if (h.data_offset > size || h.ndim < 0 || h.ndim > NPY_MAX_DIMS || h.fortran_order)
        abort();
    (void)npy_check_file_size(&h, size, "fuzz.npy");
    if (h.dtype == NPY_DTYPE_OTHER)
        return 0;
    /* Formatting what was parsed and parsing it again gives the same array description. */
    size_t len = npy_header_size(h.dtype, h.ndim, h.shape);
    uint8_t *buf = len ? malloc(len) : NULL;
    if (!buf)
        abort();
    NpyHeader again;
    if (npy_format_header(buf, len, h.dtype, h.ndim, h.shape) < 0 ||
        npy_parse_header(buf, len, "again.npy", &again) < 0 || again.dtype != h.dtype ||
        again.ndim != h.ndim || memcmp(again.shape, h.shape, sizeof h.shape) != 0 ||
        again.data_bytes != h.data_bytes || again.data_offset != len || len % 64 != 0)
        abort();
    free(buf);
    return 0;
}
