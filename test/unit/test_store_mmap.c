/* test_store_mmap.c — the mmap: store: fixed and ragged round trips, bad directories, aborts. */
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "npy.h"
#include "store.h"
#include "store_mmap.h"
#include "tap.h"

static char root[] = "/tmp/test_store_mmap.XXXXXX";

#define NUM_CLASSES 5

static const char *const class_names[NUM_CLASSES] = {"cat", "dog", "wolf ü", "a b", "x"};

/* Deterministic test pixel k of image i of split. */
static uint8_t pixel(int split, int64_t i, size_t k)
{
    return (uint8_t)(split * 131 + i * 31 + k * 7 + (k >> 8));
}

static int32_t label_of(int split, int64_t i)
{
    return (int32_t)((i * 3 + split) % NUM_CLASSES);
}

/* Shape of image i in a ragged split. */
static ImageShape ragged_shape(int64_t i)
{
    ImageShape s = {(int32_t)(2 + i % 5), (int32_t)(3 + (i * 2) % 7), i % 2 ? 3 : 1};
    return s;
}

static ImageShape shape_of(const DatasetInfo *info, int split, int64_t i)
{
    return split_is_fixed(&info->split[split]) ? info->split[split].shape : ragged_shape(i);
}

static void make_info(DatasetInfo *info, int64_t ntrain, ImageShape train, int64_t ntest,
                      ImageShape test)
{
    memset(info, 0, sizeof *info);
    dataset_info_set_name(info, "unit");
    dataset_info_set_classes(info, NUM_CLASSES, class_names);
    info->split[SPLIT_TRAIN].count = ntrain;
    info->split[SPLIT_TRAIN].shape = train;
    info->split[SPLIT_TEST].count = ntest;
    info->split[SPLIT_TEST].shape = test;
}

/* root/name, in a static buffer per call slot. */
static const char *at(const char *name)
{
    static char buf[4][512];
    static int slot;
    slot = (slot + 1) % 4;
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", root, name);
    return buf[slot];
}

/* Write `limit` images per split (all when -1) into uri; commit when asked. */
static int write_store(const char *uri, const DatasetInfo *info, int64_t limit, int commit)
{
    Store *s = store_create(uri, info);
    if (!s)
        return -1;
    uint8_t buf[64 * 64 * 4];
    for (int split = 0; split < SPLIT_COUNT; split++)
        for (int64_t i = 0; i < info->split[split].count && (limit < 0 || i < limit); i++) {
            ImageShape shape = shape_of(info, split, i);
            for (size_t k = 0; k < image_shape_bytes(shape); k++)
                buf[k] = pixel(split, i, k);
            if (store_write_image(s, split, buf, shape, label_of(split, i)) < 0) {
                store_close(s);
                return -1;
            }
        }
    if (!commit) {
        store_close(s);
        return 0;
    }
    return store_commit(s);
}

/* Read every image of uri back and compare with what write_store() wrote. */
static int check_store(const char *uri, const DatasetInfo *info)
{
    Store *s = store_open(uri);
    if (!s)
        return 0;
    int good = strcmp(s->info.name, info->name) == 0 && s->info.num_classes == NUM_CLASSES;
    for (int c = 0; good && c < NUM_CLASSES; c++)
        good = strcmp(s->info.class_names[c], class_names[c]) == 0;
    uint8_t buf[64 * 64 * 4];
    for (int split = 0; good && split < SPLIT_COUNT; split++) {
        good = s->info.split[split].count == info->split[split].count &&
               image_shape_equal(s->info.split[split].shape, info->split[split].shape);
        MmapSplitView view;
        good = good && store_mmap_split_view(s, split, &view) == 0 &&
               view.count == info->split[split].count &&
               (view.offsets != NULL) == !split_is_fixed(&info->split[split]);
        size_t at_byte = 0;
        for (int64_t i = 0; good && i < info->split[split].count; i++) {
            ImageShape shape, want = shape_of(info, split, i);
            int32_t label;
            good = store_image_shape(s, split, i, &shape) == 0 && image_shape_equal(shape, want);
            good = good && store_read_image(s, split, i, buf, sizeof buf, &shape, &label) == 0 &&
                   image_shape_equal(shape, want) && label == label_of(split, i) &&
                   view.labels[i] == label;
            for (size_t k = 0; good && k < image_shape_bytes(want); k++)
                good = buf[k] == pixel(split, i, k) && view.pixels[at_byte + k] == buf[k];
            at_byte += image_shape_bytes(want);
        }
        good = good && at_byte == view.pixel_bytes;
    }
    store_close(s);
    return good;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Replace DIR/name with an .npy of dtype and shape holding values[0..n) (or pixel bytes
 * when values is NULL). */
static void replace_npy(const char *dir, const char *name, NpyDtype dtype, int ndim,
                        const int64_t *shape, const int64_t *values, int64_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
    NpyWriter w;
    if (npy_writer_open(&w, path, dtype, ndim, 0) < 0)
        return;
    for (int64_t i = 0; i < n; i++)
        npy_writer_write_int(&w, values ? values[i] : (int64_t)(pixel(0, 0, (size_t)i) & 0x7f));
    npy_writer_finish(&w, shape);
}

/* Write raw bytes to DIR/name (replacing it). */
static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(data, 1, len, f);
        fclose(f);
    }
}

