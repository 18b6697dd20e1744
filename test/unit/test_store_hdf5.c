/* test_store_hdf5.c — the hdf5: store: round trips, h5py-style files, bad input. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "rng.h"
#include "store.h"
#include "tap.h"

#ifndef IMGSET_HAVE_HDF5
int main(void)
{
    skip("hdf5 store", "built without HDF5 (no libhdf5-dev, or NO_HDF5=1)");
    return tap_done();
}
#else
#include <hdf5.h>

static char test_dir[256];   /* a fresh directory under /tmp, removed at the end */

/* "DIR/name" in a static buffer (one of four, so a few can be alive at once). */
static const char *in_dir(const char *name)
{
    static char buffers[4][512];
    static int next;
    char *out = buffers[next++ % 4];
    snprintf(out, 512, "%s/%s", test_dir, name);
    return out;
}

/* "hdf5:DIR/name" + suffix. */
static const char *hdf5_uri(const char *name, const char *suffix)
{
    static char buffers[4][600];
    static int next;
    char *out = buffers[next++ % 4];
    snprintf(out, 600, "hdf5:%s/%s%s", test_dir, name, suffix);
    return out;
}

/* ---- data sets written through the store ---------------------------------------------- */

/* The shape of image i of a ragged split: heights, widths and channels vary. */
static ImageShape ragged_shape(int split, int64_t i)
{
    return (ImageShape){(int32_t)(3 + (i * 7 + split) % 23), (int32_t)(2 + (i * 5) % 17),
                        (i % 3 == 0) ? 1 : 3};
}

static ImageShape shape_of(const DatasetInfo *info, int split, int64_t i)
{
    return split_is_fixed(&info->split[split]) ? info->split[split].shape
                                                : ragged_shape(split, i);
}

/* Deterministic pixels for image i of a split. */
static void fill_pixels(uint8_t *dst, size_t n, int split, int64_t i)
{
    Rng r = rng_make(1234, (uint64_t)(split * 1000003 + i));
    for (size_t j = 0; j < n; j += 8) {
        uint64_t v = rng_next(&r);
        for (size_t k = 0; k < 8 && j + k < n; k++)
            dst[j + k] = (uint8_t)(v >> (8 * k));
    }
}

static int32_t label_of(const DatasetInfo *info, int split, int64_t i)
{
    return (int32_t)((i * 3 + split) % info->num_classes);
}

/* An info with k classes named "class-<i>" and the given counts and shapes (zeros: ragged). */
static void make_info(DatasetInfo *info, const char *name, int32_t k, int64_t train,
                      ImageShape train_shape, int64_t test, ImageShape test_shape)
{
    memset(info, 0, sizeof *info);
    dataset_info_set_name(info, name);
    char **names = calloc((size_t)k, sizeof *names);
    for (int32_t i = 0; i < k; i++) {
        names[i] = malloc(32);
        snprintf(names[i], 32, "class-%d", i);
    }
    dataset_info_set_classes(info, k, (const char *const *)names);
    for (int32_t i = 0; i < k; i++)
        free(names[i]);
    free(names);
    info->split[SPLIT_TRAIN] = (SplitInfo){train, train_shape};
    info->split[SPLIT_TEST] = (SplitInfo){test, test_shape};
}

/* Write the set `info` describes at uri; 0 or -1. With stop_after >= 0, write that many
 * train images and close without committing (an abort). */
static int write_set(const char *uri, const DatasetInfo *info, int64_t stop_after)
{
    Store *s = store_create(uri, info);
    if (!s)
        return -1;
    uint8_t *pixels = NULL;
    for (int split = 0; split < SPLIT_COUNT; split++)
        for (int64_t i = 0; i < info->split[split].count; i++) {
            if (stop_after >= 0 && i == stop_after) {
                free(pixels);
                store_close(s);
                return 0;
            }
            ImageShape shape = shape_of(info, split, i);
            size_t n = image_shape_bytes(shape);
            pixels = realloc(pixels, n);
            fill_pixels(pixels, n, split, i);
            if (store_write_image(s, split, pixels, shape, label_of(info, split, i)) < 0) {
                free(pixels);
                store_close(s);
                return -1;
            }
        }
    free(pixels);
    return store_commit(s);
}

