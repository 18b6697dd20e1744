/* generate.h — synthetic, learnable data sets in the project's shapes (see DESIGN.md). */
#ifndef IMGSET_GENERATE_H
#define IMGSET_GENERATE_H

#include <stdint.h>

#include "dataset.h"
#include "store.h"

/*
 * Every image is a class prototype (two oriented sinusoidal gratings under Gaussian envelopes
 * and a Gaussian blob, with class-specific frequency, orientation, position and colours,
 * defined in normalised coordinates so every size shows the same classes) seen through
 * per-image nuisances: a random grating phase, shift (up to 12% of the side) and scale, a
 * weaker distractor drawn from another class, a random background gradient, colour jitter
 * (channel gains, brightness, contrast) and per-pixel Gaussian noise, clamped to uint8.
 * Labels are uniform over the classes (random order, not sorted). Images are rendered as
 * sums of separable terms, so any size costs a few multiply-adds per pixel (about 1.5 s for
 * the 60,000 cifar10 images on one core).
 *
 * Image i of split s depends only on (seed, s, i): images can be made in any order and by
 * any number of threads, and always come out the same bytes (for a given C library: the
 * per-image tables use expf/sinf/cosf).
 */

/* What to generate. */
typedef struct GenerateParams {
    const char *like;     /* shape name: "cifar10", "tinyimagenet", "hires" or "mixed" */
    int64_t train, test;  /* image counts per split; < 0 means the shape's default */
    uint64_t seed;
} GenerateParams;

/* A shape's defaults. */
typedef struct GenerateShape {
    int64_t train, test;   /* default counts */
    ImageShape image;      /* fixed image shape; height = width = 0 when sizes vary */
    int32_t min_side;      /* sides are drawn from min_side..max_side when sizes vary, */
    int32_t max_side;      /* both equal to the fixed side otherwise */
    int32_t num_classes;
} GenerateShape;

/* The shape names, NULL-terminated ({"cifar10", "tinyimagenet", "hires", "mixed", NULL}). */
const char *const *generate_shape_names(void);

/* Fill *out with the defaults of shape `like`; 0, or -1 with imgset_fail() on an unknown name. */
int generate_shape_defaults(const char *like, GenerateShape *out);

/*
 * A read-only store that makes its images on demand (nothing is kept in memory but the class
 * prototypes). Its name is the shape name, class names are "cls000", "cls001", ….
 * NULL with imgset_fail() on an unknown shape name. Free with store_close().
 */
Store *generate_open(const GenerateParams *p);

/*
 * The generator behind generate_open(), for code that wants to make images from several
 * threads at once: after generator_new() it is read-only, so generator_image() may be called
 * concurrently on one Generator.
 */
typedef struct Generator Generator;

/* A generator for p; NULL with imgset_fail(). Free with generator_free(). */
Generator *generator_new(const GenerateParams *p);

/* The data set's metadata (owned by the generator). */
const DatasetInfo *generator_info(const Generator *g);

/* Shape of image `index` of `split` (checked against the counts); 0 or -1. */
int generator_image_shape(const Generator *g, int split, int64_t index, ImageShape *shape);

/* Make image `index` of `split` into dst (capacity bytes, H*W*C channels-last) and set its
 * shape and label; 0 or -1 (bad split / index, or capacity too small). */
int generator_image(const Generator *g, int split, int64_t index, uint8_t *dst,
                    size_t capacity, ImageShape *shape, int32_t *label);

/* Free a generator; NULL is fine. */
void generator_free(Generator *g);

#endif
