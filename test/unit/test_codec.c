/* test_codec.c — PNG/JPEG decoding, header probes and PNG encoding in loaders/codec.c. */
#include <ftw.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <jpeglib.h>

#include "codec.h"
#include "error.h"
#include "rng.h"
#include "tap.h"

static char temp_dir[] = "/tmp/imgset-test-codec.XXXXXX";

/* A path inside the test's temporary folder (static buffer, one at a time). */
static const char *temp_path(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", temp_dir, name);
    return path;
}

static void random_pixels(uint8_t *p, size_t n, uint64_t seed)
{
    Rng rng = rng_make(seed, 0);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rng_next(&rng);
}

static int write_bytes(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = fwrite(data, 1, size, f);
    fclose(f);
    return n == size ? 0 : -1;
}

/* An 8-bit (C = 1..4) PNG round trip through memory and through a file. */
static void test_png_round_trip(int channels)
{
    ImageShape shape = {13, 17, channels};
    size_t n = image_shape_bytes(shape);
    uint8_t *pixels = malloc(n), *out = malloc(n * 3);
    random_pixels(pixels, n, (uint64_t)channels);
    uint8_t *png = NULL;
    size_t png_size = 0;
    CodecScratch scratch = {0};
    int rc = codec_png_encode(pixels, shape, &png, &png_size);
    ok(rc == 0 && png_size > 8, "png %dch: encode to memory (%zu bytes)", channels, png_size);
    ok(codec_sniff(png, png_size) == IMAGE_FORMAT_PNG, "png %dch: sniffed as PNG", channels);

    ImageShape probed = {0}, decoded = {0};
    int native = 0;
    int expect_c = channels <= 2 ? 1 : 3;    /* alpha dropped */
    ok(codec_probe_memory(png, png_size, "mem", 0, &probed, &native) == 0 &&
           probed.height == 13 && probed.width == 17 && probed.channels == expect_c &&
           native == expect_c,
       "png %dch: probe gives 13x17x%d", channels, expect_c);
    ok(codec_probe_memory(png, 20, "mem", 0, &probed, NULL) == 1,
       "png %dch: probe of 20 bytes asks for more", channels);
    rc = codec_decode_memory(&scratch, png, png_size, "mem", 0, out, n * 3, &decoded);
    int same = rc == 0 && decoded.height == 13 && decoded.width == 17 &&
               decoded.channels == expect_c;
    for (size_t p = 0; same && p < (size_t)13 * 17; p++)
        for (int c = 0; c < expect_c; c++)
            same &= out[p * expect_c + c] == pixels[p * channels + c];
    ok(same, "png %dch: decode returns the colour channels exactly (%s)", channels,
       rc ? imgset_error() : "ok");

    /* want 3: RGB whatever the source. */
    rc = codec_decode_memory(&scratch, png, png_size, "mem", 3, out, n * 3, &decoded);
    same = rc == 0 && decoded.channels == 3;
    for (size_t p = 0; same && p < (size_t)13 * 17; p++)
        for (int c = 0; c < 3; c++)
            same &= out[p * 3 + c] == pixels[p * channels + (channels <= 2 ? 0 : c)];
    ok(same, "png %dch: want_channels=3 gives RGB (grey replicated)", channels);

    char name[32];
    snprintf(name, sizeof name, "rt%d.png", channels);
    const char *path = temp_path(name);
    ok(codec_png_write_file(path, pixels, shape) == 0, "png %dch: write file", channels);
    rc = codec_decode_file(&scratch, path, 0, out, n * 3, &decoded);
    same = rc == 0 && decoded.channels == expect_c;
    for (size_t p = 0; same && p < (size_t)13 * 17; p++)
        same &= out[p * expect_c] == pixels[p * channels];
    ok(same, "png %dch: file decodes to the same pixels", channels);
    ok(codec_probe_file(&scratch, path, 3, &probed, NULL) == 0 && probed.channels == 3 &&
           probed.height == 13,
       "png %dch: probe_file with want 3", channels);
    free(png);
    free(pixels);
    free(out);
    codec_scratch_free(&scratch);
}