/* Read every image of uri back (last to first, to exercise random access) and compare with
 * what write_set wrote. Returns the number of differences, or -1 when the store fails. */
static int check_set(const char *uri, const DatasetInfo *info)
{
    Store *s = store_open(uri);
    if (!s)
        return -1;
    int bad = 0;
    if (strcmp(s->info.name, info->name) != 0 || s->info.num_classes != info->num_classes)
        bad++;
    for (int32_t c = 0; !bad && c < info->num_classes; c++)
        bad += strcmp(s->info.class_names[c], info->class_names[c]) != 0;
    uint8_t *expected = NULL, *got = NULL;
    size_t capacity = 0;
    for (int split = 0; split < SPLIT_COUNT; split++) {
        if (s->info.split[split].count != info->split[split].count ||
            !image_shape_equal(s->info.split[split].shape, info->split[split].shape)) {
            bad++;
            continue;
        }
        for (int64_t i = info->split[split].count - 1; i >= 0; i--) {
            ImageShape want = shape_of(info, split, i), shape;
            size_t n = image_shape_bytes(want);
            if (n > capacity) {
                capacity = n;
                expected = realloc(expected, n);
                got = realloc(got, n);
            }
            fill_pixels(expected, n, split, i);
            int32_t label = -1;
            if (store_image_shape(s, split, i, &shape) < 0 ||
                store_read_image(s, split, i, got, capacity, &shape, &label) < 0) {
                bad = -1;
                goto done;
            }
            if (!image_shape_equal(shape, want) || label != label_of(info, split, i) ||
                memcmp(expected, got, n) != 0)
                bad++;
        }
    }
done:
    free(expected);
    free(got);
    store_close(s);
    return bad;
}

/* Round trip one set; report. */
static void round_trip(const char *what, const char *uri, const DatasetInfo *info)
{
    int wrote = write_set(uri, info, -1);
    if (!ok(wrote == 0, "%s: write %s", what, wrote == 0 ? "" : imgset_error()))
        return;
    int bad = check_set(uri, info);
    ok(bad == 0, "%s: read back equal (%d differences) %s", what, bad,
       bad < 0 ? imgset_error() : "");
}

/* Layout of one dataset of a file: H5D_CONTIGUOUS / H5D_CHUNKED and its filter count. */
static int dataset_layout(const char *file, const char *path, int *filters, hsize_t chunk[4])
{
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f >= 0 ? H5Dopen2(f, path, H5P_DEFAULT) : -1;
    hid_t p = d >= 0 ? H5Dget_create_plist(d) : -1;
    int layout = p >= 0 ? (int)H5Pget_layout(p) : -1;
    *filters = p >= 0 ? H5Pget_nfilters(p) : -1;
    if (layout == H5D_CHUNKED)
        H5Pget_chunk(p, 4, chunk);
    if (p >= 0)
        H5Pclose(p);
    if (d >= 0)
        H5Dclose(d);
    if (f >= 0)
        H5Fclose(f);
    return layout;
}

/* Number of entries in a directory other than . and .. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Copy the first `keep` bytes of src to dst (a cut file). */
static int copy_prefix(const char *src, const char *dst, long keep)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    int rc = in && out ? 0 : -1;
    for (long i = 0; rc == 0 && i < keep; i++) {
        int c = fgetc(in);
        if (c == EOF || fputc(c, out) == EOF)
            rc = -1;
    }
    if (in)
        fclose(in);
    if (out)
        fclose(out);
    return rc;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* store_open must fail and its message must contain every needle. */
