/* store_mmap.c — the `mmap:DIR` store: numpy .npy files per split, read through mmap(). */
#include "store_mmap.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "classes.h"
#include "error.h"
#include "fsutil.h"
#include "npy.h"

/*
 * Layout of DIR:
 *   imgset.txt           "imgset-mmap 1\nname <data set name>\n"  (the marker, written last)
 *   classes.txt          one class name per line, UTF-8; line i is label i
 *   <split>_images.npy   fixed split: (N, H, W, C) uint8; ragged split: (total,) uint8
 *   <split>_labels.npy   (N,) int64 (we also read int32, int8 and uint8)
 *   <split>_offsets.npy  ragged only: (N + 1,) int64 byte offsets into the flat images
 *   <split>_shapes.npy   ragged only: (N, 3) int32 rows (H, W, C)
 * for <split> in train, test. Numpy reads every file with numpy.load(f, mmap_mode='r').
 */

#define MARKER_MAGIC "imgset-mmap"
#define MARKER_VERSION 1
#define MARKER_FILE "imgset.txt"
#define TEXT_FILE_MAX (64u << 20)        /* classes.txt / imgset.txt larger than this: refused */
#define IMAGE_BUFFER (4u << 20)          /* stdio buffer for the image files */
#define SMALL_BUFFER (256u << 10)        /* … and for labels, offsets, shapes */

enum { READER_MAGIC = 0x6d6d6170, WRITER_MAGIC = 0x6d6d6177 };  /* "mmap", "mmaw" */
enum { FILE_IMAGES, FILE_LABELS, FILE_OFFSETS, FILE_SHAPES, FILE_KINDS };
static const char *const file_kinds[FILE_KINDS] = {"images", "labels", "offsets", "shapes"};

/* A reader's state for one split. */
typedef struct ReaderSplit {
    NpyMap images;           /* the mapping of <split>_images.npy */
    size_t image_bytes;      /* fixed split: H*W*C; 0 when ragged */
    int32_t *labels;         /* (N,) */
    int64_t *offsets;        /* (N+1,), ragged only */
    ImageShape *shapes;      /* (N,), ragged only */
} ReaderSplit;

typedef struct MmapReader {
    uint32_t magic;          /* READER_MAGIC */
    ReaderSplit split[SPLIT_COUNT];
} MmapReader;

typedef struct MmapWriter {
    uint32_t magic;          /* WRITER_MAGIC */
    char *dir;               /* the final DIR */
    char *tmp;               /* DIR.tmp-<pid>, where everything is written */
    NpyWriter files[SPLIT_COUNT][FILE_KINDS];
    int64_t flat_bytes[SPLIT_COUNT];   /* ragged: pixel bytes written so far */
} MmapWriter;

/* "<split>_<kind>.npy" */
static void npy_file_name(char *out, size_t cap, int split, int kind)
{
    snprintf(out, cap, "%s_%s.npy", split_names[split], file_kinds[kind]);
}

/* Little-endian integer of `size` bytes (1, 4 or 8), signed or not, at p. */
static int64_t load_int(const uint8_t *p, NpyDtype dtype)
{
    switch (dtype) {
    case NPY_DTYPE_UINT8: return p[0];
    case NPY_DTYPE_INT8: return (int8_t)p[0];
    case NPY_DTYPE_INT32: {
        uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24;
        return (int32_t)u;
    }
    default: {
        uint64_t u = 0;
        for (int i = 7; i >= 0; i--)
            u = u << 8 | p[i];
        return (int64_t)u;
    }
    }
}

/* ---- reading ------------------------------------------------------------------------- */