/* Opening uri fails and the message contains each of the (up to two) needles. */
static void open_fails(const char *uri, const char *needle, const char *needle2,
                       const char *what)
{
    Store *s = store_open(uri);
    ok(!s && strstr(imgset_error(), needle) && (!needle2 || strstr(imgset_error(), needle2)),
       "%s is refused: %s", what, imgset_error());
    store_close(s);
}

static const ImageShape fixed_shape = {6, 5, 3};
static const ImageShape ragged = {0, 0, 0};

static void test_round_trips(void)
{
    DatasetInfo info;
    char uri[600];

    make_info(&info, 9, fixed_shape, 4, fixed_shape);
    snprintf(uri, sizeof uri, "mmap:%s", at("fixed"));
    ok(write_store(uri, &info, -1, 1) == 0, "fixed store written: %s", imgset_error());
    ok(!exists(at("fixed.tmp")) && exists(at("fixed/imgset.txt")) &&
           exists(at("fixed/train_images.npy")) && !exists(at("fixed/train_offsets.npy")),
       "fixed store has its files and no offsets");
    ok(check_store(uri, &info), "fixed store reads back pixel for pixel: %s", imgset_error());
    NpyMap m;
    ok(npy_map(&m, at("fixed/train_images.npy"), 0) == 0 && m.header.ndim == 4 &&
           m.header.shape[0] == 9 && m.header.shape[3] == 3 && m.header.data_offset % 64 == 0 &&
           strcmp(m.header.descr, "|u1") == 0, "train images are (9, 6, 5, 3) |u1, data 64-aligned");
    npy_unmap(&m);
    ok(npy_map(&m, at("fixed/test_labels.npy"), 0) == 0 && m.header.ndim == 1 &&
           m.header.shape[0] == 4 && strcmp(m.header.descr, "<i8") == 0, "test labels (4,) <i8");
    npy_unmap(&m);
    dataset_info_free(&info);

    make_info(&info, 11, ragged, 3, ragged);
    snprintf(uri, sizeof uri, "mmap:%s/", at("ragged"));   /* a trailing slash is fine */
    ok(write_store(uri, &info, -1, 1) == 0, "ragged store written: %s", imgset_error());
    ok(check_store(uri, &info), "ragged store reads back pixel for pixel: %s", imgset_error());
    ok(npy_map(&m, at("ragged/train_shapes.npy"), 0) == 0 && m.header.ndim == 2 &&
           m.header.shape[0] == 11 && m.header.shape[1] == 3 &&
           m.header.dtype == NPY_DTYPE_INT32, "ragged shapes are (11, 3) int32");
    npy_unmap(&m);
    ok(npy_map(&m, at("ragged/train_offsets.npy"), 0) == 0 && m.header.shape[0] == 12,
       "ragged offsets are (12,)");
    npy_unmap(&m);
    dataset_info_free(&info);

    make_info(&info, 5, ragged, 0, fixed_shape);
    snprintf(uri, sizeof uri, "mmap:%s", at("mixed"));
    ok(write_store(uri, &info, -1, 1) == 0 && check_store(uri, &info),
       "ragged train with an empty fixed test split round-trips: %s", imgset_error());
    dataset_info_free(&info);

    make_info(&info, 3, fixed_shape, 0, ragged);
    snprintf(uri, sizeof uri, "mmap:%s", at("empty_ragged"));
    ok(write_store(uri, &info, -1, 1) == 0 && check_store(uri, &info),
       "an empty ragged test split round-trips: %s", imgset_error());
    dataset_info_free(&info);
}