static void expect_open_error(const char *what, const char *uri, const char *needle1,
                              const char *needle2)
{
    Store *s = store_open(uri);
    const char *message = imgset_error();
    int good = !s && strstr(message, needle1) && (!needle2 || strstr(message, needle2));
    ok(good, "%s: refused: %s", what, s ? "it opened" : message);
    store_close(s);
}

/* ---- files written as h5py would, through the HDF5 C API ------------------------------ */

typedef struct RawSpec {
    hid_t image_type;         /* file type of the images */
    int rank;                 /* 4: (N,4,5,3), 3: (N,4,5) */
    int images, labels;       /* counts per split */
    hid_t label_type;
    int label_max;            /* label of image i is i % (label_max + 1) */
    int negative_label;       /* put -1 at label 2 */
    int with_test;
    int chunk_images;         /* 0 = contiguous, else images per chunk */
    int gzip;
    int names;                /* 0 none, 1 variable-length, 2 fixed-length */
    int num_names;
    int version;              /* imgset_version to write, 0 = none */
} RawSpec;

static RawSpec raw_defaults(void)
{
    return (RawSpec){.image_type = H5T_STD_U8LE, .rank = 4, .images = 10, .labels = 10,
                     .label_type = H5T_STD_I64LE, .label_max = 4, .with_test = 1, .names = 1,
                     .num_names = 5};
}

static uint8_t raw_pixel(int split, int i, size_t j)
{
    return (uint8_t)(i * 31 + j * 7 + split * 101);
}

static void raw_split(hid_t file, const char *name, int split, const RawSpec *spec)
{
    hid_t group = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[4] = {(hsize_t)spec->images, 4, 5, 3};
    size_t per = spec->rank == 4 ? 60 : 20;
    uint8_t *pixels = malloc(per * (size_t)spec->images + 1);
    for (int i = 0; i < spec->images; i++)
        for (size_t j = 0; j < per; j++)
            pixels[i * per + j] = raw_pixel(split, i, j);
    hid_t space = H5Screate_simple(spec->rank, dims, NULL);
    hid_t create = H5Pcreate(H5P_DATASET_CREATE);
    if (spec->chunk_images) {
        hsize_t chunk[4] = {(hsize_t)spec->chunk_images, 4, 5, 3};
        H5Pset_chunk(create, spec->rank, chunk);
        if (spec->gzip)
            H5Pset_deflate(create, 4);
    }
    hid_t d = H5Dcreate2(group, "images", spec->image_type, space, H5P_DEFAULT, create,
                         H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, pixels);
    H5Dclose(d);
    H5Sclose(space);
    H5Pclose(create);
    free(pixels);

    int64_t *labels = malloc(sizeof *labels * ((size_t)spec->labels + 1));
    for (int i = 0; i < spec->labels; i++)
        labels[i] = i % (spec->label_max + 1);
    if (spec->negative_label && spec->labels > 2)
        labels[2] = -1;
    hsize_t n = (hsize_t)spec->labels;
    space = H5Screate_simple(1, &n, NULL);
    d = H5Dcreate2(group, "labels", spec->label_type, space, H5P_DEFAULT, H5P_DEFAULT,
                   H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels);
    H5Dclose(d);
    H5Sclose(space);
    free(labels);
    H5Gclose(group);
}

static void raw_names(hid_t file, const RawSpec *spec)
{
    if (!spec->names)
        return;
    hsize_t n = (hsize_t)spec->num_names;
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate_simple(1, &n, NULL);
    char *vlen[64];
    char fixed[64][8];
    memset(fixed, 0, sizeof fixed);
    for (int i = 0; i < spec->num_names; i++) {
        snprintf(fixed[i], 8, "n%d", i);
        vlen[i] = fixed[i];
    }
    H5Tset_size(type, spec->names == 1 ? H5T_VARIABLE : 8);
    if (spec->names == 1)
        H5Tset_cset(type, H5T_CSET_UTF8);
    hid_t a = H5Acreate2(file, "class_names", type, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, type, spec->names == 1 ? (void *)vlen : (void *)fixed);
    H5Aclose(a);
    H5Sclose(space);
    H5Tclose(type);
}

