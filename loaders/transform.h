/* transform.h — what happens to pixels between the store and the model: resize + center crop,
 * random crop with padding and horizontal flip, uint8 HWC -> normalised float CHW.
 * Pure functions on caller-owned buffers (the extension can link them too). */
#ifndef IMGSET_TRANSFORM_H
#define IMGSET_TRANSFORM_H

#include <stdint.h>

#include "dataset.h"
#include "rng.h"

/* Bilinear resize of src (sh, sw, c) into dst (dh, dw, c), pixel centres aligned
 * (align_corners=False, like torchvision / PIL for upsampling), rounded to nearest. */
void transform_resize(uint8_t *dst, int32_t dh, int32_t dw, const uint8_t *src, int32_t sh,
                      int32_t sw, int32_t c);

/* torchvision's Resize(min(h, w)) + CenterCrop(h, w): scale src so that it covers (h, w)
 * with its shorter side, then cut the centre. scratch holds the scaled image: at least
 * transform_resize_crop_scratch(src_shape, h, w) bytes. dst is (h, w, src.channels). */
void transform_resize_crop(uint8_t *dst, int32_t h, int32_t w, const uint8_t *src,
                           ImageShape src_shape, uint8_t *scratch);
size_t transform_resize_crop_scratch(ImageShape src_shape, int32_t h, int32_t w);

/* Training augmentation in one pass: zero-pad by `padding` pixels, take a random (h, w)
 * window, flip it horizontally with probability 1/2 when `flip`. dst and src are (h, w, c)
 * and must not overlap. The choices come from rng. */
void transform_random_crop_flip(uint8_t *dst, const uint8_t *src, int32_t h, int32_t w,
                                int32_t c, int32_t padding, int flip, Rng *rng);

/* n images (n, h, w, c) uint8 -> (n, c, h, w) float: (x / 255 - mean[ch]) / std[ch].
 * mean = std = 0.5 maps to [-1, 1]. */
void transform_to_float(float *dst, const uint8_t *src, int n, int32_t h, int32_t w, int32_t c,
                        const float *mean, const float *std);

#endif