static void test_writer_refusals(void)
{
    DatasetInfo info;
    char uri[600], tmp[600];
    make_info(&info, 4, fixed_shape, 2, fixed_shape);

    snprintf(uri, sizeof uri, "mmap:%s", at("fixed"));
    Store *s = store_create(uri, &info);
    ok(!s && strstr(imgset_error(), "already exists") && strstr(imgset_error(), "fixed"),
       "creating over an existing DIR is refused: %s", imgset_error());
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", at("fixed"), (long)getpid());
    ok(!exists(tmp), "…and leaves no temporary directory");

    snprintf(uri, sizeof uri, "mmap:%s", at("aborted"));
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", at("aborted"), (long)getpid());
    s = store_create(uri, &info);
    ok(s && exists(tmp) && !exists(at("aborted")), "a store being written lives in DIR.tmp-PID");
    store_close(s);
    ok(!exists(tmp) && !exists(at("aborted")), "abort before any image leaves nothing");
    ok(write_store(uri, &info, 2, 0) == 0 && !exists(tmp) && !exists(at("aborted")),
       "abort after some images leaves nothing");
    ok(write_store(uri, &info, 3, 1) < 0 && !exists(tmp) && !exists(at("aborted")),
       "a commit with missing images fails and leaves nothing: %s", imgset_error());

    /* DIR appears (empty) while the store is written: the commit must not replace it. */
    snprintf(uri, sizeof uri, "mmap:%s", at("raced"));
    s = store_create(uri, &info);
    uint8_t buf[6 * 5 * 3] = {0};
    for (int split = 0; s && split < SPLIT_COUNT; split++)
        for (int64_t i = 0; i < info.split[split].count; i++)
            store_write_image(s, split, buf, fixed_shape, 0);
    mkdir(at("raced"), 0777);
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", at("raced"), (long)getpid());
    ok(s && store_commit(s) < 0 && strstr(imgset_error(), "already exists") && !exists(tmp) &&
           !exists(at("raced/imgset.txt")), "commit onto a DIR that appeared meanwhile is "
       "refused: %s", imgset_error());

    free(info.class_names[1]);
    info.class_names[1] = strdup("two\nlines");
    snprintf(uri, sizeof uri, "mmap:%s", at("newline"));
    ok(store_create(uri, &info) == NULL && strstr(imgset_error(), "line break") &&
           !exists(at("newline")), "a class name with a newline is refused: %s",
       imgset_error());
    dataset_info_free(&info);
}

/* A fresh fixed store at root/name (N=4 train, 2 test, shape 6x5x3); returns its dir. */
static const char *fresh_fixed(const char *name)
{
    DatasetInfo info;
    char uri[600];
    make_info(&info, 4, fixed_shape, 2, fixed_shape);
    snprintf(uri, sizeof uri, "mmap:%s", at(name));
    write_store(uri, &info, -1, 1);
    dataset_info_free(&info);
    return at(name);
}

static const char *fresh_ragged(const char *name)
{
    DatasetInfo info;
    char uri[600];
    make_info(&info, 4, ragged, 2, ragged);
    snprintf(uri, sizeof uri, "mmap:%s", at(name));
    write_store(uri, &info, -1, 1);
    dataset_info_free(&info);
    return at(name);
}