/* Write a file the way h5py would for the given spec; returns its path. */
static const char *raw_file(const char *name, const RawSpec *spec)
{
    const char *path = in_dir(name);
    unlink(path);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    raw_split(file, "train", SPLIT_TRAIN, spec);
    if (spec->with_test)
        raw_split(file, "test", SPLIT_TEST, spec);
    raw_names(file, spec);
    if (spec->version) {
        hid_t space = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(file, "imgset_version", H5T_STD_I64LE, space, H5P_DEFAULT,
                             H5P_DEFAULT);
        int64_t v = spec->version;
        H5Awrite(a, H5T_NATIVE_INT64, &v);
        H5Aclose(a);
        H5Sclose(space);
    }
    H5Fclose(file);
    return path;
}

/* Read a raw file through the store; count differences from raw_pixel / the labels. */
static int check_raw(const char *path, const RawSpec *spec, const char *first_name)
{
    char uri[600];
    snprintf(uri, sizeof uri, "hdf5:%s", path);
    Store *s = store_open(uri);
    if (!s)
        return -1;
    int bad = 0;
    int channels = spec->rank == 4 ? 3 : 1;
    if (s->info.split[SPLIT_TRAIN].count != spec->images ||
        s->info.split[SPLIT_TRAIN].shape.channels != channels ||
        strcmp(s->info.class_names[0], first_name) != 0)
        bad++;
    uint8_t pixels[60];
    for (int split = 0; split < SPLIT_COUNT && !bad; split++)
        for (int i = spec->images - 1; i >= 0; i--) {
            ImageShape shape;
            int32_t label;
            if (store_read_image(s, split, i, pixels, sizeof pixels, &shape, &label) < 0) {
                bad = -1;
                break;
            }
            for (size_t j = 0; j < (size_t)20 * channels; j++)
                bad += pixels[j] != raw_pixel(split, i, j);
            bad += label != i % (spec->label_max + 1);
        }
    store_close(s);
    return bad;
}

/* A ragged file as h5py would write it (flat images, offsets, shapes); `corrupt` moves the
 * last offset past the end of the flat array. */
