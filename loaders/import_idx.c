/* import_idx.c — MNIST-style IDX files (plain or gzip'd) as a read-only store. */
#include "import.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "error.h"

#define IDX_TYPE_UBYTE 0x08
#define IDX_MAX_FILE ((size_t)1 << 40)   /* a sanity cap on any one file, decoded or not */

int import_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *size)
{
    *data = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return imgset_fail("file %s: %s", path,
                           errno == ENOENT ? "missing (no such file)" : strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return imgset_fail("file %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return imgset_fail("file %s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        close(fd);
        return imgset_fail("file %s: %lld bytes is more than the %zu this reader accepts", path,
                           (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        close(fd);
        return imgset_fail("file %s: out of memory for %zu bytes", path, n);
    }
    size_t done = 0;
    while (done < n) {
        ssize_t got = read(fd, buf + done, n - done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            int e = errno;
            free(buf);
            close(fd);
            return imgset_fail("file %s: %s after %zu of %zu bytes", path,
                               got < 0 ? strerror(e) : "unexpected end of file", done, n);
        }
        done += (size_t)got;
    }
    close(fd);
    *data = buf;
    *size = n;
    return 0;
}

/* Big-endian uint32 at p. */
static uint32_t read_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/*
 * The total file size an IDX header announces: 1 with *total set when the header is
 * complete and sane, 0 when more bytes are needed, -1 when it is not a uint8 IDX header we
 * could read (the caller stops inflating; idx_parse() then reports what is wrong).
 */
static int idx_announced_size(const uint8_t *data, size_t size, size_t *total)
{
    if (size < 4)
        return 0;
    int ndims = data[3];
    if (data[0] != 0 || data[1] != 0 || data[2] != IDX_TYPE_UBYTE || ndims < 1 || ndims > 3)
        return -1;
    size_t header = 4 + 4 * (size_t)ndims;
    if (size < header)
        return 0;
    size_t n = header, payload = 1;
    for (int i = 0; i < ndims; i++)
        if (size_mul(payload, read_be32(data + 4 + 4 * i), &payload) < 0)
            return -1;
    if (size_add(n, payload, &n) < 0)
        return -1;
    *total = n;
    return 1;
}

int idx_decode(const uint8_t *data, size_t size, const char *file, size_t max_bytes,
               uint8_t **out, size_t *out_size)
{
    *out = NULL;
    *out_size = 0;
    if (size < 2 || data[0] != 0x1f || data[1] != 0x8b) {
        if (size > max_bytes)
            return imgset_fail("file %s: %zu bytes is more than the %zu accepted", file, size,
                               max_bytes);
        uint8_t *copy = malloc(size ? size : 1);
        if (!copy)
            return imgset_fail("file %s: out of memory for %zu bytes", file, size);
        memcpy(copy, data, size);
        *out = copy;
        *out_size = size;
        return 0;
    }

    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)   /* 16+: gzip wrapper only */
        return imgset_fail("file %s: zlib: cannot start inflating", file);
    /* The output may grow to `limit`: max_bytes until the IDX header is known, then the size
     * it announces plus one byte (to see trailing data), so a compressed bomb never makes us
     * allocate more than the header claims; the buffer grows by doubling, as data arrives. */
    size_t limit = max_bytes, capacity = 0, have = 0;
    uint8_t *buf = NULL;
    int header = 0;   /* 0: not seen yet, 1: an IDX header, -1: something else */
    int rc = Z_OK;
    const uint8_t *next_in = data;
    size_t left_in = size;
    for (;;) {
        if (header == 0) {
            size_t total;
            header = idx_announced_size(buf, have, &total);
            if (header > 0 && total >= max_bytes) {
                free(buf);
                inflateEnd(&zs);
                return imgset_fail("file %s: the IDX header announces %zu bytes, more than the "
                                   "%zu accepted", file, total, max_bytes);
            }
            if (header != 0)
                limit = header > 0 ? total + 1 : have;   /* not IDX: idx_parse says why */
        }
        if (have >= limit) {
            if (header >= 0) {
                free(buf);
                inflateEnd(&zs);
                return header > 0 ? imgset_fail("file %s: more data than the %zu bytes the IDX "
                                                "header announces", file, have - 1)
                                  : imgset_fail("file %s: more than %zu bytes when inflated",
                                                file, max_bytes);
            }
            break;
        }
        if (have == capacity) {
            size_t grow = capacity ? capacity : 4096;
            size_t bigger = capacity + grow < capacity || capacity + grow > limit
                                ? limit : capacity + grow;
            uint8_t *nb = realloc(buf, bigger);
            if (!nb) {
                free(buf);
                inflateEnd(&zs);
                return imgset_fail("file %s: out of memory inflating %zu bytes", file, bigger);
            }
            buf = nb;
            capacity = bigger;
        }
        /* zlib counts in uInt: feed and drain at most 1 GiB per call. */
        size_t in_chunk = left_in < (1u << 30) ? left_in : (1u << 30);
        size_t out_chunk = capacity - have < (1u << 30) ? capacity - have : (1u << 30);
        /* While the header is unknown, inflate a few bytes at a time so it is seen early. */
        if (header == 0 && out_chunk > 16)
            out_chunk = 16;
        zs.next_in = (Bytef *)next_in;
        zs.avail_in = (uInt)in_chunk;
        zs.next_out = buf + have;
        zs.avail_out = (uInt)out_chunk;
        rc = inflate(&zs, Z_NO_FLUSH);
        size_t used = in_chunk - zs.avail_in;
        next_in += used;
        left_in -= used;
        have += out_chunk - zs.avail_out;
        if (rc == Z_STREAM_END) {
            /* Another gzip member may follow (as gzip -c a b > c makes); padding zeros end it. */
            while (left_in > 0 && *next_in == 0) {
                next_in++;
                left_in--;
            }
            if (left_in == 0)
                break;
            if (inflateReset(&zs) != Z_OK)
                break;
            continue;
        }
        if (rc == Z_BUF_ERROR && left_in == 0) {
            free(buf);
            inflateEnd(&zs);
            return imgset_fail("file %s: truncated gzip data (%zu bytes inflated)", file, have);
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            const char *why = zs.msg ? zs.msg : "corrupt data";
            char msg[128];
            snprintf(msg, sizeof msg, "%s", why);
            free(buf);
            inflateEnd(&zs);
            return imgset_fail("file %s: bad gzip data after %zu inflated bytes: %s", file,
                               have, msg);
        }
    }
    inflateEnd(&zs);
    *out = buf ? buf : malloc(1);
    if (!*out)
        return imgset_fail("file %s: out of memory", file);
    *out_size = have;
    return 0;
}

int idx_parse(const uint8_t *data, size_t size, int ndims, const char *file, IdxArray *out)
{
    memset(out, 0, sizeof *out);
    const char *what = ndims == 3 ? "images (N x H x W)" : "labels (N)";
    uint32_t expected = (uint32_t)IDX_TYPE_UBYTE << 8 | (uint32_t)ndims;
    if (size < 4)
        return imgset_fail("file %s: %zu bytes is too short for an IDX header (expected magic "
                           "0x%08x, unsigned-byte %s)", file, size, expected, what);
    uint32_t magic = read_be32(data);
    if (magic != expected)
        return imgset_fail("file %s: bad IDX magic 0x%08x (expected 0x%08x, unsigned-byte %s)",
                           file, magic, expected, what);
    size_t header = 4 + 4 * (size_t)ndims;
    if (size < header)
        return imgset_fail("file %s: truncated IDX header (%zu bytes, need %zu)", file, size,
                           header);
    size_t payload = 1;
    for (int i = 0; i < ndims; i++) {
        out->dims[i] = read_be32(data + 4 + 4 * i);
        if (i > 0 && (out->dims[i] < 1 || out->dims[i] > IMGSET_MAX_SIDE))
            return imgset_fail("file %s: image %s %" PRIu32 " outside 1..%d", file,
                               i == 1 ? "height" : "width", out->dims[i], IMGSET_MAX_SIDE);
        if (size_mul(payload, out->dims[i], &payload) < 0)
            return imgset_fail("file %s: IDX dimensions overflow the address space", file);
    }
    if (size - header < payload)
        return imgset_fail("file %s: truncated: %zu data bytes, the header announces %zu", file,
                           size - header, payload);
    if (size - header > payload)
        return imgset_fail("file %s: %zu bytes after the %zu data bytes the header announces",
                           file, size - header - payload, payload);
    out->ndims = ndims;
    out->data = data + header;
    out->data_size = payload;
    return 0;
}

int idx_check_pair(const IdxArray *images, const char *images_file, const IdxArray *labels,
                   const char *labels_file, int32_t *max_label)
{
    if (images->dims[0] != labels->dims[0])
        return imgset_fail("count mismatch: %s has %" PRIu32 " images, %s has %" PRIu32
                           " labels", images_file, images->dims[0], labels_file,
                           labels->dims[0]);
    int32_t max = -1;
    for (size_t i = 0; i < labels->data_size; i++)
        if (labels->data[i] > max)
            max = labels->data[i];
    *max_label = max;
    return 0;
}

/* One split: the decoded files and the arrays parsed from them. */
typedef struct IdxSplit {
    uint8_t *image_file, *label_file;   /* decoded file contents (owned) */
    IdxArray images, labels;
} IdxSplit;

typedef struct IdxStore {
    IdxSplit split[SPLIT_COUNT];
} IdxStore;

/* The four paths import_idx_open() hands to idx_open() through Store.open_arg. */
typedef struct IdxPaths {
    const char *images[SPLIT_COUNT], *labels[SPLIT_COUNT];
} IdxPaths;

/* Read, gunzip if needed, and parse one IDX file into *file / *array. */
static int load_idx_file(const char *path, int ndims, uint8_t **file, IdxArray *array)
{
    uint8_t *raw;
    size_t raw_size;
    if (import_read_file(path, IDX_MAX_FILE, &raw, &raw_size) < 0)
        return -1;
    if (raw_size >= 2 && raw[0] == 0x1f && raw[1] == 0x8b) {
        uint8_t *decoded;
        size_t decoded_size;
        int rc = idx_decode(raw, raw_size, path, IDX_MAX_FILE, &decoded, &decoded_size);
        free(raw);
        if (rc < 0)
            return -1;
        raw = decoded;
        raw_size = decoded_size;
    }
    *file = raw;
    return idx_parse(raw, raw_size, ndims, path, array);
}

static void idx_close(Store *s)
{
    IdxStore *st = s->impl;
    if (!st)
        return;
    for (int i = 0; i < SPLIT_COUNT; i++) {
        free(st->split[i].image_file);
        free(st->split[i].label_file);
    }
    free(st);
    s->impl = NULL;
}

static int idx_open(Store *s, const char *location)
{
    const IdxPaths *paths = s->open_arg;
    if (!paths)
        return imgset_fail("%s: the IDX importer opens through import_idx_open()", location);
    IdxStore *st = calloc(1, sizeof *st);
    if (!st)
        return imgset_fail("out of memory");
    s->impl = st;
    int32_t max_label = -1;
    for (int i = 0; i < SPLIT_COUNT; i++) {
        IdxSplit *sp = &st->split[i];
        if (!paths->images[i])
            continue;   /* an empty test split */
        int32_t split_max;
        if (load_idx_file(paths->images[i], 3, &sp->image_file, &sp->images) < 0 ||
            load_idx_file(paths->labels[i], 1, &sp->label_file, &sp->labels) < 0 ||
            idx_check_pair(&sp->images, paths->images[i], &sp->labels, paths->labels[i],
                           &split_max) < 0) {
            idx_close(s);
            return -1;
        }
        if (split_max > max_label)
            max_label = split_max;
        s->info.split[i].count = sp->images.dims[0];
        s->info.split[i].shape = (ImageShape){(int32_t)sp->images.dims[1],
                                              (int32_t)sp->images.dims[2], 1};
    }
    int32_t num_classes = max_label <= 9 ? 10 : max_label + 1;
    char (*storage)[12] = calloc((size_t)num_classes, sizeof *storage);
    const char **names = calloc((size_t)num_classes, sizeof *names);
    int rc = -1;
    if (storage && names) {
        for (int32_t c = 0; c < num_classes; c++) {
            snprintf(storage[c], sizeof storage[c], "%d", (int)c);
            names[c] = storage[c];
        }
        rc = dataset_info_set_classes(&s->info, num_classes, names);
    } else {
        imgset_fail("out of memory");
    }
    free(storage);
    free(names);
    if (rc < 0) {
        idx_close(s);
        return -1;
    }
    return 0;
}

static int idx_read_image(Store *s, int split, int64_t index, uint8_t *dst, size_t capacity,
                          ImageShape *shape, int32_t *label)
{
    const IdxSplit *sp = &((IdxStore *)s->impl)->split[split];
    *shape = s->info.split[split].shape;
    size_t bytes = image_shape_bytes(*shape);
    if (bytes > capacity)
        return imgset_fail("%s: %s image %" PRId64 " needs %zu bytes, buffer has %zu", s->uri,
                           split_names[split], index, bytes, capacity);
    memcpy(dst, sp->images.data + (size_t)index * bytes, bytes);
    *label = sp->labels.data[index];
    return 0;
}

/* Every image of a split has the split's shape, so store.c never asks for one. */
static int idx_image_shape(Store *s, int split, int64_t index, ImageShape *shape)
{
    *shape = s->info.split[split].shape;
    return 0;
}

static const StoreOps idx_ops = {
    .summary = "MNIST-style IDX files (importer)",
    .open = idx_open,
    .image_shape = idx_image_shape,
    .read_image = idx_read_image,
    .close = idx_close,
};

/* Set the data set name: the directory holding `path`, or "idx". */
static void name_from_path(DatasetInfo *info, const char *path)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    char *slash = strrchr(copy, '/');
    const char *base = "";
    if (slash) {
        *slash = '\0';
        while (slash > copy && slash[-1] == '/')
            *--slash = '\0';
        char *dir_slash = strrchr(copy, '/');
        base = dir_slash ? dir_slash + 1 : copy;
    }
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        base = "idx";
    dataset_info_set_name(info, base);
}

Store *import_idx_open(const char *train_images, const char *train_labels,
                       const char *test_images, const char *test_labels)
{
    if (!train_images || !train_labels)
        return imgset_fail("idx: the train images and labels files are required"), NULL;
    if (!test_images != !test_labels)
        return imgset_fail("idx: give both test files (images and labels) or neither"), NULL;
    IdxPaths paths = {{train_images, test_images}, {train_labels, test_labels}};
    char label[4200];
    snprintf(label, sizeof label, "idx:%s", train_images);
    Store *s = store_open_with(&idx_ops, label, train_images, &paths);
    if (s)
        name_from_path(&s->info, train_images);
    return s;
}