/* Broken .npy files: truncated, a wrong magic, dtype or order, label counts and ranges. */
static void test_bad_npy_files(void)
{
    char uri[600], path[600];
    const char *dir;

    dir = fresh_fixed("b_trunc");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    snprintf(path, sizeof path, "%s/train_images.npy", dir);
    struct stat st;
    stat(path, &st);
    if (truncate(path, st.st_size - 1) == 0)
        open_fails(uri, "train_images.npy", "truncated", "a truncated train_images.npy");

    dir = fresh_fixed("b_magic");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    snprintf(path, sizeof path, "%s/test_labels.npy", dir);
    FILE *f = fopen(path, "r+b");
    if (f) {
        fputc('X', f);
        fclose(f);
    }
    open_fails(uri, "test_labels.npy", "magic", "a .npy with a wrong magic");

    dir = fresh_fixed("b_dtype");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    int64_t ishape[4] = {4, 6, 5, 3};
    replace_npy(dir, "train_images.npy", NPY_DTYPE_INT8, 4, ishape, NULL, 4 * 6 * 5 * 3);
    open_fails(uri, "train_images.npy", "expected dtype uint8", "int8 images");

    dir = fresh_fixed("b_fortran");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    uint8_t raw[128 + 4 * 8] = {0};   /* a 128-byte header as numpy writes, then 4 int64 */
    const char *dict = "{'descr': '<i8', 'fortran_order': True, 'shape': (4,), }";
    memcpy(raw, "\x93NUMPY\x01\x00\x76\x00", 10);
    memset(raw + 10, ' ', 118);
    memcpy(raw + 10, dict, strlen(dict));
    raw[127] = '\n';
    write_file(dir, "train_labels.npy", raw, sizeof raw);
    open_fails(uri, "train_labels.npy", "Fortran-order arrays are not supported",
               "Fortran-order labels");

    dir = fresh_fixed("b_count");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    int64_t three[1] = {3}, labels3[3] = {0, 1, 2};
    replace_npy(dir, "train_labels.npy", NPY_DTYPE_INT64, 1, three, labels3, 3);
    open_fails(uri, "train_labels.npy", "3 labels for the 4 images", "a label count mismatch");

    dir = fresh_fixed("b_range");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    int64_t four[1] = {4}, labels4[4] = {0, 1, NUM_CLASSES, 2};
    replace_npy(dir, "train_labels.npy", NPY_DTYPE_INT64, 1, four, labels4, 4);
    open_fails(uri, "train_labels.npy", "outside 0..4", "a label out of range");
}

/* Labels in other integer dtypes, (N, H, W) images, and more channels than the limit. */
static void test_label_dtypes_and_shapes(void)
{
    char uri[600];
    const char *dir;
    int64_t four[1] = {4};

    dir = fresh_fixed("b_i32");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    int64_t two[1] = {2}, labels2[2] = {4, 3};
    replace_npy(dir, "train_labels.npy", NPY_DTYPE_INT32, 1, four, (int64_t[]){1, 2, 3, 4}, 4);
    replace_npy(dir, "test_labels.npy", NPY_DTYPE_UINT8, 1, two, labels2, 2);
    Store *s = store_open(uri);
    uint8_t buf[256];
    ImageShape shape;
    int32_t label = -1, label2 = -1;
    ok(s && store_read_image(s, SPLIT_TRAIN, 3, buf, sizeof buf, &shape, &label) == 0 &&
           store_read_image(s, SPLIT_TEST, 0, buf, sizeof buf, &shape, &label2) == 0 &&
           label == 4 && label2 == 4, "int32 and uint8 labels are read: %s", imgset_error());
    ok(s && store_read_image(s, SPLIT_TRAIN, 0, buf, 10, &shape, &label) < 0,
       "a too small buffer is refused");
    store_close(s);

    dir = fresh_fixed("b_hw");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    int64_t hw[3] = {4, 7, 9};
    replace_npy(dir, "train_images.npy", NPY_DTYPE_UINT8, 3, hw, NULL, 4 * 7 * 9);
    s = store_open(uri);
    ok(s && s->info.split[SPLIT_TRAIN].shape.height == 7 &&
           s->info.split[SPLIT_TRAIN].shape.channels == 1, "(N, H, W) images read as C = 1: %s",
       imgset_error());
    store_close(s);

    dir = fresh_fixed("b_bigc");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    int64_t c5[4] = {4, 1, 1, 5};
    replace_npy(dir, "train_images.npy", NPY_DTYPE_UINT8, 4, c5, NULL, 20);
    open_fails(uri, "train_images.npy", "outside the limits", "5 channels");
}

/* A missing file or directory, the imgset.txt marker and classes.txt: errors naming the file. */
static void test_bad_markers(void)
{
    char uri[600], path[600];
    const char *dir;

    dir = fresh_fixed("b_missing");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    snprintf(path, sizeof path, "%s/test_labels.npy", dir);
    unlink(path);
    open_fails(uri, "test_labels.npy", "No such file", "a missing labels file");

    dir = fresh_fixed("b_version");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    write_file(dir, "imgset.txt", "imgset-mmap 2\nname x\n", 21);
    open_fails(uri, "imgset.txt", "version 2, this build reads version 1", "marker version 2");
    write_file(dir, "imgset.txt", "hello\n", 6);
    open_fails(uri, "imgset.txt", "expected the first line \"imgset-mmap 1\"", "a wrong magic line");
    snprintf(path, sizeof path, "%s/imgset.txt", dir);
    unlink(path);
    open_fails(uri, "imgset.txt", "missing", "a missing marker");
    open_fails("mmap:/nonexistent/dir", "/nonexistent/dir", NULL, "a missing directory");

    dir = fresh_fixed("b_classes");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    write_file(dir, "classes.txt", "", 0);
    open_fails(uri, "classes.txt", "0 class names", "an empty classes.txt");
}

