/* fuzz_idx.c — libFuzzer target for the IDX parsers: gzip decoding, headers, image/label pairs. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"

#define MAX_DECODED (16u << 20)   /* keep each input's memory small */

volatile unsigned fuzz_sink;   /* keeps the reads of every image from being optimised away */

/* Decode and parse one file's bytes; 0 with the array and the decoded buffer set. */
static int parse_one(const uint8_t *data, size_t size, int ndims, uint8_t **decoded,
                     IdxArray *array)
{
    size_t decoded_size;
    if (idx_decode(data, size, "fuzz", MAX_DECODED, decoded, &decoded_size) < 0)
        return -1;
    return idx_parse(*decoded, decoded_size, ndims, "fuzz", array);
}

/* Input: 2 bytes (big-endian) giving the images part's length, the images file, then the
 * labels file. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t split = ((size_t)data[0] << 8 | data[1]) % (size - 1);
    const uint8_t *images_bytes = data + 2, *labels_bytes = data + 2 + split;
    size_t images_size = split, labels_size = size - 2 - split;

    uint8_t *images_file = NULL, *labels_file = NULL;
    IdxArray images, labels;
    int images_ok = parse_one(images_bytes, images_size, 3, &images_file, &images) == 0;
    int labels_ok = parse_one(labels_bytes, labels_size, 1, &labels_file, &labels) == 0;
    if (images_ok) {
        /* Touch every image as the reader would. */
        size_t bytes = (size_t)images.dims[1] * images.dims[2];
        for (uint32_t i = 0; i < images.dims[0]; i++)
            fuzz_sink += images.data[(size_t)i * bytes + bytes - 1];
    }
    if (images_ok && labels_ok) {
        int32_t max_label;
        if (idx_check_pair(&images, "images", &labels, "labels", &max_label) == 0 &&
            (max_label < -1 || max_label > 255))
            abort();
    }
    free(images_file);
    free(labels_file);
    return 0;
}