/* Write a PNG with libpng's full API (what our encoder never writes: 16-bit, palette,
 * low bit depth, interlaced). rows: height rows of row_bytes. */
static int write_png_raw(const char *path, int width, int height, int depth, int color,
                         int interlace, uint8_t *const *rows, const png_color *palette,
                         int palette_size, const uint8_t *trans, int trans_count)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return -1;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, width, height, depth, color, interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (palette)
        png_set_PLTE(png, info, palette, palette_size);
    if (trans)
        png_set_tRNS(png, info, trans, trans_count, NULL);
    png_write_info(png, info);
    png_write_image(png, (png_bytepp)rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    return 0;
}

static void test_png_variants(void)
{
    enum { W = 9, H = 7 };
    CodecScratch scratch = {0};
    uint8_t out[W * H * 3], raw[H][W * 8];
    uint8_t *rows[H];
    ImageShape shape;
    for (int y = 0; y < H; y++)
        rows[y] = raw[y];

    /* 16-bit RGB: the high byte of each sample. */
    random_pixels(&raw[0][0], sizeof raw, 16);
    const char *path = temp_path("rgb16.png");
    int rc = write_png_raw(path, W, H, 16, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, rows, NULL, 0,
                           NULL, 0);
    rc = rc ? rc : codec_decode_file(&scratch, path, 0, out, sizeof out, &shape);
    int same = rc == 0 && shape.channels == 3 && shape.width == W && shape.height == H;
    for (int y = 0; same && y < H; y++)
        for (int x = 0; x < W * 3; x++)
            same &= out[(y * W) * 3 + x] == raw[y][2 * x];
    ok(same, "png 16-bit RGB decodes to the high bytes (%s)", rc ? imgset_error() : "ok");

    /* 16-bit grey + alpha: grey high byte, alpha dropped. */
    path = temp_path("ga16.png");
    rc = write_png_raw(path, W, H, 16, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_INTERLACE_NONE, rows,
                       NULL, 0, NULL, 0);
    rc = rc ? rc : codec_decode_file(&scratch, path, 0, out, sizeof out, &shape);
    same = rc == 0 && shape.channels == 1;
    for (int y = 0; same && y < H; y++)
        for (int x = 0; x < W; x++)
            same &= out[y * W + x] == raw[y][4 * x];
    ok(same, "png 16-bit grey+alpha decodes to 8-bit grey (%s)", rc ? imgset_error() : "ok");

    /* Palette with transparency: palette colours, alpha dropped. */
    png_color palette[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {10, 20, 30}};
    uint8_t trans[2] = {0, 128};
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            raw[y][x] = (uint8_t)((x + y) % 4);
    path = temp_path("palette.png");
    rc = write_png_raw(path, W, H, 8, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE, rows, palette,
                       4, trans, 2);
    rc = rc ? rc : codec_decode_file(&scratch, path, 0, out, sizeof out, &shape);
    same = rc == 0 && shape.channels == 3;
    for (int y = 0; same && y < H; y++)
        for (int x = 0; x < W; x++) {
            const png_color *c = &palette[(x + y) % 4];
            same &= out[(y * W + x) * 3] == c->red && out[(y * W + x) * 3 + 1] == c->green &&
                    out[(y * W + x) * 3 + 2] == c->blue;
        }
    ok(same, "png palette + tRNS decodes to the palette's RGB (%s)", rc ? imgset_error() : "ok");

    /* 1-bit grey, interlaced: 0 -> 0, 1 -> 255, every pass in place. */
    memset(raw, 0, sizeof raw);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            if ((x * 3 + y) % 5 < 2)
                raw[y][x / 8] |= (uint8_t)(0x80 >> (x % 8));
    path = temp_path("grey1.png");
    rc = write_png_raw(path, W, H, 1, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_ADAM7, rows, NULL, 0,
                       NULL, 0);
    rc = rc ? rc : codec_decode_file(&scratch, path, 0, out, sizeof out, &shape);
    same = rc == 0 && shape.channels == 1;
    for (int y = 0; same && y < H; y++)
        for (int x = 0; x < W; x++)
            same &= out[y * W + x] == ((x * 3 + y) % 5 < 2 ? 255 : 0);
    ok(same, "png 1-bit grey Adam7-interlaced decodes (%s)", rc ? imgset_error() : "ok");
    ImageShape probed;
    ok(codec_probe_file(&scratch, path, 0, &probed, NULL) == 0 && probed.channels == 1 &&
           probed.width == W,
       "png 1-bit grey probes as 1 channel");

    /* Capacity too small, bad want_channels. */
    ok(codec_decode_file(&scratch, path, 0, out, W * H - 1, &shape) < 0 &&
           strstr(imgset_error(), "does not fit"),
       "decode into a too-small buffer fails: %s", imgset_error());
    ok(codec_decode_file(&scratch, path, 2, out, sizeof out, &shape) < 0 &&
           strstr(imgset_error(), "want_channels"),
       "want_channels=2 is refused: %s", imgset_error());
    codec_scratch_free(&scratch);
}

