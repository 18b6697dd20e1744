/* imgtensor_wire.h — the imgtensor binary format (send/recv, COPY … (FORMAT binary)), shared
 * by the extension and libpq clients such as loaders/store_pg.c. Plain C, no PostgreSQL headers.
 *
 * A binary imgtensor is a 20-byte header followed by the payload:
 *
 *   offset  size  field
 *        0     1  magic     0x49 ('I')
 *        1     1  version   1
 *        2     1  dtype     1 = uint8, 2 = float32
 *        3     1  codec     0 (values are always sent decompressed; recv accepts only 0)
 *        4     4  height    int32, big-endian (network order), 1..IMGTENSOR_MAX_SIDE
 *        8     4  width     int32, big-endian, 1..IMGTENSOR_MAX_SIDE
 *       12     4  channels  int32, big-endian, 1..IMGTENSOR_MAX_CHANNELS
 *       16     4  reserved  int32, must be 0
 *       20     …  payload   height*width*channels elements, channels-last (H×W×C);
 *                           uint8: raw bytes; float32: IEEE-754 binary32, little-endian
 *
 * The payload's length must be exactly height*width*channels*element size: a value that is
 * shorter, longer or has any other header byte is rejected.
 *
 * imgset_batch_packed() returns a whole mini-batch as one bytea, laid out for clients to use
 * in place (all integers big-endian):
 *
 *   offset  size  field
 *        0     4  magic       "IMGB"
 *        4     1  version     1
 *        5     1  dtype       1 = uint8, 2 = float32
 *        6     1  flags       bit 0: ragged (images differ in shape; the shapes array follows)
 *        7     1  reserved    0
 *        8     4  n           images in the batch
 *       12    12  height, width, channels   the common shape (0, 0, 0 when ragged)
 *       24     8  pixel_bytes               length of the pixels section
 *       32     …  pixels      the images in the order asked, each H×W×C channels-last, packed
 *                             (uint8 raw; float32 little-endian)
 *        …  8*n   ids         int64, the order asked
 *        …  4*n   labels      int32
 *        … 12*n   shapes      (height, width, channels) int32 per image, only when ragged
 */
#ifndef IMGTENSOR_WIRE_H
#define IMGTENSOR_WIRE_H

#include <stdint.h>

#define IMGTENSOR_MAGIC 0x49
#define IMGTENSOR_VERSION 1
#define IMGTENSOR_WIRE_HEADER 20
#define IMGTENSOR_MAX_SIDE 16384
#define IMGTENSOR_MAX_CHANNELS 4

enum { IMGTENSOR_UINT8 = 1, IMGTENSOR_FLOAT32 = 2 };
enum { IMGTENSOR_CODEC_NONE = 0, IMGTENSOR_CODEC_ZLIB = 1, IMGTENSOR_CODEC_LZ4 = 2 };

#define IMGBATCH_MAGIC "IMGB"
#define IMGBATCH_VERSION 1
#define IMGBATCH_HEADER 32
#define IMGBATCH_RAGGED 1

/* Store v big-endian at p. */
static inline void imgtensor_wire_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The big-endian 32-bit value at p. */
static inline uint32_t imgtensor_wire_get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Write the 20-byte header of an uncompressed value of the given dtype and shape. */
static inline void imgtensor_wire_header(uint8_t out[IMGTENSOR_WIRE_HEADER], int dtype,
                                         int32_t height, int32_t width, int32_t channels)
{
    out[0] = IMGTENSOR_MAGIC;
    out[1] = IMGTENSOR_VERSION;
    out[2] = (uint8_t)dtype;
    out[3] = IMGTENSOR_CODEC_NONE;
    imgtensor_wire_put32(out + 4, (uint32_t)height);
    imgtensor_wire_put32(out + 8, (uint32_t)width);
    imgtensor_wire_put32(out + 12, (uint32_t)channels);
    imgtensor_wire_put32(out + 16, 0);
}

/* The value of a hex digit (either case), or -1: the digits of the text format, which the
 * client's percent-decoding of URIs reads by the same rule. */
static inline int imgtensor_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
