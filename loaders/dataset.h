/* dataset.h — what a data set is: splits, class names and image shapes (see DESIGN.md). */
#ifndef IMGSET_DATASET_H
#define IMGSET_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "sizes.h"

enum { SPLIT_TRAIN = 0, SPLIT_TEST = 1, SPLIT_COUNT = 2 };

/* "train", "test". */
extern const char *const split_names[SPLIT_COUNT];

/* SPLIT_TRAIN / SPLIT_TEST for a name, or -1 (with imgset_fail) when unknown. */
int split_from_name(const char *name);

#define IMGSET_MAX_SIDE 16384   /* largest height or width any store accepts */
#define IMGSET_MAX_CHANNELS 4
#define IMGSET_MAX_CLASSES 100000
#define IMGSET_NAME_MAX 64      /* data set names, including the terminating NUL */

/* One image's shape; pixels are uint8, channels-last: H x W x C. */
typedef struct ImageShape {
    int32_t height;
    int32_t width;
    int32_t channels;
} ImageShape;

/* 1 when the shape is within the limits above (1..IMGSET_MAX_SIDE, 1..IMGSET_MAX_CHANNELS). */
int image_shape_valid(ImageShape shape);

/* H*W*C for a valid shape; 0 for an invalid one (so a header can never size an allocation). */
size_t image_shape_bytes(ImageShape shape);

/* 1 when both shapes are equal. */
int image_shape_equal(ImageShape a, ImageShape b);

/* Per-split facts every store can give without reading pixels. */
typedef struct SplitInfo {
    int64_t count;         /* number of images */
    ImageShape shape;      /* every image's shape; all zeros when sizes vary (a ragged split) */
} SplitInfo;

/* A data set's metadata. Owns class_names and the strings in it. */
typedef struct DatasetInfo {
    char name[IMGSET_NAME_MAX];   /* e.g. "cifar10"; may be "" when the store has none */
    int32_t num_classes;
    char **class_names;           /* num_classes NUL-terminated names, label i = class_names[i] */
    SplitInfo split[SPLIT_COUNT];
} DatasetInfo;

/* 1 when every image of the split has the same shape. */
int split_is_fixed(const SplitInfo *split);

/* Replace the class names with copies of names[0..n-1]; 0 or -1 on allocation failure. */
int dataset_info_set_classes(DatasetInfo *info, int32_t n, const char *const *names);

/* Deep copy of src into dst (dst is overwritten, not freed first); 0 or -1. */
int dataset_info_copy(DatasetInfo *dst, const DatasetInfo *src);

/* Free what the info owns and zero it. */
void dataset_info_free(DatasetInfo *info);

/* Set name (truncated to IMGSET_NAME_MAX-1). */
void dataset_info_set_name(DatasetInfo *info, const char *name);

#endif
