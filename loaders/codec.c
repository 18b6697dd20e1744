/* codec.c — PNG (libpng) and JPEG (libjpeg-turbo) decoding, header probes and PNG encoding. */
#include "codec.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"

#ifdef IMGSET_HAVE_PNG
#include <png.h>
#endif
#ifdef IMGSET_HAVE_JPEG
#include <jpeglib.h>
#include <jerror.h>   /* after jpeglib.h: its message list depends on JPEG_LIB_VERSION */
#endif

#define CODEC_MAX_FILE_BYTES ((size_t)1 << 30)  /* refuse image files over 1 GiB */
#define CODEC_PROBE_BYTES 4096                  /* first read of a header probe */
#define CODEC_PNG_LEVEL 1                       /* zlib level: fast, still lossless */

static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

ImageFormat codec_sniff(const uint8_t *data, size_t size)
{
    if (size >= 8 && memcmp(data, png_signature, 8) == 0)
        return IMAGE_FORMAT_PNG;
    if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        return IMAGE_FORMAT_JPEG;
    return IMAGE_FORMAT_UNKNOWN;
}

void codec_scratch_free(CodecScratch *scratch)
{
    free(scratch->file);
    free(scratch->rows);
    free(scratch->row);
    memset(scratch, 0, sizeof *scratch);
}

/* Make *buf hold at least `need` elements of elem_size bytes (contents not kept); 0 or -1. */
static int scratch_reserve(void **buf, size_t *capacity, size_t need, size_t elem_size)
{
    if (need <= *capacity)
        return 0;
    size_t bytes;
    if (size_mul(need, elem_size, &bytes) < 0)
        return imgset_fail("scratch buffer size overflows");
    void *bigger = malloc(bytes);
    if (!bigger)
        return imgset_fail("out of memory for a %zu-byte decode buffer", bytes);
    free(*buf);
    *buf = bigger;
    *capacity = need;
    return 0;
}

/* 1 for the values want_channels may take. */
static int want_valid(int want_channels)
{
    return want_channels == 0 || want_channels == 3;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t be16(const uint8_t *p)
{
    return (uint32_t)p[0] << 8 | p[1];
}

/* Check the sides a header announced; 0 or -1 naming the file. */
static int check_sides(const char *name, const char *what, uint32_t width, uint32_t height)
{
    if (width < 1 || height < 1)
        return imgset_fail("%s: %s header has an empty image (%ux%u)", name, what,
                           (unsigned)width, (unsigned)height);
    if (width > IMGSET_MAX_SIDE || height > IMGSET_MAX_SIDE)
        return imgset_fail("%s: %s image is %ux%u, larger than the %d-pixel limit per side",
                           name, what, (unsigned)width, (unsigned)height, IMGSET_MAX_SIDE);
    return 0;
}

/* The PNG IHDR: sides and natural channels; 0, 1 (need more bytes) or -1. */
static int probe_png(const uint8_t *d, size_t n, const char *name, uint32_t *height,
                     uint32_t *width, int *native)
{
    if (n < 29)    /* signature + chunk length + "IHDR" + 13 bytes of data */
        return 1;
    if (be32(d + 8) != 13 || memcmp(d + 12, "IHDR", 4) != 0)
        return imgset_fail("%s: corrupt PNG: the first chunk is not a 13-byte IHDR", name);
    uint32_t depth = d[24], color = d[25];
    int depth_ok;
    switch (color) {
    case 0: depth_ok = depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16; break;
    case 3: depth_ok = depth == 1 || depth == 2 || depth == 4 || depth == 8; break;
    case 2: case 4: case 6: depth_ok = depth == 8 || depth == 16; break;
    default:
        return imgset_fail("%s: corrupt PNG: unknown colour type %u", name, (unsigned)color);
    }
    if (!depth_ok)
        return imgset_fail("%s: corrupt PNG: bit depth %u is not allowed for colour type %u",
                           name, (unsigned)depth, (unsigned)color);
    if (d[26] != 0 || d[27] != 0 || d[28] > 1)
        return imgset_fail("%s: corrupt PNG: unknown compression, filter or interlace method",
                           name);
    *width = be32(d + 16);
    *height = be32(d + 20);
    *native = (color == 0 || color == 4) ? 1 : 3;
    return check_sides(name, "PNG", *width, *height);
}

/* Walk JPEG markers up to the frame header (SOFn); 0, 1 (need more bytes) or -1. */
static int probe_jpeg(const uint8_t *d, size_t n, const char *name, uint32_t *height,
                      uint32_t *width, int *native)
{
    size_t pos = 2;    /* after SOI */
    for (;;) {
        while (pos < n && d[pos] != 0xff)    /* garbage between segments: skip, as libjpeg does */
            pos++;
        while (pos < n && d[pos] == 0xff)    /* fill bytes */
            pos++;
        if (pos >= n)
            return 1;
        uint8_t marker = d[pos++];
        if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd8))
            continue;                        /* TEM, RSTn, SOI: no length */
        if (marker == 0xd9 || marker == 0xda)
            return imgset_fail("%s: corrupt JPEG: no frame header before %s", name,
                               marker == 0xd9 ? "the end of the image" : "the scan data");
        if (pos + 2 > n)
            return 1;
        size_t length = be16(d + pos);
        if (length < 2)
            return imgset_fail("%s: corrupt JPEG: marker 0x%02x has length %zu", name, marker,
                               length);
        int is_frame = marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 &&
                       marker != 0xcc;
        if (is_frame) {
            if (length < 8)
                return imgset_fail("%s: corrupt JPEG: frame header too short", name);
            if (pos + 8 > n)
                return 1;
            *height = be16(d + pos + 3);
            *width = be16(d + pos + 5);
            int components = d[pos + 7];
            if (*height == 0)
                return imgset_fail("%s: unsupported JPEG: height given by a DNL marker", name);
            if (components != 1 && components != 3 && components != 4)
                return imgset_fail("%s: unsupported JPEG: %d colour components", name,
                                   components);
            *native = components == 1 ? 1 : 3;
            return check_sides(name, "JPEG", *width, *height);
        }
        pos += length;
    }
}