/* Read a small text file whole (NUL-terminated, *len without the NUL); NULL with imgset_fail(). */
static char *read_text_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        imgset_fail("file %s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *text = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            if (cap >= TEXT_FILE_MAX) {
                imgset_fail("file %s: larger than %u bytes", path, TEXT_FILE_MAX);
                goto fail;
            }
            cap = cap ? cap * 2 : 8192;
            char *bigger = realloc(text, cap);
            if (!bigger) {
                imgset_fail("file %s: out of memory", path);
                goto fail;
            }
            text = bigger;
        }
        size_t got = fread(text + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        imgset_fail("file %s: read failed: %s", path, strerror(errno));
        goto fail;
    }
    fclose(f);
    if (memchr(text, '\0', n)) {
        free(text);
        imgset_fail("file %s: contains a NUL byte (not a text file)", path);
        return NULL;
    }
    text[n] = '\0';
    *len = n;
    return text;
fail:
    fclose(f);
    free(text);
    return NULL;
}

/* Split text into lines in place ('\n', an optional '\r' before it dropped; no final empty
 * line). *lines is malloc'd, its strings point into text. Returns the count or -1. */
static int64_t split_lines(char *text, size_t len, char ***lines, const char *path)
{
    int64_t count = 0;
    for (size_t i = 0; i < len; i++)
        count += text[i] == '\n';
    if (len > 0 && text[len - 1] != '\n')
        count++;
    *lines = calloc(count > 0 ? (size_t)count : 1, sizeof **lines);
    if (!*lines)
        return imgset_fail("file %s: out of memory", path);
    char *p = text, *end = text + len;
    for (int64_t i = 0; i < count; i++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl ? nl : end;
        *stop = '\0';
        if (stop > p && stop[-1] == '\r')
            stop[-1] = '\0';
        (*lines)[i] = p;
        p = nl ? nl + 1 : end;
    }
    return count;
}

/* DIR/imgset.txt: the magic line and the data set's name. */
static int read_marker(const char *dir, DatasetInfo *info)
{
    char *path = fs_path_join(dir, MARKER_FILE);
    if (!path)
        return -1;
    struct stat st;
    if (stat(path, &st) < 0 && errno == ENOENT) {
        int rc = stat(dir, &st) < 0
                     ? imgset_fail("mmap:%s: no such directory", dir)
                     : imgset_fail("file %s: missing (not an imgset mmap directory: expected "
                                   "a marker file whose first line is \"%s %d\")", path,
                                   MARKER_MAGIC, MARKER_VERSION);
        free(path);
        return rc;
    }
    size_t len;
    char *text = read_text_file(path, &len);
    char **lines = NULL;
    int64_t n = text ? split_lines(text, len, &lines, path) : -1;
    int rc = -1;
    if (n < 0)
        goto done;
    int version = -1;
    char extra;
    if (n == 0 || strncmp(lines[0], MARKER_MAGIC " ", strlen(MARKER_MAGIC) + 1) != 0 ||
        sscanf(lines[0] + strlen(MARKER_MAGIC) + 1, "%d%c", &version, &extra) != 1) {
        imgset_fail("file %s: not an imgset mmap marker (expected the first line \"%s %d\")",
                    path, MARKER_MAGIC, MARKER_VERSION);
        goto done;
    }
    if (version != MARKER_VERSION) {
        imgset_fail("file %s: mmap store format version %d, this build reads version %d",
                    path, version, MARKER_VERSION);
        goto done;
    }
    int have_name = 0;
    for (int64_t i = 1; i < n; i++) {
        if (strncmp(lines[i], "name ", 5) == 0 && !have_name) {
            if (strlen(lines[i] + 5) >= IMGSET_NAME_MAX) {
                imgset_fail("file %s: data set name longer than %d bytes", path,
                            IMGSET_NAME_MAX - 1);
                goto done;
            }
            dataset_info_set_name(info, lines[i] + 5);
            have_name = 1;
        } else if (lines[i][0] != '\0') {
            imgset_fail("file %s: line %lld: unexpected \"%.40s\" (expected \"name NAME\" once)",
                        path, (long long)i + 1, lines[i]);
            goto done;
        }
    }
    if (!have_name) {
        imgset_fail("file %s: lacks the line \"name NAME\"", path);
        goto done;
    }
    rc = 0;
done:
    free(lines);
    free(text);
    free(path);
    return rc;
}