/* Encode a JPEG in memory with libjpeg (components 1, 3 or 4 = CMYK); malloc'ed bytes. */
static uint8_t *encode_jpeg(const uint8_t *pixels, int width, int height, int components,
                            int quality, size_t extra_app1, unsigned long *size)
{
    struct jpeg_compress_struct cinfo;
    struct jpeg_error_mgr err;
    unsigned char *out = NULL;
    cinfo.err = jpeg_std_error(&err);
    jpeg_create_compress(&cinfo);
    jpeg_mem_dest(&cinfo, &out, size);
    cinfo.image_width = (JDIMENSION)width;
    cinfo.image_height = (JDIMENSION)height;
    cinfo.input_components = components;
    cinfo.in_color_space = components == 1 ? JCS_GRAYSCALE : components == 3 ? JCS_RGB
                                                                              : JCS_CMYK;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    if (extra_app1) {
        uint8_t *app = calloc(extra_app1, 1);
        jpeg_write_marker(&cinfo, JPEG_APP0 + 1, app, (unsigned)extra_app1);
        free(app);
    }
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * width * components);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    return out;
}

static void test_jpeg(void)
{
    enum { W = 40, H = 24 };
    CodecScratch scratch = {0};
    uint8_t rgb[W * H * 3], grey[W * H], out[W * H * 3];
    /* Smooth content, so a high-quality JPEG stays within a few levels. */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            rgb[(y * W + x) * 3] = (uint8_t)(x * 6);
            rgb[(y * W + x) * 3 + 1] = (uint8_t)(y * 10);
            rgb[(y * W + x) * 3 + 2] = (uint8_t)(128 + (x - y));
            grey[y * W + x] = (uint8_t)(x * 3 + y * 4);
        }
    unsigned long size = 0;
    uint8_t *jpeg = encode_jpeg(rgb, W, H, 3, 95, 0, &size);
    ImageShape shape, probed;
    ok(codec_sniff(jpeg, size) == IMAGE_FORMAT_JPEG, "jpeg: sniffed as JPEG");
    ok(codec_probe_memory(jpeg, size, "mem", 0, &probed, NULL) == 0 && probed.height == H &&
           probed.width == W && probed.channels == 3,
       "jpeg rgb: probe gives %dx%dx3", H, W);
    int rc = codec_decode_memory(&scratch, jpeg, size, "mem", 0, out, sizeof out, &shape);
    int max_diff = 0;
    for (size_t i = 0; rc == 0 && i < sizeof rgb; i++) {
        int d = abs((int)out[i] - (int)rgb[i]);
        max_diff = d > max_diff ? d : max_diff;
    }
    ok(rc == 0 && image_shape_equal(shape, probed) && max_diff <= 12,
       "jpeg rgb: decodes within 12 levels (max diff %d; %s)", max_diff,
       rc ? imgset_error() : "ok");

    /* A corrupt and a truncated JPEG, through files: errors name the file. */
    const char *path = temp_path("truncated.jpg");
    write_bytes(path, jpeg, size / 2);
    rc = codec_decode_file(&scratch, path, 0, out, sizeof out, &shape);
    ok(rc < 0 && strstr(imgset_error(), path) && strstr(imgset_error(), "JPEG"),
       "truncated jpeg fails naming the file: %s", imgset_error());
    uint8_t *broken = malloc(size);
    memcpy(broken, jpeg, size);
    for (size_t i = size / 3; i < size - 2; i++)
        broken[i] = (uint8_t)(i * 37);
    path = temp_path("corrupt.jpg");
    write_bytes(path, broken, size);
    rc = codec_decode_file(&scratch, path, 0, out, sizeof out, &shape);
    ok(rc < 0 && strstr(imgset_error(), path), "corrupt jpeg fails naming the file: %s",
       imgset_error());
    free(broken);
    free(jpeg);

    /* Grey JPEG: 1 channel, or 3 equal channels with want 3. */
    jpeg = encode_jpeg(grey, W, H, 1, 95, 0, &size);
    rc = codec_decode_memory(&scratch, jpeg, size, "mem", 0, out, sizeof out, &shape);
    max_diff = 0;
    for (size_t i = 0; rc == 0 && i < sizeof grey; i++) {
        int d = abs((int)out[i] - (int)grey[i]);
        max_diff = d > max_diff ? d : max_diff;
    }
    ok(rc == 0 && shape.channels == 1 && max_diff <= 8,
       "jpeg grey: 1 channel within 8 levels (max diff %d)", max_diff);
    rc = codec_decode_memory(&scratch, jpeg, size, "mem", 3, out, sizeof out, &shape);
    int equal = rc == 0 && shape.channels == 3;
    for (size_t p = 0; equal && p < (size_t)W * H; p++)
        equal &= out[3 * p] == out[3 * p + 1] && out[3 * p] == out[3 * p + 2];
    ok(equal, "jpeg grey with want 3: three equal channels");
    free(jpeg);

    /* A frame header behind a 20 KB APP1 segment (as EXIF puts it): probe_file reads on. */
    jpeg = encode_jpeg(rgb, W, H, 3, 90, 20000, &size);
    path = temp_path("exif.jpg");
    write_bytes(path, jpeg, size);
    rc = codec_probe_file(&scratch, path, 0, &probed, NULL);
    ok(rc == 0 && probed.width == W && probed.height == H,
       "jpeg with a 20 KB APP1: probe_file finds the frame header (%s)",
       rc ? imgset_error() : "ok");
    write_bytes(path, jpeg, 5000);
    ok(codec_probe_file(&scratch, path, 0, &probed, NULL) < 0 &&
           strstr(imgset_error(), "truncated"),
       "jpeg cut inside its header: probe fails: %s", imgset_error());
    free(jpeg);

    /* CMYK (libjpeg writes an Adobe marker, so samples are stored inverted): PIL's formula. */
    uint8_t cmyk[W * H * 4];
    for (size_t p = 0; p < (size_t)W * H; p++) {
        cmyk[4 * p] = 200;
        cmyk[4 * p + 1] = 100;
        cmyk[4 * p + 2] = 50;
        cmyk[4 * p + 3] = 220;
    }
    jpeg = encode_jpeg(cmyk, W, H, 4, 100, 0, &size);
    rc = codec_decode_memory(&scratch, jpeg, size, "mem", 0, out, sizeof out, &shape);
    /* inverted: C' = 255 - 200 = 55 etc., K' = 35; R = (255-K') - C'(255-K')/255 */
    int expect[3] = {220 - 55 * 220 / 255, 220 - 155 * 220 / 255, 220 - 205 * 220 / 255};
    max_diff = 0;
    for (size_t p = 0; rc == 0 && p < (size_t)W * H; p++)
        for (int c = 0; c < 3; c++) {
            int d = abs((int)out[3 * p + c] - expect[c]);
            max_diff = d > max_diff ? d : max_diff;
        }
    ok(rc == 0 && shape.channels == 3 && max_diff <= 3,
       "jpeg cmyk: converted to RGB like PIL (max diff %d; %s)", max_diff,
       rc ? imgset_error() : "ok");
    free(jpeg);
    codec_scratch_free(&scratch);
}

