/* dataset.c — data set metadata helpers and overflow-checked size arithmetic. */
#include "dataset.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

const char *const split_names[SPLIT_COUNT] = {"train", "test"};

int split_from_name(const char *name)
{
    for (int i = 0; i < SPLIT_COUNT; i++)
        if (strcmp(name, split_names[i]) == 0)
            return i;
    return imgset_fail("unknown split \"%s\" (expected train or test)", name);
}

int image_shape_valid(ImageShape s)
{
    return s.height >= 1 && s.height <= IMGSET_MAX_SIDE && s.width >= 1 &&
           s.width <= IMGSET_MAX_SIDE && s.channels >= 1 && s.channels <= IMGSET_MAX_CHANNELS;
}

size_t image_shape_bytes(ImageShape s)
{
    /* Within the limits the product is below 2^31 * 4, so it cannot overflow size_t. */
    if (!image_shape_valid(s))
        return 0;
    return (size_t)s.height * (size_t)s.width * (size_t)s.channels;
}

int image_shape_equal(ImageShape a, ImageShape b)
{
    return a.height == b.height && a.width == b.width && a.channels == b.channels;
}

int split_is_fixed(const SplitInfo *split)
{
    return split->shape.height != 0;
}

int dataset_info_set_classes(DatasetInfo *info, int32_t n, const char *const *names)
{
    char **copy = calloc(n > 0 ? (size_t)n : 1, sizeof *copy);
    if (!copy)
        return imgset_fail("out of memory for %d class names", n);
    for (int32_t i = 0; i < n; i++) {
        copy[i] = strdup(names[i]);
        if (!copy[i]) {
            while (i-- > 0)
                free(copy[i]);
            free(copy);
            return imgset_fail("out of memory for class names");
        }
    }
    for (int32_t i = 0; i < info->num_classes; i++)
        free(info->class_names[i]);
    free(info->class_names);
    info->class_names = copy;
    info->num_classes = n;
    return 0;
}

int dataset_info_copy(DatasetInfo *dst, const DatasetInfo *src)
{
    *dst = *src;
    dst->class_names = NULL;
    dst->num_classes = 0;
    return dataset_info_set_classes(dst, src->num_classes, (const char *const *)src->class_names);
}

void dataset_info_free(DatasetInfo *info)
{
    for (int32_t i = 0; i < info->num_classes; i++)
        free(info->class_names[i]);
    free(info->class_names);
    memset(info, 0, sizeof *info);
}

void dataset_info_set_name(DatasetInfo *info, const char *name)
{
    size_t n = strlen(name);
    if (n >= sizeof info->name)
        n = sizeof info->name - 1;
    memcpy(info->name, name, n);
    info->name[n] = '\0';
}