static void reader_split_free(ReaderSplit *rs)
{
    npy_unmap(&rs->images);
    free(rs->labels);
    free(rs->offsets);
    free(rs->shapes);
    memset(rs, 0, sizeof *rs);
}

/* Map DIR/<split>_<kind>.npy into m; path_out gets the malloc'd path (for messages). */
static int map_split_file(const char *dir, int split, int kind, int advice, NpyMap *m,
                          char **path_out)
{
    char name[64];
    npy_file_name(name, sizeof name, split, kind);
    *path_out = fs_path_join(dir, name);
    if (!*path_out)
        return -1;
    return npy_map(m, *path_out, advice);
}

/* 1 when DIR/<split>_<kind>.npy exists. */
static int split_file_exists(const char *dir, int split, int kind)
{
    char name[64];
    npy_file_name(name, sizeof name, split, kind);
    char *path = fs_path_join(dir, name);
    struct stat st;
    int exists = path && stat(path, &st) == 0;
    free(path);
    return exists;
}

/* Shape (H, W, C) from int64 dims, checked against the limits; 0 or -1 naming path. */
static int dims_to_shape(const int64_t *dims, ImageShape *shape, const char *path,
                         const char *what)
{
    for (int i = 0; i < 3; i++)
        if (dims[i] < 1 || dims[i] > IMGSET_MAX_SIDE)
            return imgset_fail("file %s: %s %" PRId64 "x%" PRId64 "x%" PRId64 " is outside "
                               "the limits (sides 1..%d, channels 1..%d)", path, what, dims[0],
                               dims[1], dims[2], IMGSET_MAX_SIDE, IMGSET_MAX_CHANNELS);
    ImageShape s = {(int32_t)dims[0], (int32_t)dims[1], (int32_t)dims[2]};
    if (!image_shape_valid(s))
        return imgset_fail("file %s: %s %dx%dx%d is outside the limits (sides 1..%d, "
                           "channels 1..%d)", path, what, s.height, s.width, s.channels,
                           IMGSET_MAX_SIDE, IMGSET_MAX_CHANNELS);
    *shape = s;
    return 0;
}

/* Open a fixed split's images: (N, H, W, C) or (N, H, W) meaning C = 1. */
static int open_fixed_images(ReaderSplit *rs, SplitInfo *si, int split, const char *path)
{
    const NpyHeader *h = &rs->images.header;
    if (h->ndim != 4 && h->ndim != 3)
        return imgset_fail("file %s: images must have shape (N, H, W, C) (or (N, H, W), or "
                           "(total,) with %s_offsets.npy for a ragged split); found %d "
                           "dimensions", path, split_names[split], h->ndim);
    int64_t dims[3] = {h->shape[1], h->shape[2], h->ndim == 4 ? h->shape[3] : 1};
    if (dims_to_shape(dims, &si->shape, path, "image shape") < 0)
        return -1;
    si->count = h->shape[0];
    rs->image_bytes = image_shape_bytes(si->shape);
    return 0;
}

/* Open a ragged split: flat images, offsets (N+1,) int64, shapes (N, 3) int32, and check
 * that each offset step is the size its shape says and that the last one ends the array. */
