/* transform.c — resize, crop, flip and normalise (see transform.h). */
#include "transform.h"

#include <string.h>

#include "error.h"

/* Where output pixel i of a side scaled by `scale` samples a source side of n pixels: the two
 * neighbours *i0, *i1 and the weight of *i1 (pixel centres aligned, edges clamped). */
static void sample_at(int32_t i, float scale, int32_t n, int32_t *i0, int32_t *i1, float *w)
{
    float f = ((float)i + 0.5f) * scale - 0.5f;
    if (f < 0)
        f = 0;
    *i0 = (int32_t)f;
    if (*i0 > n - 1)
        *i0 = n - 1;
    *i1 = *i0 + 1 < n ? *i0 + 1 : n - 1;
    *w = f - (float)*i0;
}

void transform_resize(uint8_t *dst, int32_t dh, int32_t dw, const uint8_t *src, int32_t sh,
                      int32_t sw, int32_t c)
{
    float scale_y = (float)sh / (float)dh, scale_x = (float)sw / (float)dw;
    for (int32_t y = 0; y < dh; y++) {
        imgset_check_interrupt();   /* a 16384-row resize takes seconds: a host may stop it */
        int32_t y0, y1, x0, x1;
        float wy, wx;
        sample_at(y, scale_y, sh, &y0, &y1, &wy);
        const uint8_t *row0 = src + (size_t)y0 * sw * c, *row1 = src + (size_t)y1 * sw * c;
        uint8_t *out = dst + (size_t)y * dw * c;
        for (int32_t x = 0; x < dw; x++) {
            sample_at(x, scale_x, sw, &x0, &x1, &wx);
            for (int32_t k = 0; k < c; k++) {
                float top = row0[x0 * c + k] + wx * (float)(row0[x1 * c + k] - row0[x0 * c + k]);
                float bot = row1[x0 * c + k] + wx * (float)(row1[x1 * c + k] - row1[x0 * c + k]);
                float v = top + wy * (bot - top);
                out[x * c + k] = (uint8_t)(v + 0.5f);
            }
        }
    }
}

/* The size src is scaled to before the centre crop: the shorter side ratio covers (h, w). */
static void scaled_size(ImageShape s, int32_t h, int32_t w, int32_t *sh, int32_t *sw)
{
    double ry = (double)h / s.height, rx = (double)w / s.width;
    double r = ry > rx ? ry : rx;
    *sh = (int32_t)(s.height * r + 0.5);
    *sw = (int32_t)(s.width * r + 0.5);
    if (*sh < h)
        *sh = h;
    if (*sw < w)
        *sw = w;
}

size_t transform_resize_crop_scratch(ImageShape src_shape, int32_t h, int32_t w)
{
    int32_t sh, sw;
    scaled_size(src_shape, h, w, &sh, &sw);
    return (size_t)sh * (size_t)sw * (size_t)src_shape.channels;
}

void transform_resize_crop(uint8_t *dst, int32_t h, int32_t w, const uint8_t *src,
                           ImageShape src_shape, uint8_t *scratch)
{
    int32_t c = src_shape.channels, sh, sw;
    scaled_size(src_shape, h, w, &sh, &sw);
    const uint8_t *scaled = src;
    if (sh != src_shape.height || sw != src_shape.width) {
        transform_resize(scratch, sh, sw, src, src_shape.height, src_shape.width, c);
        scaled = scratch;
    }
    int32_t top = (sh - h) / 2, left = (sw - w) / 2;
    for (int32_t y = 0; y < h; y++)
        memcpy(dst + (size_t)y * w * c, scaled + ((size_t)(top + y) * sw + left) * c,
               (size_t)w * c);
}

void transform_random_crop_flip(uint8_t *dst, const uint8_t *src, int32_t h, int32_t w,
                                int32_t c, int32_t padding, int flip, Rng *rng)
{
    int32_t dy = (int32_t)rng_below(rng, (uint64_t)(2 * padding + 1)) - padding;
    int32_t dx = (int32_t)rng_below(rng, (uint64_t)(2 * padding + 1)) - padding;
    int mirrored = flip && (rng_next(rng) >> 63);
    for (int32_t y = 0; y < h; y++) {
        int32_t sy = y + dy;
        uint8_t *out = dst + (size_t)y * w * c;
        if (sy < 0 || sy >= h) {
            memset(out, 0, (size_t)w * c);
            continue;
        }
        const uint8_t *row = src + (size_t)sy * w * c;
        for (int32_t x = 0; x < w; x++) {
            int32_t sx = (mirrored ? w - 1 - x : x) + dx;
            if (sx < 0 || sx >= w)
                memset(out + x * c, 0, (size_t)c);
            else
                memcpy(out + x * c, row + sx * c, (size_t)c);
        }
    }
}

/* RGB, the common case, in one pass over the pixels with three output streams; the loop is
 * vectorised (GCC -O3 here; multiplies and adds stay separately rounded, fp-contract=off, so
 * the floats equal the generic loop's and the GPU kernel's). */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("O3", "fp-contract=off")))
#endif
static void rgb_to_float(float *restrict r, float *restrict g, float *restrict b,
                         const uint8_t *restrict px, size_t plane, const float *a,
                         const float *o)
{
    for (size_t p = 0; p < plane; p++) {
        r[p] = (float)px[3 * p] * a[0] + o[0];
        g[p] = (float)px[3 * p + 1] * a[1] + o[1];
        b[p] = (float)px[3 * p + 2] * a[2] + o[2];
    }
}

void transform_to_float(float *dst, const uint8_t *src, int n, int32_t h, int32_t w, int32_t c,
                        const float *mean, const float *std)
{
    size_t plane = (size_t)h * w;
    if (c == 3) {
        float a[3], o[3];
        for (int k = 0; k < 3; k++) {
            a[k] = 1.0f / (255.0f * std[k]);
            o[k] = -mean[k] / std[k];
        }
        for (int i = 0; i < n; i++) {
            float *out = dst + (size_t)i * plane * 3;
            rgb_to_float(out, out + plane, out + 2 * plane, src + (size_t)i * plane * 3, plane,
                         a, o);
        }
        return;
    }
    for (int i = 0; i < n; i++) {
        const uint8_t *img = src + (size_t)i * plane * c;
        float *out = dst + (size_t)i * plane * c;
        for (int32_t k = 0; k < c; k++) {
            /* (x / 255 - mean) / std as one multiply-add per pixel. */
            float a = 1.0f / (255.0f * std[k]), b = -mean[k] / std[k];
            float *o = out + k * plane;
            for (size_t p = 0; p < plane; p++)
                o[p] = (float)img[p * c + k] * a + b;
        }
    }
}