int codec_probe_memory(const uint8_t *data, size_t size, const char *name, int want_channels,
                       ImageShape *shape, int *native_channels)
{
    if (!want_valid(want_channels))
        return imgset_fail("%s: want_channels must be 0 or 3, not %d", name, want_channels);
    uint32_t height = 0, width = 0;
    int native = 0, rc;
    switch (codec_sniff(data, size)) {
    case IMAGE_FORMAT_PNG:
        rc = probe_png(data, size, name, &height, &width, &native);
        break;
    case IMAGE_FORMAT_JPEG:
        rc = probe_jpeg(data, size, name, &height, &width, &native);
        break;
    default: {
        /* Too short to tell only while the bytes so far could still start a PNG or JPEG. */
        static const uint8_t jpeg_start[3] = {0xff, 0xd8, 0xff};
        if (size < 8 && (memcmp(data, png_signature, size) == 0 ||
                         memcmp(data, jpeg_start, size < 3 ? size : 3) == 0))
            return 1;
        return imgset_fail("%s: not a PNG or JPEG image", name);
    }
    }
    if (rc != 0)
        return rc;
    shape->height = (int32_t)height;
    shape->width = (int32_t)width;
    shape->channels = want_channels == 3 ? 3 : native;
    if (native_channels)
        *native_channels = native;
    return 0;
}