static int open_ragged(ReaderSplit *rs, SplitInfo *si, const char *dir, int split,
                       const char *images_path)
{
    NpyMap offsets = {0}, shapes = {0};
    char *offsets_path = NULL, *shapes_path = NULL;
    int rc = -1;
    if (map_split_file(dir, split, FILE_OFFSETS, MADV_SEQUENTIAL, &offsets, &offsets_path) < 0 ||
        map_split_file(dir, split, FILE_SHAPES, MADV_SEQUENTIAL, &shapes, &shapes_path) < 0 ||
        npy_expect_dtype(&offsets.header, NPY_MASK(NPY_DTYPE_INT64), "int64 ('<i8')",
                         offsets_path) < 0 ||
        npy_expect_dtype(&shapes.header, NPY_MASK(NPY_DTYPE_INT32), "int32 ('<i4')",
                         shapes_path) < 0)
        goto done;
    if (shapes.header.ndim != 2 || shapes.header.shape[1] != 3) {
        imgset_fail("file %s: shapes must have shape (N, 3)", shapes_path);
        goto done;
    }
    int64_t n = shapes.header.shape[0];
    if (offsets.header.ndim != 1 || offsets.header.shape[0] != n + 1) {
        imgset_fail("file %s: offsets must have shape (%" PRId64 ",) for the %" PRId64
                    " images of %s", offsets_path, n + 1, n, shapes_path);
        goto done;
    }
    const uint64_t total = rs->images.header.data_bytes;
    rs->offsets = malloc((size_t)(n + 1) * sizeof *rs->offsets);
    rs->shapes = malloc((n > 0 ? (size_t)n : 1) * sizeof *rs->shapes);
    if (!rs->offsets || !rs->shapes) {
        imgset_fail("%s: out of memory for %" PRId64 " offsets", offsets_path, n);
        goto done;
    }
    rs->offsets[0] = load_int(offsets.data, NPY_DTYPE_INT64);
    if (rs->offsets[0] != 0) {
        imgset_fail("file %s: offset 0 is %" PRId64 ", expected 0", offsets_path,
                    rs->offsets[0]);
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t dims[3];
        for (int k = 0; k < 3; k++)
            dims[k] = load_int(shapes.data + (size_t)(3 * i + k) * 4, NPY_DTYPE_INT32);
        char what[64];
        snprintf(what, sizeof what, "image %" PRId64 " shape", i);
        if (dims_to_shape(dims, &rs->shapes[i], shapes_path, what) < 0)
            goto done;
        int64_t next = load_int(offsets.data + (size_t)(i + 1) * 8, NPY_DTYPE_INT64);
        uint64_t bytes = image_shape_bytes(rs->shapes[i]);
        /* rs->offsets[i] <= total here, so the sum cannot overflow. */
        if (next < 0 || (uint64_t)next != (uint64_t)rs->offsets[i] + bytes) {
            imgset_fail("file %s: offset %" PRId64 " is %" PRId64 ", expected %" PRIu64
                        " (offset %" PRId64 " plus the %dx%dx%d image in %s)", offsets_path,
                        i + 1, next, (uint64_t)rs->offsets[i] + bytes, rs->offsets[i],
                        rs->shapes[i].height, rs->shapes[i].width, rs->shapes[i].channels,
                        shapes_path);
            goto done;
        }
        if ((uint64_t)next > total) {
            imgset_fail("file %s: offset %" PRId64 " is %" PRId64 ", past the end of the %"
                        PRIu64 " pixel bytes in %s", offsets_path, i + 1, next, total,
                        images_path);
            goto done;
        }
        rs->offsets[i + 1] = next;
    }
    if ((uint64_t)rs->offsets[n] != total) {
        imgset_fail("file %s: the last offset is %" PRId64 " but %s holds %" PRIu64 " bytes",
                    offsets_path, rs->offsets[n], images_path, total);
        goto done;
    }
    si->count = n;
    memset(&si->shape, 0, sizeof si->shape);
    rc = 0;
done:
    npy_unmap(&offsets);
    npy_unmap(&shapes);
    free(offsets_path);
    free(shapes_path);
    return rc;
}