static const char *raw_ragged_file(const char *name, int corrupt)
{
    const char *path = in_dir(name);
    unlink(path);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    for (int split = 0; split < SPLIT_COUNT; split++) {
        hid_t group = H5Gcreate2(file, split_names[split], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        enum { N = 6 };
        int64_t offsets[N + 1] = {0}, labels[N];
        int32_t shapes[N][3];
        for (int i = 0; i < N; i++) {
            ImageShape s = ragged_shape(split, i);
            shapes[i][0] = s.height, shapes[i][1] = s.width, shapes[i][2] = s.channels;
            offsets[i + 1] = offsets[i] + (int64_t)image_shape_bytes(s);
            labels[i] = i % 2;
        }
        uint8_t *flat = malloc((size_t)offsets[N]);
        for (int i = 0; i < N; i++)
            fill_pixels(flat + offsets[i], (size_t)(offsets[i + 1] - offsets[i]), split, i);
        hsize_t total = (hsize_t)offsets[N], n = N, n1 = N + 1, shape_dims[2] = {N, 3};
        if (corrupt)
            offsets[N] += 10;
        struct { const char *name; hid_t type, memory; int rank; hsize_t *dims; void *data; }
            sets[] = {{"images", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &total, flat},
                      {"offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &n1, offsets},
                      {"shapes", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, shape_dims, shapes},
                      {"labels", H5T_STD_U8LE, H5T_NATIVE_INT64, 1, &n, labels}};
        for (size_t k = 0; k < sizeof sets / sizeof sets[0]; k++) {
            hid_t space = H5Screate_simple(sets[k].rank, sets[k].dims, NULL);
            hid_t d = H5Dcreate2(group, sets[k].name, sets[k].type, space, H5P_DEFAULT,
                                 H5P_DEFAULT, H5P_DEFAULT);
            H5Dwrite(d, sets[k].memory, H5S_ALL, H5S_ALL, H5P_DEFAULT, sets[k].data);
            H5Dclose(d);
            H5Sclose(space);
        }
        free(flat);
        H5Gclose(group);
    }
    H5Fclose(file);
    return path;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            remove_tree(path);
        else
            unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

/* Overwrite the stored (compressed) chunk of train image 2 of b.h5 with garbage: reading it
 * is an error naming the image; its neighbours still read. */
static void corrupt_gzip_chunk(void)
{
    const char *path = in_dir("b.h5");
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/train/images", H5P_DEFAULT);
    hsize_t at[4] = {2, 0, 0, 0}, size = 0;
    unsigned mask;
    haddr_t address = HADDR_UNDEF;
    H5Dget_chunk_info_by_coord(d, at, &mask, &address, &size);
    H5Dclose(d);
    H5Fclose(f);
    FILE *file = fopen(path, "r+b");
    int patched = file && address != HADDR_UNDEF && size > 8 &&
                  fseek(file, (long)address + 2, SEEK_SET) == 0 && fwrite("garbage!", 1, 8, file) == 8;
    if (file)
        fclose(file);
    if (!ok(patched, "corrupt the gzip chunk of train image 2"))
        return;
    Store *s = store_open(hdf5_uri("b.h5", ""));
    uint8_t buf[9 * 11 * 3];
    ImageShape shape;
    int32_t label;
    ok(s && store_read_image(s, SPLIT_TRAIN, 2, buf, sizeof buf, &shape, &label) < 0 &&
           strstr(imgset_error(), "image 2") && strstr(imgset_error(), "gzip"),
       "a corrupt gzip chunk is an error naming the image: %s", imgset_error());
    ok(s && store_read_image(s, SPLIT_TRAIN, 1, buf, sizeof buf, &shape, &label) == 0,
       "the image beside it still reads");
    store_close(s);
}

/* Fixed shapes, contiguous (the default) and gzip with one image per chunk; the options
 * are not part of the file name; a corrupt chunk is named. */
static void test_fixed_layouts(void)
{
    DatasetInfo info;
    int filters;
    hsize_t chunk[4] = {0};

    make_info(&info, "fixed", 3, 40, (ImageShape){9, 11, 3}, 13, (ImageShape){9, 11, 3});
    round_trip("fixed contiguous", hdf5_uri("a.h5", ""), &info);
    ok(dataset_layout(in_dir("a.h5"), "/train/images", &filters, chunk) == H5D_CONTIGUOUS &&
           filters == 0, "fixed contiguous: /train/images is contiguous, unfiltered");
    {
        char uri[600];
        snprintf(uri, sizeof uri, "hdf5:%s", in_dir("a.h5"));
        Store *s = store_open(uri);
        ok(s && s->info.split[SPLIT_TEST].count == 13, "fixed contiguous: opens with its counts");
        store_close(s);
    }

    /* Gzip, one image per chunk; the options are not part of the file name. */
    round_trip("fixed gzip", hdf5_uri("b.h5", "?compression=gzip"), &info);
    ok(dataset_layout(in_dir("b.h5"), "/train/images", &filters, chunk) == H5D_CHUNKED &&
           filters == 1 && chunk[0] == 1 && chunk[1] == 9 && chunk[2] == 11 && chunk[3] == 3,
       "fixed gzip: /train/images is chunked (1,9,11,3) with one filter");
    ok(access(in_dir("b.h5?compression=gzip"), F_OK) != 0, "fixed gzip: no file named with '?'");
    ok(check_set(hdf5_uri("b.h5", ""), &info) == 0, "fixed gzip: reads back without the option");
    corrupt_gzip_chunk();
    dataset_info_free(&info);
}

/* Images across several write batches, and one image larger than the batch buffer. */
static void test_large_images(void)
{
    DatasetInfo info;

    make_info(&info, "big", 2, 5, (ImageShape){1024, 1024, 3}, 2, (ImageShape){2048, 1536, 3});
    round_trip("large images", hdf5_uri("big.h5", ""), &info);
    dataset_info_free(&info);
}

/* Ragged splits, contiguous and gzip; a fixed split of zero images beside a ragged one. */
static void test_ragged(void)
{
    DatasetInfo info;
    int filters;
    hsize_t chunk[4] = {0};

    make_info(&info, "ragged", 4, 30, (ImageShape){0, 0, 0}, 7, (ImageShape){0, 0, 0});
    round_trip("ragged contiguous", hdf5_uri("r.h5", ""), &info);
    ok(dataset_layout(in_dir("r.h5"), "/train/images", &filters, chunk) == H5D_CONTIGUOUS,
       "ragged contiguous: flat /train/images is contiguous");
    round_trip("ragged gzip", hdf5_uri("rz.h5", "?compression=gzip&level=6"), &info);
    ok(dataset_layout(in_dir("rz.h5"), "/train/images", &filters, chunk) == H5D_CHUNKED &&
           filters == 1, "ragged gzip: flat /train/images is chunked and compressed");
    dataset_info_free(&info);
    make_info(&info, "", 2, 3, (ImageShape){0, 0, 0}, 0, (ImageShape){8, 8, 1});
    round_trip("ragged train, empty test", hdf5_uri("r0.h5", ""), &info);
    round_trip("ragged train, empty test, gzip", hdf5_uri("r0z.h5", "?compression=gzip"), &info);
    dataset_info_free(&info);
}

/* Many class names: an attribute larger than 64 KiB. */
static void test_many_class_names(void)
{
    enum { K = 5000 };
    DatasetInfo info;
    memset(&info, 0, sizeof info);
    char **names = calloc(K, sizeof *names);
    for (int i = 0; i < K; i++) {
        names[i] = malloc(40);
        snprintf(names[i], 40, "a-rather-long-class-name-number-%05d", i);
    }
    dataset_info_set_classes(&info, K, (const char *const *)names);
    for (int i = 0; i < K; i++)
        free(names[i]);
    free(names);
    info.split[SPLIT_TRAIN] = (SplitInfo){4, {2, 2, 3}};
    info.split[SPLIT_TEST] = (SplitInfo){1, {2, 2, 3}};
    round_trip("5000 class names", hdf5_uri("k.h5", ""), &info);
    dataset_info_free(&info);
}

/* An existing destination is refused and left alone; an unknown option is refused. */
static void test_existing_destination(void)
{
    DatasetInfo info;

    make_info(&info, "fixed", 3, 40, (ImageShape){9, 11, 3}, 13, (ImageShape){9, 11, 3});
    long before = file_size(in_dir("a.h5"));
    Store *s = store_create(hdf5_uri("a.h5", ""), &info);
    ok(!s && strstr(imgset_error(), "already exists"), "existing destination refused (%s)",
       imgset_error());
    store_close(s);
    ok(file_size(in_dir("a.h5")) == before && check_set(hdf5_uri("a.h5", ""), &info) == 0,
       "existing destination left intact");
    s = store_create(hdf5_uri("bad-option.h5", "?compression=lz4"), &info);
    ok(!s && strstr(imgset_error(), "compression=lz4"), "unknown URI option refused (%s)",
       imgset_error());
    store_close(s);
    dataset_info_free(&info);
}

/* An abort leaves nothing: fixed, and ragged (with its spool); so does a failed commit. */
static void test_abort_leaves_nothing(void)
{
    DatasetInfo info;

    mkdir(in_dir("aborted"), 0700);
    make_info(&info, "x", 3, 40, (ImageShape){9, 11, 3}, 13, (ImageShape){9, 11, 3});
    ok(write_set(hdf5_uri("aborted/f.h5", ""), &info, 17) == 0 &&
           count_entries(in_dir("aborted")) == 0, "abort (fixed) leaves nothing");
    dataset_info_free(&info);
    make_info(&info, "x", 3, 40, (ImageShape){0, 0, 0}, 13, (ImageShape){0, 0, 0});
    ok(write_set(hdf5_uri("aborted/r.h5", "?compression=gzip"), &info, 17) == 0 &&
           count_entries(in_dir("aborted")) == 0, "abort (ragged gzip) leaves nothing");
    {   /* a failed commit (a split short) also leaves nothing */
        Store *w = store_create(hdf5_uri("aborted/short.h5", ""), &info);
        uint8_t px[3] = {1, 2, 3};
        int wrote = w && store_write_image(w, SPLIT_TRAIN, px, (ImageShape){1, 1, 3}, 0) == 0;
        int committed = w ? store_commit(w) : -1;
        ok(wrote && committed < 0 && count_entries(in_dir("aborted")) == 0,
           "failed commit leaves nothing (%s)", imgset_error());
    }
    dataset_info_free(&info);
}

/* Files cut short and files that are not HDF5: open errors naming the file (a.h5 comes
 * from test_fixed_layouts). */
static void test_cut_and_foreign_files(void)
{
    long full = file_size(in_dir("a.h5"));
    copy_prefix(in_dir("a.h5"), in_dir("half.h5"), full / 2);
    expect_open_error("file cut in half", hdf5_uri("half.h5", ""), "half.h5", "truncated");
    copy_prefix(in_dir("a.h5"), in_dir("short1.h5"), full - 1);
    expect_open_error("file one byte short", hdf5_uri("short1.h5", ""), "short1.h5",
                      "truncated");
    copy_prefix(in_dir("a.h5"), in_dir("tiny.h5"), 100);
    expect_open_error("file cut to 100 bytes", hdf5_uri("tiny.h5", ""), "tiny.h5", NULL);
    FILE *text = fopen(in_dir("text.h5"), "w");
    fputs("this is not HDF5\n", text);
    fclose(text);
    expect_open_error("not an HDF5 file", hdf5_uri("text.h5", ""), "not an HDF5 file",
                      "text.h5");
    expect_open_error("missing file", hdf5_uri("missing.h5", ""), "missing.h5", NULL);
}

/* Files as h5py writes them: contiguous, chunked, gzip, gray, without names, ragged. */
static void test_h5py_files(void)
{
    RawSpec spec = raw_defaults();
    ok(check_raw(raw_file("raw.h5", &spec), &spec, "n0") == 0, "h5py contiguous reads");
    spec.chunk_images = 3;
    ok(check_raw(raw_file("raw-chunked.h5", &spec), &spec, "n0") == 0, "h5py chunked reads");
    spec.gzip = 1;
    spec.label_type = H5T_STD_I32LE;
    spec.names = 2;
    ok(check_raw(raw_file("raw-gzip.h5", &spec), &spec, "n0") == 0,
       "h5py chunked+gzip, int32 labels, fixed-length names reads");
    spec = raw_defaults();
    spec.rank = 3;
    spec.label_type = H5T_STD_U8LE;
    ok(check_raw(raw_file("raw-gray.h5", &spec), &spec, "n0") == 0,
       "h5py (N,H,W) uint8 labels reads as 1 channel");
    spec = raw_defaults();
    spec.names = 0;
    spec.label_max = 6;
    {
        raw_file("raw-nonames.h5", &spec);
        Store *r = store_open(hdf5_uri("raw-nonames.h5", ""));
        ok(r && r->info.num_classes == 7 && strcmp(r->info.class_names[6], "6") == 0 &&
               r->info.name[0] == '\0',
           "no class_names: 7 classes named \"0\"..\"6\" (%s)", r ? "" : imgset_error());
        store_close(r);
    }
    {
        const char *path = raw_ragged_file("raw-ragged.h5", 0);
        char uri[600];
        snprintf(uri, sizeof uri, "hdf5:%s", path);
        Store *r = store_open(uri);
        int bad = r ? 0 : -1;
        uint8_t got[4096], want[4096];
        for (int split = 0; r && split < SPLIT_COUNT; split++)
            for (int i = 0; i < 6; i++) {
                ImageShape shape, expect = ragged_shape(split, i);
                int32_t label;
                if (store_read_image(r, split, i, got, sizeof got, &shape, &label) < 0) {
                    bad = -1;
                    break;
                }
                fill_pixels(want, image_shape_bytes(expect), split, i);
                bad += !image_shape_equal(shape, expect) || label != i % 2 ||
                       memcmp(got, want, image_shape_bytes(expect)) != 0;
            }
        ok(bad == 0 && r && !split_is_fixed(&r->info.split[SPLIT_TRAIN]),
           "h5py ragged (uint8 labels) reads (%s)", bad < 0 ? imgset_error() : "");
        store_close(r);
    }
}

/* Bad h5py-style files: each an open error naming what is wrong. */
static void test_bad_h5py_files(void)
{
    RawSpec spec = raw_defaults();
    spec.image_type = H5T_IEEE_F32LE;
    raw_file("float.h5", &spec);
    expect_open_error("images not uint8", hdf5_uri("float.h5", ""),
                      "/train/images has element type float32, expected uint8", "float.h5");
    spec = raw_defaults();
    spec.image_type = H5T_STD_I16LE;
    raw_file("int16.h5", &spec);
    expect_open_error("images int16", hdf5_uri("int16.h5", ""), "int16, expected uint8", NULL);
    spec = raw_defaults();
    spec.labels = 9;
    raw_file("count.h5", &spec);
    {
        char needle[700];
        snprintf(needle, sizeof needle, "hdf5:%s: /train/labels has 9 entries, /train/images "
                 "has 10", in_dir("count.h5"));
        expect_open_error("label count mismatch", hdf5_uri("count.h5", ""), needle, NULL);
    }
    spec = raw_defaults();
    spec.with_test = 0;
    raw_file("notest.h5", &spec);
    expect_open_error("missing /test group", hdf5_uri("notest.h5", ""), "no /test group",
                      "notest.h5");
    spec = raw_defaults();
    spec.label_max = 7;
    raw_file("range.h5", &spec);
    expect_open_error("label beyond class_names", hdf5_uri("range.h5", ""),
                      "class_names has only 5 names", NULL);
    spec = raw_defaults();
    spec.negative_label = 1;
    raw_file("negative.h5", &spec);
    expect_open_error("negative label", hdf5_uri("negative.h5", ""), "/train/labels[2] = -1",
                      NULL);
    spec = raw_defaults();
    spec.version = 2;
    raw_file("v2.h5", &spec);
    expect_open_error("imgset_version 2", hdf5_uri("v2.h5", ""), "imgset_version is 2", NULL);
    raw_ragged_file("ragged-bad.h5", 1);
    expect_open_error("ragged offsets past the end", hdf5_uri("ragged-bad.h5", ""),
                      "/train/offsets[5..6]", NULL);
    spec = raw_defaults();
    expect_open_error("unknown read option", hdf5_uri("raw.h5", "?mode=fast"), "mode=fast",
                      NULL);
}

int main(void)
{
    snprintf(test_dir, sizeof test_dir, "%s/imgset-hdf5-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(test_dir)) {
        ok(0, "mkdtemp");
        return tap_done();
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);   /* the raw-file helpers' own failures stay quiet */
    test_fixed_layouts();
    test_large_images();
    test_ragged();
    test_many_class_names();
    test_existing_destination();
    test_abort_leaves_nothing();
    test_cut_and_foreign_files();
    test_h5py_files();
    test_bad_h5py_files();
    if (getenv("KEEP"))   /* KEEP=1 leaves the files for a look */
        printf("# kept %s\n", test_dir);
    else
        remove_tree(test_dir);
    return tap_done();
}
#endif