/* Open path for reading as a regular file; the fd, or -1. *size gets its length. */
static int open_image_file(const char *path, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return imgset_fail("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        imgset_fail("%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        imgset_fail("%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > CODEC_MAX_FILE_BYTES) {
        imgset_fail("%s: %lld bytes is too large for an image file (limit %zu)", path,
                    (long long)st.st_size, CODEC_MAX_FILE_BYTES);
        close(fd);
        return -1;
    }
    *size = (size_t)st.st_size;
    return fd;
}

/* Read up to `want` bytes from fd into buf; the count read, or -1 naming path. */
static ssize_t read_fully(int fd, const char *path, uint8_t *buf, size_t want)
{
    size_t got = 0;
    while (got < want) {
        ssize_t r = read(fd, buf + got, want - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return imgset_fail("%s: read error: %s", path, strerror(errno));
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

int codec_read_file(CodecScratch *scratch, const char *path, size_t *size)
{
    size_t file_size;
    int fd = open_image_file(path, &file_size);
    if (fd < 0)
        return -1;
    /* One spare byte, so the buffer is never empty and a zero-length file reads fine. */
    if (scratch_reserve((void **)&scratch->file, &scratch->file_capacity, file_size + 1, 1) <
        0) {
        close(fd);
        return imgset_fail_prefix("%s: ", path);
    }
    ssize_t got = read_fully(fd, path, scratch->file, file_size);
    close(fd);
    if (got < 0)
        return -1;
    *size = (size_t)got;
    return 0;
}

int codec_probe_file(CodecScratch *scratch, const char *path, int want_channels,
                     ImageShape *shape, int *native_channels)
{
    size_t file_size;
    int fd = open_image_file(path, &file_size);
    if (fd < 0)
        return -1;
    uint8_t head[CODEC_PROBE_BYTES];
    ssize_t got = read_fully(fd, path, head, sizeof head);
    close(fd);
    if (got < 0)
        return -1;
    int rc = codec_probe_memory(head, (size_t)got, path, want_channels, shape, native_channels);
    if (rc == 1 && (size_t)got == sizeof head) {
        /* A JPEG whose frame header lies past large APPn segments (EXIF): read it all. */
        size_t size;
        if (codec_read_file(scratch, path, &size) < 0)
            return -1;
        rc = codec_probe_memory(scratch->file, size, path, want_channels, shape,
                                native_channels);
    }
    if (rc == 1)
        return imgset_fail("%s: truncated: the file ends inside the image header", path);
    return rc;
}

/* ---- PNG ----------------------------------------------------------------------------- */

#ifdef IMGSET_HAVE_PNG

/* Where libpng's error message lands, and the memory a read consumes or a write fills. */
typedef struct PngContext {
    char message[200];
    const uint8_t *input;      /* (input_size) encoded bytes being read */
    size_t input_size, input_pos;
    FILE *file;                /* write target, or NULL to write into `output` */
    uint8_t *output;           /* (output_capacity) encoded bytes written so far */
    size_t output_size, output_capacity;
} PngContext;

/* libpng error callback: keep the message and unwind to the setjmp (never returns). */
static void png_on_error(png_structp png, png_const_charp message)
{
    PngContext *ctx = png_get_error_ptr(png);
    snprintf(ctx->message, sizeof ctx->message, "%s", message);
    png_longjmp(png, 1);
}

/* libpng warnings (bad ancillary chunks, sRGB profile notes) are not failures: ignore. */
static void png_on_warning(png_structp png, png_const_charp message)
{
    (void)png;
    (void)message;
}

static void png_read_memory(png_structp png, png_bytep out, size_t length)
{
    PngContext *ctx = png_get_io_ptr(png);
    if (length > ctx->input_size - ctx->input_pos)
        png_error(png, "truncated file");
    memcpy(out, ctx->input + ctx->input_pos, length);
    ctx->input_pos += length;
}

static void png_write_sink(png_structp png, png_bytep data, size_t length)
{
    PngContext *ctx = png_get_io_ptr(png);
    if (ctx->file) {
        if (fwrite(data, 1, length, ctx->file) != length)
            png_error(png, strerror(errno));
        return;
    }
    if (length > ctx->output_capacity - ctx->output_size) {
        size_t capacity = ctx->output_capacity ? ctx->output_capacity : 4096;
        while (capacity - ctx->output_size < length)
            if (size_mul(capacity, 2, &capacity) < 0)
                png_error(png, "encoded image too large");
        uint8_t *bigger = realloc(ctx->output, capacity);
        if (!bigger)
            png_error(png, "out of memory");
        ctx->output = bigger;
        ctx->output_capacity = capacity;
    }
    memcpy(ctx->output + ctx->output_size, data, length);
    ctx->output_size += length;
}

static void png_flush_sink(png_structp png)
{
    (void)png;
}

static int decode_png(CodecScratch *scratch, const uint8_t *data, size_t size, const char *name,
                      int want_channels, uint8_t *dst, size_t capacity, ImageShape *shape)
{
    PngContext ctx = {.input = data, .input_size = size};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error,
                                             png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return imgset_fail("%s: out of memory for a PNG decoder", name);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        return imgset_fail("%s: corrupt PNG: %s", name, ctx.message);
    }
    png_set_user_limits(png, IMGSET_MAX_SIDE, IMGSET_MAX_SIDE);
    png_set_read_fn(png, &ctx, png_read_memory);
    png_read_info(png, info);

    png_uint_32 width, height;
    int depth, color, interlace;
    png_get_IHDR(png, info, &width, &height, &depth, &color, &interlace, NULL, NULL);
    int native = (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) ? 1 : 3;
    ImageShape out = {(int32_t)height, (int32_t)width, want_channels == 3 ? 3 : native};
    size_t bytes = image_shape_bytes(out);
    if (bytes == 0 || bytes > capacity) {
        png_destroy_read_struct(&png, &info, NULL);
        return imgset_fail("%s: the %ux%ux%d image does not fit the %zu-byte buffer", name,
                           (unsigned)height, (unsigned)width, out.channels, capacity);
    }
    if (scratch_reserve(&scratch->rows, &scratch->rows_capacity, height, sizeof(png_bytep)) <
        0) {
        png_destroy_read_struct(&png, &info, NULL);
        return imgset_fail_prefix("%s: ", name);
    }

    if (color == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16)
        png_set_strip_16(png);    /* the high byte, as PIL does */
    if ((color & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_strip_alpha(png);
    if (out.channels == 3 && native == 1)
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t row_bytes = (size_t)width * (size_t)out.channels;
    if (png_get_channels(png, info) != out.channels || png_get_bit_depth(png, info) != 8 ||
        png_get_rowbytes(png, info) != row_bytes) {
        png_destroy_read_struct(&png, &info, NULL);
        return imgset_fail("%s: unsupported PNG layout (colour type %d, depth %d)", name, color,
                           depth);
    }
    png_bytep *rows = scratch->rows;
    for (png_uint_32 y = 0; y < height; y++)
        rows[y] = dst + (size_t)y * row_bytes;
    png_read_image(png, rows);
    png_destroy_read_struct(&png, &info, NULL);
    *shape = out;
    return 0;
}

/* Encode into ctx (its file, or its growing output buffer); 0 or -1 naming `name`. */
static int encode_png(PngContext *ctx, const uint8_t *pixels, ImageShape shape,
                      const char *name)
{
    static const int color_types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                       PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    if (!image_shape_valid(shape))
        return imgset_fail("%s: cannot encode an image of shape %dx%dx%d", name, shape.height,
                           shape.width, shape.channels);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, ctx, png_on_error,
                                              png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return imgset_fail("%s: out of memory for a PNG encoder", name);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return imgset_fail("%s: cannot write PNG: %s", name, ctx->message);
    }
    png_set_write_fn(png, ctx, png_write_sink, png_flush_sink);
    png_set_IHDR(png, info, (png_uint_32)shape.width, (png_uint_32)shape.height, 8,
                 color_types[shape.channels], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, CODEC_PNG_LEVEL);
    /* Adaptive choice between the two cheapest filters: adding Paeth cost ~30% more time to
     * encode and to decode the generated sets and saved nothing (their noise dominates). */
    png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_SUB | PNG_FILTER_UP);
    png_write_info(png, info);
    size_t row_bytes = (size_t)shape.width * (size_t)shape.channels;
    for (int32_t y = 0; y < shape.height; y++)
        png_write_row(png, pixels + (size_t)y * row_bytes);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return 0;
}

int codec_png_write_file(const char *path, const uint8_t *pixels, ImageShape shape)
{
    PngContext ctx = {0};
    ctx.file = fopen(path, "wb");
    if (!ctx.file)
        return imgset_fail("%s: cannot create: %s", path, strerror(errno));
    int rc = encode_png(&ctx, pixels, shape, path);
    if (fclose(ctx.file) != 0 && rc == 0)
        rc = imgset_fail("%s: write error: %s", path, strerror(errno));
    if (rc < 0)
        unlink(path);
    return rc;
}

int codec_png_encode(const uint8_t *pixels, ImageShape shape, uint8_t **out, size_t *out_size)
{
    PngContext ctx = {0};
    if (encode_png(&ctx, pixels, shape, "PNG encoder") < 0) {
        free(ctx.output);
        return -1;
    }
    *out = ctx.output;
    *out_size = ctx.output_size;
    return 0;
}

#else

static int decode_png(CodecScratch *scratch, const uint8_t *data, size_t size, const char *name,
                      int want_channels, uint8_t *dst, size_t capacity, ImageShape *shape)
{
    return imgset_fail("%s: PNG support was not built in (no libpng)", name);
}

int codec_png_write_file(const char *path, const uint8_t *pixels, ImageShape shape)
{
    return imgset_fail("%s: PNG support was not built in (no libpng)", path);
}

int codec_png_encode(const uint8_t *pixels, ImageShape shape, uint8_t **out, size_t *out_size)
{
    return imgset_fail("PNG support was not built in (no libpng)");
}

#endif

/* ---- JPEG ---------------------------------------------------------------------------- */

#ifdef IMGSET_HAVE_JPEG

/* libjpeg's error manager extended with our unwinding point and the message. */
typedef struct JpegError {
    struct jpeg_error_mgr manager;
    jmp_buf unwind;
    char message[JMSG_LENGTH_MAX];
} JpegError;

/* Fatal libjpeg error: keep the message and unwind (libjpeg's default would exit()). */
static void jpeg_on_error(j_common_ptr cinfo)
{
    JpegError *err = (JpegError *)cinfo->err;
    cinfo->err->format_message(cinfo, err->message);
    longjmp(err->unwind, 1);
}

/* Warnings that mean the pixels are damaged fail the decode; the rest (and traces) are
 * ignored, never printed. */
static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level >= 0)
        return;
    switch (cinfo->err->msg_code) {
    case JWRN_JPEG_EOF:
    case JWRN_HUFF_BAD_CODE:
#if JPEG_LIB_VERSION >= 70 || defined(C_ARITH_CODING_SUPPORTED) || defined(D_ARITH_CODING_SUPPORTED)
    case JWRN_ARITH_BAD_CODE:
#endif
    case JWRN_HIT_MARKER:
    case JWRN_MUST_RESYNC:
        jpeg_on_error(cinfo);
        break;
    default:
        cinfo->err->num_warnings++;
    }
}

/* PIL's MULDIV255: a*b/255 rounded, in integers. */
static inline int muldiv255(int a, int b)
{
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

/* CMYK row -> RGB row exactly as PIL does (Adobe files store inverted CMYK). */
static void cmyk_to_rgb(uint8_t *rgb, const uint8_t *cmyk, uint32_t width, int inverted)
{
    for (uint32_t x = 0; x < width; x++) {
        const uint8_t *p = cmyk + 4 * (size_t)x;
        int k = inverted ? 255 - p[3] : p[3], not_k = 255 - k;
        for (int c = 0; c < 3; c++) {
            int v = inverted ? 255 - p[c] : p[c];
            rgb[3 * (size_t)x + c] = (uint8_t)(not_k - muldiv255(v, not_k));
        }
    }
}

static int decode_jpeg(CodecScratch *scratch, const uint8_t *data, size_t size,
                       const char *name, int want_channels, uint8_t *dst, size_t capacity,
                       ImageShape *shape)
{
    struct jpeg_decompress_struct cinfo;
    JpegError err;
    memset(&cinfo, 0, sizeof cinfo);
    memset(&err, 0, sizeof err);
    cinfo.err = jpeg_std_error(&err.manager);
    err.manager.error_exit = jpeg_on_error;
    err.manager.emit_message = jpeg_on_message;
    if (setjmp(err.unwind)) {
        jpeg_destroy_decompress(&cinfo);
        return imgset_fail("%s: corrupt JPEG: %s", name, err.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.image_width > IMGSET_MAX_SIDE || cinfo.image_height > IMGSET_MAX_SIDE) {
        check_sides(name, "JPEG", cinfo.image_width, cinfo.image_height);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    int cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    int native = cinfo.num_components == 1 ? 1 : 3;
    ImageShape out = {(int32_t)cinfo.image_height, (int32_t)cinfo.image_width,
                      want_channels == 3 ? 3 : native};
    cinfo.out_color_space = cmyk ? JCS_CMYK : out.channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    size_t bytes = image_shape_bytes(out);
    size_t row_bytes = (size_t)out.width * (size_t)out.channels;
    if (bytes == 0 || bytes > capacity ||
        (cmyk && scratch_reserve((void **)&scratch->row, &scratch->row_capacity,
                                 (size_t)out.width * 4, 1) < 0)) {
        if (bytes == 0 || bytes > capacity)
            imgset_fail("%s: the %dx%dx%d image does not fit the %zu-byte buffer", name,
                        out.height, out.width, out.channels, capacity);
        else
            imgset_fail_prefix("%s: ", name);
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    jpeg_start_decompress(&cinfo);
    if ((int)cinfo.output_components != (cmyk ? 4 : out.channels) ||
        cinfo.output_width != (JDIMENSION)out.width ||
        cinfo.output_height != (JDIMENSION)out.height) {
        jpeg_destroy_decompress(&cinfo);
        return imgset_fail("%s: unsupported JPEG layout (%d components)", name,
                           cinfo.num_components);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        uint8_t *row = dst + (size_t)cinfo.output_scanline * row_bytes;
        if (cmyk) {
            JSAMPROW in = scratch->row;
            jpeg_read_scanlines(&cinfo, &in, 1);
            cmyk_to_rgb(row, scratch->row, cinfo.output_width, cinfo.saw_Adobe_marker);
            continue;
        }
        /* Hand libjpeg several rows at once so it can upsample straight into dst. */
        JSAMPROW rows[16];
        JDIMENSION n = cinfo.output_height - cinfo.output_scanline;
        if (n > 16)
            n = 16;
        for (JDIMENSION i = 0; i < n; i++)
            rows[i] = row + (size_t)i * row_bytes;
        jpeg_read_scanlines(&cinfo, rows, n);
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    *shape = out;
    return 0;
}

#else

static int decode_jpeg(CodecScratch *scratch, const uint8_t *data, size_t size,
                       const char *name, int want_channels, uint8_t *dst, size_t capacity,
                       ImageShape *shape)
{
    return imgset_fail("%s: JPEG support was not built in (no libjpeg)", name);
}

#endif

int codec_decode_memory(CodecScratch *scratch, const uint8_t *data, size_t size,
                        const char *name, int want_channels, uint8_t *dst, size_t capacity,
                        ImageShape *shape)
{
    /* The header checks first: clear messages, and no decoder sees an oversized image. */
    if (size == 0)
        return imgset_fail("%s: empty file, not an image", name);
    ImageShape expected;
    int rc = codec_probe_memory(data, size, name, want_channels, &expected, NULL);
    if (rc == 1)
        return imgset_fail("%s: truncated: the file ends inside the image header", name);
    if (rc < 0)
        return -1;
    switch (codec_sniff(data, size)) {
    case IMAGE_FORMAT_PNG:
        return decode_png(scratch, data, size, name, want_channels, dst, capacity, shape);
    case IMAGE_FORMAT_JPEG:
        return decode_jpeg(scratch, data, size, name, want_channels, dst, capacity, shape);
    default:
        return imgset_fail("%s: not a PNG or JPEG image", name);
    }
}

int codec_decode_file(CodecScratch *scratch, const char *path, int want_channels,
                      uint8_t *dst, size_t capacity, ImageShape *shape)
{
    size_t size;
    if (codec_read_file(scratch, path, &size) < 0)
        return -1;
    return codec_decode_memory(scratch, scratch->file, size, path, want_channels, dst, capacity,
                               shape);
}