/* Decode <split>_labels.npy into rs->labels, checking count and range. */
static int open_labels(ReaderSplit *rs, const SplitInfo *si, const char *dir, int split,
                       int32_t num_classes, const char *images_path)
{
    NpyMap labels = {0};
    char *path = NULL;
    int rc = -1;
    if (map_split_file(dir, split, FILE_LABELS, MADV_SEQUENTIAL, &labels, &path) < 0 ||
        npy_expect_dtype(&labels.header,
                         NPY_MASK(NPY_DTYPE_INT64) | NPY_MASK(NPY_DTYPE_INT32) |
                             NPY_MASK(NPY_DTYPE_UINT8) | NPY_MASK(NPY_DTYPE_INT8),
                         "int64 ('<i8'), int32 ('<i4') or uint8 ('|u1')", path) < 0)
        goto done;
    if (labels.header.ndim != 1) {
        imgset_fail("file %s: labels must have shape (N,), found %d dimensions", path,
                    labels.header.ndim);
        goto done;
    }
    if (labels.header.shape[0] != si->count) {
        imgset_fail("file %s: %" PRId64 " labels for the %" PRId64 " images of %s", path,
                    labels.header.shape[0], si->count, images_path);
        goto done;
    }
    rs->labels = malloc((si->count > 0 ? (size_t)si->count : 1) * sizeof *rs->labels);
    if (!rs->labels) {
        imgset_fail("file %s: out of memory for %" PRId64 " labels", path, si->count);
        goto done;
    }
    NpyDtype dtype = labels.header.dtype;
    size_t step = labels.header.item_size;
    for (int64_t i = 0; i < si->count; i++) {
        int64_t v = load_int(labels.data + (size_t)i * step, dtype);
        if (v < 0 || v >= num_classes) {
            imgset_fail("file %s: label %" PRId64 " of image %" PRId64 " is outside 0..%d "
                        "(%s has %d classes)", path, v, i, num_classes - 1, CLASSES_FILE,
                        num_classes);
            goto done;
        }
        rs->labels[i] = (int32_t)v;
    }
    rc = 0;
done:
    npy_unmap(&labels);
    free(path);
    return rc;
}

/* Open one split: images (fixed or ragged, told by the number of dimensions) and labels. */
static int open_split(MmapReader *r, DatasetInfo *info, const char *dir, int split)
{
    ReaderSplit *rs = &r->split[split];
    SplitInfo *si = &info->split[split];
    char *images_path = NULL;
    /* Images are read in whatever order the sampler draws; keep the kernel's default
     * readahead, which suits both small images (neighbours come later) and large ones. */
    int rc = map_split_file(dir, split, FILE_IMAGES, MADV_NORMAL, &rs->images, &images_path);
    if (rc == 0)
        rc = npy_expect_dtype(&rs->images.header, NPY_MASK(NPY_DTYPE_UINT8),
                              "uint8 ('|u1')", images_path);
    if (rc == 0) {
        if (rs->images.header.ndim == 1) {
            rc = open_ragged(rs, si, dir, split, images_path);
        } else {
            rc = open_fixed_images(rs, si, split, images_path);
            if (rc == 0 && split_file_exists(dir, split, FILE_OFFSETS))
                rc = imgset_fail("file %s: has shape (N, H, W, C) but %s_offsets.npy exists "
                                 "too (a ragged split has flat (total,) images)", images_path,
                                 split_names[split]);
        }
    }
    if (rc == 0)
        rc = open_labels(rs, si, dir, split, info->num_classes, images_path);
    free(images_path);
    return rc;
}

static void mmap_close(Store *s)
{
    MmapReader *r = s->impl;
    if (!r)
        return;
    for (int i = 0; i < SPLIT_COUNT; i++)
        reader_split_free(&r->split[i]);
    free(r);
    s->impl = NULL;
}

static int mmap_open(Store *s, const char *location)
{
    MmapReader *r = calloc(1, sizeof *r);
    if (!r)
        return imgset_fail("out of memory");
    r->magic = READER_MAGIC;
    s->impl = r;
    if (read_marker(location, &s->info) < 0)
        goto fail;
    int classes = classes_read(location, &s->info);
    if (classes == 1)
        imgset_fail("file %s/%s: missing (an mmap store names its classes there)", location,
                    CLASSES_FILE);
    if (classes != 0)
        goto fail;
    for (int split = 0; split < SPLIT_COUNT; split++)
        if (open_split(r, &s->info, location, split) < 0)
            goto fail;
    return 0;
fail:
    mmap_close(s);
    return -1;
}

