/* import_cifar10.c — the CIFAR-10 binary batches (data_batch_N.bin) as a read-only store. */
#include "import.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"

#define TRAIN_BATCHES 5
#define PLANE (CIFAR10_SIDE * CIFAR10_SIDE)
#define MAX_BATCH_FILE ((size_t)1 << 34)   /* 16 GiB: far above a real batch (30 MiB) */
#define MAX_META_FILE ((size_t)1 << 20)
#define MAX_CLASS_NAME 255

int cifar10_check_batch(const uint8_t *data, size_t size, const char *file, int64_t *records)
{
    if (size % CIFAR10_RECORD != 0)
        return imgset_fail("file %s: size %zu is not a multiple of the %d-byte CIFAR-10 record "
                           "(%zu whole records and %zu bytes left over)", file, size,
                           CIFAR10_RECORD, size / CIFAR10_RECORD, size % CIFAR10_RECORD);
    size_t n = size / CIFAR10_RECORD;
    for (size_t i = 0; i < n; i++)
        if (data[i * CIFAR10_RECORD] >= CIFAR10_CLASSES)
            return imgset_fail("file %s: record %zu has label %d (expected 0..%d)", file, i,
                               data[i * CIFAR10_RECORD], CIFAR10_CLASSES - 1);
    *records = (int64_t)n;
    return 0;
}

void cifar10_record_to_hwc(const uint8_t *record, uint8_t *dst, int32_t *label)
{
    const uint8_t *red = record + 1, *green = red + PLANE, *blue = green + PLANE;
    *label = record[0];
    for (int i = 0; i < PLANE; i++) {
        dst[3 * i + 0] = red[i];
        dst[3 * i + 1] = green[i];
        dst[3 * i + 2] = blue[i];
    }
}