static void test_bad_png(void)
{
    CodecScratch scratch = {0};
    ImageShape shape = {32, 32, 3}, got;
    uint8_t pixels[32 * 32 * 3], out[32 * 32 * 3];
    random_pixels(pixels, sizeof pixels, 99);
    uint8_t *png;
    size_t size;
    codec_png_encode(pixels, shape, &png, &size);

    const char *path = temp_path("truncated.png");
    write_bytes(path, png, size / 2);
    ok(codec_probe_file(&scratch, path, 0, &got, NULL) == 0,
       "truncated png: the header still probes");
    int rc = codec_decode_file(&scratch, path, 0, out, sizeof out, &got);
    ok(rc < 0 && strstr(imgset_error(), path) && strstr(imgset_error(), "PNG"),
       "truncated png fails naming the file: %s", imgset_error());

    uint8_t *broken = malloc(size);
    memcpy(broken, png, size);
    for (size_t i = 60; i < size - 12; i += 7)
        broken[i] ^= 0x5a;
    path = temp_path("corrupt.png");
    write_bytes(path, broken, size);
    rc = codec_decode_file(&scratch, path, 0, out, sizeof out, &got);
    ok(rc < 0 && strstr(imgset_error(), path), "corrupt png data fails naming the file: %s",
       imgset_error());

    /* An IHDR claiming 20000 pixels per side: refused before any allocation. */
    memcpy(broken, png, size);
    broken[16] = 0, broken[17] = 0, broken[18] = 0x4e, broken[19] = 0x20;
    uint32_t crc = (uint32_t)crc32(0, broken + 12, 17);    /* keep the IHDR CRC valid */
    broken[29] = (uint8_t)(crc >> 24), broken[30] = (uint8_t)(crc >> 16);
    broken[31] = (uint8_t)(crc >> 8), broken[32] = (uint8_t)crc;
    path = temp_path("huge.png");
    write_bytes(path, broken, size);
    ok(codec_probe_file(&scratch, path, 0, &got, NULL) < 0 && strstr(imgset_error(), "limit"),
       "png header over the side limit: probe fails: %s", imgset_error());
    ok(codec_decode_file(&scratch, path, 0, out, sizeof out, &got) < 0 &&
           strstr(imgset_error(), "limit"),
       "png header over the side limit: decode fails: %s", imgset_error());

    /* Bad colour type / depth combination. */
    memcpy(broken, png, size);
    broken[24] = 4;    /* 4-bit RGB does not exist */
    ok(codec_probe_memory(broken, size, "bad-depth", 0, &got, NULL) < 0 &&
           strstr(imgset_error(), "bad-depth"),
       "png with an impossible bit depth: %s", imgset_error());

    path = temp_path("text.png");
    write_bytes(path, (const uint8_t *)"this is not an image at all\n", 28);
    ok(codec_decode_file(&scratch, path, 0, out, sizeof out, &got) < 0 &&
           strstr(imgset_error(), "not a PNG or JPEG"),
       "a text file named .png: %s", imgset_error());
    ok(codec_probe_file(&scratch, path, 0, &got, NULL) < 0, "a text file does not probe");
    path = temp_path("empty.png");
    write_bytes(path, png, 0);
    ok(codec_decode_file(&scratch, path, 0, out, sizeof out, &got) < 0 &&
           strstr(imgset_error(), "empty"),
       "an empty file: %s", imgset_error());
    ok(codec_decode_file(&scratch, temp_path("missing.png"), 0, out, sizeof out, &got) < 0 &&
           strstr(imgset_error(), "missing.png"),
       "a missing file: %s", imgset_error());
    ok(codec_png_write_file(temp_path("no/such/dir.png"), pixels, shape) < 0,
       "png write into a missing folder fails: %s", imgset_error());
    ImageShape bad = {0, 5, 3};
    uint8_t *none = NULL;
    ok(codec_png_encode(pixels, bad, &none, &size) < 0 && none == NULL,
       "png encode of an empty shape fails");
    free(broken);
    free(png);
    codec_scratch_free(&scratch);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(void)
{
    if (!mkdtemp(temp_dir)) {
        ok(0, "mkdtemp");
        return tap_done();
    }
    for (int c = 1; c <= 4; c++)
        test_png_round_trip(c);
    test_png_variants();
    test_jpeg();
    test_bad_png();
    nftw(temp_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    return tap_done();
}