static int mmap_image_shape(Store *s, int split, int64_t index, ImageShape *shape)
{
    MmapReader *r = s->impl;
    *shape = r->split[split].shapes ? r->split[split].shapes[index] : s->info.split[split].shape;
    return 0;
}

static int mmap_read_image(Store *s, int split, int64_t index, uint8_t *dst, size_t capacity,
                           ImageShape *shape, int32_t *label)
{
    MmapReader *r = s->impl;
    const ReaderSplit *rs = &r->split[split];
    const uint8_t *src;
    size_t bytes;
    if (rs->shapes) {
        *shape = rs->shapes[index];
        src = rs->images.data + rs->offsets[index];
        bytes = (size_t)(rs->offsets[index + 1] - rs->offsets[index]);
    } else {
        *shape = s->info.split[split].shape;
        src = rs->images.data + (size_t)index * rs->image_bytes;
        bytes = rs->image_bytes;
    }
    if (bytes > capacity)
        return imgset_fail("%s: %s image %" PRId64 " needs %zu bytes, the buffer has %zu",
                           s->uri, split_names[split], index, bytes, capacity);
    memcpy(dst, src, bytes);
    *label = rs->labels[index];
    return 0;
}

int store_mmap_split_view(Store *s, int split, MmapSplitView *view)
{
    memset(view, 0, sizeof *view);
    const MmapReader *r = s ? s->impl : NULL;
    if (!s || s->writing || (s->ops != &store_mmap_ops && s->ops->close != mmap_close) || !r ||
        r->magic != READER_MAGIC)
        return imgset_fail("%s: not an mmap store open for reading", s ? s->uri : "(null)");
    if (split < 0 || split >= SPLIT_COUNT)
        return imgset_fail("%s: bad split number %d", s->uri, split);
    const ReaderSplit *rs = &r->split[split];
    view->count = s->info.split[split].count;
    view->pixels = rs->images.data;
    view->pixel_bytes = rs->images.header.data_bytes;
    view->labels = rs->labels;
    view->offsets = rs->offsets;
    view->shapes = rs->shapes;
    return 0;
}

/* ---- writing ------------------------------------------------------------------------- */

/* Write a small text file (exclusively created) and fsync it; 0 or -1 naming it. */
static int write_text_file(const char *dir, const char *name, const char *text, size_t len)
{
    char *path = fs_path_join(dir, name);
    if (!path)
        return -1;
    FILE *f = fopen(path, "wbx");
    int rc = 0;
    if (!f) {
        rc = imgset_fail("file %s: cannot create: %s", path, strerror(errno));
    } else {
        if (fwrite(text, 1, len, f) != len || fflush(f) != 0 || fsync(fileno(f)) != 0)
            rc = imgset_fail("file %s: write failed: %s", path, strerror(errno));
        if (fclose(f) != 0 && rc == 0)
            rc = imgset_fail("file %s: close failed: %s", path, strerror(errno));
    }
    free(path);
    return rc;
}

/* fsync a directory so that the names in it are durable (best effort on odd filesystems). */
static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return imgset_fail("directory %s: cannot open: %s", dir, strerror(errno));
    int rc = 0;
    if (fsync(fd) < 0 && errno != EINVAL && errno != EROFS)
        rc = imgset_fail("directory %s: fsync failed: %s", dir, strerror(errno));
    close(fd);
    return rc;
}

/* Remove what the writer made under tmp and tmp itself; free the writer. */
static void writer_free(MmapWriter *w, int remove_tmp)
{
    for (int split = 0; split < SPLIT_COUNT; split++)
        for (int kind = 0; kind < FILE_KINDS; kind++)
            npy_writer_discard(&w->files[split][kind]);
    if (remove_tmp && w->tmp) {
        const char *names[2 + SPLIT_COUNT * FILE_KINDS] = {MARKER_FILE, CLASSES_FILE};
        char npy_names[SPLIT_COUNT * FILE_KINDS][64];
        for (int split = 0; split < SPLIT_COUNT; split++)
            for (int kind = 0; kind < FILE_KINDS; kind++) {
                npy_file_name(npy_names[split * FILE_KINDS + kind], 64, split, kind);
                names[2 + split * FILE_KINDS + kind] = npy_names[split * FILE_KINDS + kind];
            }
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char *path = fs_path_join(w->tmp, names[i]);
            if (path)
                unlink(path);
            free(path);
        }
        rmdir(w->tmp);
    }
    free(w->dir);
    free(w->tmp);
    free(w);
}

