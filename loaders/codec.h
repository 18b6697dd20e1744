/* codec.h — PNG and JPEG decoding into uint8 H×W×C, header probes, and lossless PNG encoding. */
#ifndef IMGSET_CODEC_H
#define IMGSET_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"

/*
 * Decoding always yields 8-bit, channels-last pixels with 1 or 3 channels:
 *   - grey (any bit depth) -> 1 channel; grey+alpha -> 1 (alpha dropped)
 *   - RGB, palette -> 3;   RGBA -> 3 (alpha dropped, as PIL's .convert('RGB') does)
 *   - 16-bit samples -> 8-bit by keeping the high byte (as PIL does for RGB/RGBA)
 *   - JPEG grey -> 1; YCbCr/RGB -> 3; CMYK/YCCK -> 3 (PIL's CMYK->RGB arithmetic)
 * want_channels: 0 keeps that natural 1 or 3; 3 forces RGB (grey is replicated, like
 * torchvision's default loader). Any other value is an error.
 *
 * The format is chosen by content (the magic bytes), never by the file name. `name` (a path
 * or any label) is only used in error messages; every error names it.
 * All functions return 0 on success and -1 with imgset_fail() on failure; none prints.
 */

typedef enum ImageFormat {
    IMAGE_FORMAT_UNKNOWN = 0,
    IMAGE_FORMAT_PNG,
    IMAGE_FORMAT_JPEG,
} ImageFormat;

/* The format of an encoded image from its first bytes (8 are enough); UNKNOWN otherwise. */
ImageFormat codec_sniff(const uint8_t *data, size_t size);

/*
 * Scratch memory a decoder reuses from call to call (file bytes, row pointers, a row
 * buffer), so a loop of decodes allocates nothing once warm. Zero-initialise it
 * (`CodecScratch scratch = {0};`), use it from one thread at a time, free it with
 * codec_scratch_free().
 */
typedef struct CodecScratch {
    uint8_t *file;        /* (file_capacity) bytes of the last file read */
    size_t file_capacity;
    void *rows;           /* row pointers for the decoders */
    size_t rows_capacity; /* in pointers */
    uint8_t *row;         /* (row_capacity) one converted row (CMYK JPEGs) */
    size_t row_capacity;
} CodecScratch;

/* Free what the scratch holds and zero it. */
void codec_scratch_free(CodecScratch *scratch);

/*
 * The shape a decode with want_channels would produce, read from the header only.
 * Returns 0 and sets *shape; 1 when `size` bytes do not yet reach the header (give it more
 * of the file); -1 with imgset_fail() on a malformed header or a side over IMGSET_MAX_SIDE.
 * *native_channels (may be NULL) gets the channels with want_channels = 0 (1 or 3).
 */
int codec_probe_memory(const uint8_t *data, size_t size, const char *name, int want_channels,
                       ImageShape *shape, int *native_channels);

/* codec_probe_memory on a file, reading only as much of it as the header needs; 0 or -1. */
int codec_probe_file(CodecScratch *scratch, const char *path, int want_channels,
                     ImageShape *shape, int *native_channels);

/*
 * Decode a PNG or JPEG held in memory into dst (capacity bytes), H×W×C uint8, rows packed.
 * *shape gets the decoded shape. Fails (naming `name`) on a corrupt or truncated image, an
 * unsupported variant, or when the image does not fit in capacity.
 */
int codec_decode_memory(CodecScratch *scratch, const uint8_t *data, size_t size,
                        const char *name, int want_channels, uint8_t *dst, size_t capacity,
                        ImageShape *shape);

/* Read a whole file into scratch->file and decode it as codec_decode_memory does. */
int codec_decode_file(CodecScratch *scratch, const char *path, int want_channels,
                      uint8_t *dst, size_t capacity, ImageShape *shape);

/*
 * Read the whole file at path into scratch->file (grown as needed); *size gets its length.
 * The bytes stay valid until the next call that uses the scratch.
 */
int codec_read_file(CodecScratch *scratch, const char *path, size_t *size);

/*
 * Encode pixels (H×W×C uint8, C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) as a lossless 8-bit
 * PNG with fast zlib compression. codec_png_write_file creates or truncates path (removing
 * it again on failure); codec_png_encode returns a malloc'ed buffer in *out (the caller
 * frees it) and its length in *out_size.
 */
int codec_png_write_file(const char *path, const uint8_t *pixels, ImageShape shape);
int codec_png_encode(const uint8_t *pixels, ImageShape shape, uint8_t **out, size_t *out_size);

#endif