/* Ragged splits whose offsets and shapes disagree with each other or the pixels. */
static void test_bad_ragged_files(void)
{
    char uri[600], path[600];
    const char *dir;

    dir = fresh_ragged("r_range");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    int64_t n5[1] = {5}, offsets[5] = {0, 0, 0, 0, 0};
    for (int i = 0; i < 4; i++)
        offsets[i + 1] = offsets[i] + (int64_t)image_shape_bytes(ragged_shape(i));
    offsets[4] += 1000;
    replace_npy(dir, "train_offsets.npy", NPY_DTYPE_INT64, 1, n5, offsets, 5);
    open_fails(uri, "train_offsets.npy", "offset 4", "an offset out of range");

    dir = fresh_ragged("r_past");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    int64_t fshape[1] = {10};
    replace_npy(dir, "train_images.npy", NPY_DTYPE_UINT8, 1, fshape, NULL, 10);
    open_fails(uri, "train_offsets.npy", "past the end", "offsets past the flat pixels");

    dir = fresh_ragged("r_shape");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    int64_t sshape[2] = {4, 3}, shapes[12];
    for (int i = 0; i < 4; i++) {
        ImageShape r = ragged_shape(i);
        shapes[3 * i] = r.height;
        shapes[3 * i + 1] = r.width;
        shapes[3 * i + 2] = r.channels;
    }
    shapes[4] += 1;   /* image 1 one column wider than its offsets say */
    replace_npy(dir, "train_shapes.npy", NPY_DTYPE_INT32, 2, sshape, shapes, 12);
    open_fails(uri, "train_offsets.npy", "expected", "offsets inconsistent with shapes");
    shapes[4] -= 1;
    shapes[5] = 0;
    replace_npy(dir, "train_shapes.npy", NPY_DTYPE_INT32, 2, sshape, shapes, 12);
    open_fails(uri, "train_shapes.npy", "image 1 shape", "a zero-channel shape");

    dir = fresh_ragged("r_first");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    offsets[4] -= 1000;
    for (int i = 0; i < 5; i++)
        offsets[i] += 1;
    replace_npy(dir, "train_offsets.npy", NPY_DTYPE_INT64, 1, n5, offsets, 5);
    open_fails(uri, "train_offsets.npy", "offset 0 is 1", "a first offset that is not 0");

    dir = fresh_ragged("r_noshapes");
    snprintf(uri, sizeof uri, "mmap:%s", dir);
    snprintf(path, sizeof path, "%s/test_shapes.npy", dir);
    unlink(path);
    open_fails(uri, "test_shapes.npy", "cannot open", "a ragged split without shapes");
}

/* Creating under a missing parent directory is refused, naming the path. */
static void test_create_missing_parent(void)
{
    DatasetInfo info;
    make_info(&info, 1, fixed_shape, 1, fixed_shape);
    Store *s = store_create("mmap:/nonexistent/parent/x", &info);
    ok(!s && strstr(imgset_error(), "/nonexistent/parent/x.tmp-"),
       "create under a missing parent is refused: %s", imgset_error());
    dataset_info_free(&info);
}

static void test_view_refusal(void)
{
    DatasetInfo info;
    char uri[600];
    make_info(&info, 1, fixed_shape, 1, fixed_shape);
    snprintf(uri, sizeof uri, "mmap:%s", at("view_w"));
    Store *s = store_create(uri, &info);
    MmapSplitView view;
    ok(s && store_mmap_split_view(s, SPLIT_TRAIN, &view) < 0 && view.pixels == NULL,
       "no view of a store being written: %s", imgset_error());
    store_close(s);
    s = store_open("mmap:/dev/null");
    ok(!s, "a store URI naming a non-directory is refused: %s", imgset_error());
    dataset_info_free(&info);
}

int main(void)
{
    if (!mkdtemp(root)) {
        ok(0, "mkdtemp %s", root);
        return tap_done();
    }
    test_round_trips();
    test_writer_refusals();
    test_bad_npy_files();
    test_label_dtypes_and_shapes();
    test_bad_markers();
    test_bad_ragged_files();
    test_create_missing_parent();
    test_view_refusal();
    rm_tree(root);
    return tap_done();
}