static void mmap_abort(Store *s)
{
    if (s->impl)
        writer_free(s->impl, 1);
    s->impl = NULL;
}

/* Write imgset.txt and classes.txt into the temporary directory. */
static int write_metadata(const MmapWriter *w, const DatasetInfo *info)
{
    char *marker = NULL;
    if (strchr(info->name, '\n') || strchr(info->name, '\r'))
        return imgset_fail("mmap:%s: the data set name contains a line break", w->dir);
    int n = asprintf(&marker, "%s %d\nname %s\n", MARKER_MAGIC, MARKER_VERSION, info->name);
    if (n < 0)
        return imgset_fail("out of memory");
    int rc = classes_write(w->tmp, info);
    if (rc == 0)
        rc = write_text_file(w->tmp, MARKER_FILE, marker, (size_t)n);
    free(marker);
    return rc;
}

/* Create the .npy writers of one split. */
static int open_split_writers(MmapWriter *w, int split, const SplitInfo *si)
{
    int ragged = !split_is_fixed(si);
    static const NpyDtype dtypes[FILE_KINDS] = {NPY_DTYPE_UINT8, NPY_DTYPE_INT64,
                                                NPY_DTYPE_INT64, NPY_DTYPE_INT32};
    const int ndims[FILE_KINDS] = {ragged ? 1 : 4, 1, 1, 2};
    for (int kind = 0; kind < (ragged ? FILE_KINDS : FILE_LABELS + 1); kind++) {
        char name[64];
        npy_file_name(name, sizeof name, split, kind);
        char *path = fs_path_join(w->tmp, name);
        if (!path)
            return -1;
        int rc = npy_writer_open(&w->files[split][kind], path, dtypes[kind], ndims[kind],
                                 kind == FILE_IMAGES ? IMAGE_BUFFER : SMALL_BUFFER);
        free(path);
        if (rc < 0)
            return -1;
    }
    if (ragged)
        return npy_writer_write_int(&w->files[split][FILE_OFFSETS], 0);
    return 0;
}

static int mmap_create(Store *s, const char *location, const DatasetInfo *info)
{
    size_t len = strlen(location);
    while (len > 1 && location[len - 1] == '/')
        len--;
    if (len == 0)
        return imgset_fail("%s: no directory given (expected mmap:DIR)", s->uri);
    MmapWriter *w = calloc(1, sizeof *w);
    if (!w)
        return imgset_fail("out of memory");
    w->magic = WRITER_MAGIC;
    w->dir = strndup(location, len);
    if (!w->dir || asprintf(&w->tmp, "%s.tmp-%ld", w->dir, (long)getpid()) < 0) {
        w->tmp = NULL;
        writer_free(w, 0);
        return imgset_fail("out of memory");
    }
    struct stat st;
    if (lstat(w->dir, &st) == 0) {
        imgset_fail("%s: %s already exists", s->uri, w->dir);
        writer_free(w, 0);
        return -1;
    }
    if (mkdir(w->tmp, 0777) < 0) {
        imgset_fail("%s: cannot create directory %s: %s", s->uri, w->tmp, strerror(errno));
        writer_free(w, 0);
        return -1;
    }
    if (write_metadata(w, info) < 0 || open_split_writers(w, SPLIT_TRAIN,
                                                          &info->split[SPLIT_TRAIN]) < 0 ||
        open_split_writers(w, SPLIT_TEST, &info->split[SPLIT_TEST]) < 0) {
        writer_free(w, 1);
        return -1;
    }
    s->impl = w;
    return 0;
}