/* 1 for the whitespace trimmed around a class name. */
static int is_blank(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

int cifar10_parse_meta(const uint8_t *text, size_t size, const char *file, DatasetInfo *info)
{
    char names[CIFAR10_CLASSES][MAX_CLASS_NAME + 1];
    const char *pointers[CIFAR10_CLASSES];
    int count = 0, line = 0;
    size_t pos = 0;
    while (pos < size) {
        size_t end = pos;
        while (end < size && text[end] != '\n')
            end++;
        line++;
        size_t first = pos, last = end;
        while (first < last && is_blank(text[first]))
            first++;
        while (last > first && is_blank(text[last - 1]))
            last--;
        pos = end + 1;
        if (first == last)
            continue;   /* blank line */
        if (count == CIFAR10_CLASSES)
            return imgset_fail("file %s: more than %d class names (line %d is the %dth)", file,
                               CIFAR10_CLASSES, line, CIFAR10_CLASSES + 1);
        if (last - first > MAX_CLASS_NAME)
            return imgset_fail("file %s: line %d: class name longer than %d bytes", file, line,
                               MAX_CLASS_NAME);
        for (size_t i = first; i < last; i++)
            if (text[i] < 0x20 || text[i] == 0x7f || text[i] == '/')
                return imgset_fail("file %s: line %d: class name has a %s (byte 0x%02x)", file,
                                   line, text[i] == '/' ? "slash" : "control character",
                                   text[i]);
        memcpy(names[count], text + first, last - first);
        names[count][last - first] = '\0';
        pointers[count] = names[count];
        count++;
    }
    if (count != CIFAR10_CLASSES)
        return imgset_fail("file %s: %d class names, expected %d (one per line)", file, count,
                           CIFAR10_CLASSES);
    return dataset_info_set_classes(info, CIFAR10_CLASSES, pointers);
}

/* One batch file, held in memory. */
typedef struct Batch {
    uint8_t *data;        /* (records, CIFAR10_RECORD) */
    int64_t records;
} Batch;

typedef struct CifarStore {
    Batch batch[SPLIT_COUNT][TRAIN_BATCHES];   /* train: data_batch_1..; test: test_batch */
    int batches[SPLIT_COUNT];
} CifarStore;

/* dir + "/" + file into path; -1 with imgset_fail() when it does not fit. */
static int join_path(char *path, size_t capacity, const char *dir, const char *file)
{
    int n = snprintf(path, capacity, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= capacity)
        return imgset_fail("cifar10: path %s/%s is too long", dir, file);
    return 0;
}

/* Read and check one batch file into *batch. */
static int load_batch(const char *path, Batch *batch)
{
    size_t size;
    if (import_read_file(path, MAX_BATCH_FILE, &batch->data, &size) < 0)
        return -1;
    return cifar10_check_batch(batch->data, size, path, &batch->records);
}

static void cifar_close(Store *s)
{
    CifarStore *st = s->impl;
    if (!st)
        return;
    for (int split = 0; split < SPLIT_COUNT; split++)
        for (int b = 0; b < TRAIN_BATCHES; b++)
            free(st->batch[split][b].data);
    free(st);
    s->impl = NULL;
}

static int cifar_open(Store *s, const char *dir)
{
    char path[4096];
    CifarStore *st = calloc(1, sizeof *st);
    if (!st)
        return imgset_fail("out of memory");
    s->impl = st;

    uint8_t *meta;
    size_t meta_size;
    if (join_path(path, sizeof path, dir, "batches.meta.txt") < 0 ||
        import_read_file(path, MAX_META_FILE, &meta, &meta_size) < 0)
        goto fail;
    int rc = cifar10_parse_meta(meta, meta_size, path, &s->info);
    free(meta);
    if (rc < 0)
        goto fail;

    /* Train: data_batch_1 is required, later ones are read while they exist. */
    for (int b = 0; b < TRAIN_BATCHES; b++) {
        char file[32];
        snprintf(file, sizeof file, "data_batch_%d.bin", b + 1);
        if (join_path(path, sizeof path, dir, file) < 0)
            goto fail;
        if (b > 0 && access(path, F_OK) != 0 && errno == ENOENT) {
            /* A gap would silently drop the batches after it. */
            for (int later = b + 1; later < TRAIN_BATCHES; later++) {
                char later_path[4096];
                snprintf(file, sizeof file, "data_batch_%d.bin", later + 1);
                if (join_path(later_path, sizeof later_path, dir, file) < 0)
                    goto fail;
                if (access(later_path, F_OK) == 0) {
                    imgset_fail("file %s: missing, but %s exists", path, later_path);
                    goto fail;
                }
            }
            break;
        }
        if (load_batch(path, &st->batch[SPLIT_TRAIN][b]) < 0)
            goto fail;
        st->batches[SPLIT_TRAIN]++;
    }
    if (join_path(path, sizeof path, dir, "test_batch.bin") < 0 ||
        load_batch(path, &st->batch[SPLIT_TEST][0]) < 0)
        goto fail;
    st->batches[SPLIT_TEST] = 1;

    dataset_info_set_name(&s->info, "cifar10");
    for (int split = 0; split < SPLIT_COUNT; split++) {
        int64_t count = 0;
        for (int b = 0; b < st->batches[split]; b++)
            count += st->batch[split][b].records;
        s->info.split[split].count = count;
        s->info.split[split].shape = (ImageShape){CIFAR10_SIDE, CIFAR10_SIDE, 3};
    }
    return 0;

fail:
    cifar_close(s);
    return -1;
}

static int cifar_image_shape(Store *s, int split, int64_t index, ImageShape *shape)
{
    *shape = (ImageShape){CIFAR10_SIDE, CIFAR10_SIDE, 3};
    return 0;
}

static int cifar_read_image(Store *s, int split, int64_t index, uint8_t *dst, size_t capacity,
                            ImageShape *shape, int32_t *label)
{
    const CifarStore *st = s->impl;
    *shape = (ImageShape){CIFAR10_SIDE, CIFAR10_SIDE, 3};
    if (capacity < (size_t)3 * PLANE)
        return imgset_fail("%s: image needs %d bytes, buffer has %zu", s->uri, 3 * PLANE,
                           capacity);
    /* store.c checked 0 <= index < count, so the record is in one of the batches. */
    for (int b = 0; b < st->batches[split]; b++) {
        const Batch *batch = &st->batch[split][b];
        if (index < batch->records) {
            cifar10_record_to_hwc(batch->data + (size_t)index * CIFAR10_RECORD, dst, label);
            return 0;
        }
        index -= batch->records;
    }
    return imgset_fail("%s: %s index past the last batch", s->uri, split_names[split]);
}

static const StoreOps cifar10_ops = {
    .summary = "CIFAR-10 binary batches (importer)",
    .open = cifar_open,
    .image_shape = cifar_image_shape,
    .read_image = cifar_read_image,
    .close = cifar_close,
};

Store *import_cifar10_open(const char *dir)
{
    char name[4200];
    snprintf(name, sizeof name, "cifar10:%s", dir);
    return store_open_with(&cifar10_ops, name, dir, NULL);
}