static int mmap_write_image(Store *s, int split, const uint8_t *pixels, ImageShape shape,
                            int32_t label)
{
    MmapWriter *w = s->impl;
    NpyWriter *files = w->files[split];
    size_t bytes = image_shape_bytes(shape);
    if (npy_writer_write(&files[FILE_IMAGES], pixels, bytes) < 0 ||
        npy_writer_write_int(&files[FILE_LABELS], label) < 0)
        return -1;
    if (split_is_fixed(&s->info.split[split]))
        return 0;
    w->flat_bytes[split] += (int64_t)bytes;
    if (npy_writer_write_int(&files[FILE_OFFSETS], w->flat_bytes[split]) < 0 ||
        npy_writer_write_int(&files[FILE_SHAPES], shape.height) < 0 ||
        npy_writer_write_int(&files[FILE_SHAPES], shape.width) < 0 ||
        npy_writer_write_int(&files[FILE_SHAPES], shape.channels) < 0)
        return -1;
    return 0;
}

/* Rename tmp to dir, refusing to replace anything that appeared there meanwhile
 * (plain rename() would silently replace an empty directory). */
static int rename_no_replace(const char *tmp, const char *dir, const char *uri)
{
#ifdef RENAME_NOREPLACE
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EEXIST)
        return imgset_fail("%s: %s already exists", uri, dir);
    if (errno != EINVAL && errno != ENOSYS)
        return imgset_fail("%s: cannot rename %s to %s: %s", uri, tmp, dir, strerror(errno));
#endif
    struct stat st;
    if (lstat(dir, &st) == 0)
        return imgset_fail("%s: %s already exists", uri, dir);
    if (rename(tmp, dir) < 0)
        return imgset_fail("%s: cannot rename %s to %s: %s", uri, tmp, dir, strerror(errno));
    return 0;
}

static int mmap_commit(Store *s)
{
    MmapWriter *w = s->impl;
    for (int split = 0; split < SPLIT_COUNT; split++) {
        const SplitInfo *si = &s->info.split[split];
        NpyWriter *files = w->files[split];
        int64_t n = si->count;
        if (split_is_fixed(si)) {
            int64_t image_dims[4] = {n, si->shape.height, si->shape.width, si->shape.channels};
            if (npy_writer_finish(&files[FILE_IMAGES], image_dims) < 0)
                return -1;
        } else {
            int64_t flat[1] = {w->flat_bytes[split]}, offsets[1] = {n + 1},
                    shapes[2] = {n, 3};
            if (npy_writer_finish(&files[FILE_IMAGES], flat) < 0 ||
                npy_writer_finish(&files[FILE_OFFSETS], offsets) < 0 ||
                npy_writer_finish(&files[FILE_SHAPES], shapes) < 0)
                return -1;
        }
        int64_t labels[1] = {n};
        if (npy_writer_finish(&files[FILE_LABELS], labels) < 0)
            return -1;
    }
    if (fsync_dir(w->tmp) < 0 || rename_no_replace(w->tmp, w->dir, s->uri) < 0)
        return -1;
    /* The store is in place; making its name durable is best effort from here on. */
    char *parent = strdup(w->dir);
    if (parent) {
        char *slash = strrchr(parent, '/');
        if (!slash)
            strcpy(parent, ".");
        else if (slash == parent)
            parent[1] = '\0';
        else
            *slash = '\0';
        int fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            (void)fsync(fd);
            close(fd);
        }
        free(parent);
    }
    writer_free(w, 0);
    s->impl = NULL;
    return 0;
}

const StoreOps store_mmap_ops = {
    .scheme = "mmap",
    .alias = NULL,
    .summary = "mmap:DIR — numpy .npy files per split (images, labels; ragged: offsets, "
               "shapes), read through mmap",
    .open = mmap_open,
    .image_shape = mmap_image_shape,
    .read_image = mmap_read_image,
    .close = mmap_close,
    .create = mmap_create,
    .write_image = mmap_write_image,
    .commit = mmap_commit,
    .abort = mmap_abort,
};
