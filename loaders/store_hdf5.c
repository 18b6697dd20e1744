/* store_hdf5.c — the hdf5: store: one HDF5 file in h5py's layout, read and written. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>
#ifdef IMGSET_HAVE_LIBDEFLATE
#include <libdeflate.h>
#endif
#include <zlib.h>

#include "error.h"

/*
 * File layout (what h5py gives for numpy arrays, so `h5py.File(FILE)["train/images"][i]` is
 * image i):
 *   /train/images   (N,H,W,C) uint8     every image of the split (also read: (N,H,W), C = 1)
 *   /train/labels   (N,) int64          0..K-1 (any integer type is read and converted)
 *   /test/...       the same for the test split
 * Ragged splits (image sizes vary):
 *   /train/images   (total,) uint8      the images back to back
 *   /train/offsets  (N+1,) int64        image i is images[offsets[i] : offsets[i+1]]
 *   /train/shapes   (N,3) int32         (H, W, C) of image i
 * Root attributes: class_names (K variable-length UTF-8 strings; fixed-length strings are read
 * too; when missing, names are "0".."K-1" with K = largest label + 1), imgset_format =
 * "imgset-hdf5", imgset_version = 1 (both checked when present, optional when reading) and
 * name (the data set's name; optional when reading).
 *
 * URI: `hdf5:FILE` writes contiguous datasets (fastest reads: image i of a fixed split is
 * read with one pread() at H5Dget_offset() + i * H*W*C). `hdf5:FILE?compression=gzip`
 * writes gzip-compressed chunked datasets instead, one image per chunk for fixed splits and
 * 256 KiB chunks for ragged ones; `&level=N` (1..9, default 4) sets the gzip level. Everything
 * after the first '?' is options, not part of the file name. Readers accept the same options
 * and ignore them.
 *
 * The writer creates FILE.tmp-<pid> (refusing an existing FILE), buffers images and writes
 * many per H5Dwrite; the pixels of a ragged split go to an anonymous spool file first, since
 * a contiguous dataset's size must be known when it is created. commit() closes the file,
 * fsyncs it and renames it to FILE.
 */

#define HDF5_FORMAT_NAME "imgset-hdf5"
#define HDF5_FORMAT_VERSION 1
#define HDF5_DEFAULT_GZIP_LEVEL 4
#define WRITE_BATCH_BYTES ((size_t)8 << 20)     /* images buffered per H5Dwrite */
#define RAGGED_CHUNK_BYTES ((hsize_t)1 << 18)   /* chunk of a gzip-compressed ragged split */
#define READ_CHUNK_CACHE_BYTES ((size_t)16 << 20) /* per compressed dataset, when reading */
#define READ_CHUNK_CACHE_SLOTS 12421            /* a prime, as HDF5 advises */
#define MAX_IMAGE_COUNT ((int64_t)1 << 40)      /* a sanity bound on counts read from files */

/* One split's state, for reading or writing. */
typedef struct Hdf5Split {
    int ragged;              /* 1 when sizes vary: flat images + offsets + shapes */
    int64_t count;           /* N */
    ImageShape shape;        /* fixed splits: every image's shape */
    size_t image_bytes;      /* fixed splits: H*W*C */
    hid_t images;            /* the images dataset, or H5I_INVALID_HID */
    hid_t labels;            /* writer: the labels dataset */
    hid_t offsets_dataset;   /* writer, ragged */
    hid_t shapes_dataset;    /* writer, ragged */
    hid_t group;             /* writer: /train or /test */
    hid_t file_space;        /* reader: the images dataspace, for hyperslab reads */
    hid_t memory_space;      /* reader, fixed: (1,H,W,C) or (1,H,W) like the file's */
    int64_t raw_offset;      /* reader: file offset of contiguous image data, or -1 */
    int deflate_chunks;      /* reader: one deflate-only chunk per image (see read_chunk) */
    int32_t *labels_read;    /* reader: (N,) */
    int64_t *labels_written; /* writer: (N,) until the split is finished */
    int64_t *offsets;        /* ragged: (N+1,) */
    int32_t *shapes;         /* ragged: (N, 3) */
    int64_t flushed;         /* writer: images already handed to HDF5 or the spool */
    int spool_fd;            /* writer, ragged: anonymous file holding the pixels, or -1 */
    int finished;            /* writer: datasets complete and closed */
} Hdf5Split;

typedef struct Hdf5Store {
    const char *uri;         /* the store's URI (owned by the Store), for messages */
    char *path;              /* the file: the location without its options */
    char *temp_path;         /* writer: path.tmp-<pid> while uncommitted */
    hid_t file;
    int fd;                  /* reader: the file again, for pread() of contiguous data */
    int gzip_level;          /* writer: 0 = contiguous layout */
    uint8_t *batch;          /* writer: (batch_capacity,) images waiting for one write;
                              * reader: one compressed chunk */
    size_t batch_capacity;
    size_t batch_used;
    int batch_images;
#ifdef IMGSET_HAVE_LIBDEFLATE
    struct libdeflate_decompressor *inflater;   /* reader: made on the first gzip chunk */
#endif
    Hdf5Split split[SPLIT_COUNT];
} Hdf5Store;

/* ---- errors ------------------------------------------------------------------------- */

/* HDF5's error stack: keep the most specific description, for the message. */
/* One HDF5 call at a time in this process (see the end of this file). */
static pthread_mutex_t hdf5_library_lock = PTHREAD_MUTEX_INITIALIZER;

static herr_t hdf5_error_walk(unsigned n, const H5E_error2_t *err, void *context)
{
    char *detail = context;
    if (n == 0 && err->desc && err->desc[0]) {
        snprintf(detail, 256, "%s", err->desc);
        /* Some descriptions span lines (a write error carries a timestamp line): one line. */
        for (char *p = detail; *p; p++)
            if (*p == '\n')
                *p = ' ';
    }
    return 0;
}

/* imgset_fail("URI: message (HDF5: most specific error)"); clears HDF5's error stack. */
static int hdf5_fail(const Hdf5Store *h, const char *fmt, ...) IMGSET_PRINTF(2, 3);
static int hdf5_fail(const Hdf5Store *h, const char *fmt, ...)
{
    char message[512], detail[256] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, hdf5_error_walk, detail);
    H5Eclear2(H5E_DEFAULT);
    if (detail[0])
        return imgset_fail("%s: %s (HDF5: %s)", h->uri, message, detail);
    return imgset_fail("%s: %s", h->uri, message);
}

/* ---- small helpers ------------------------------------------------------------------ */

static void close_id(hid_t *id, herr_t (*closer)(hid_t))
{
    if (*id >= 0)
        closer(*id);
    *id = H5I_INVALID_HID;
}

/* Split "FILE?key=value&..." into the file name and options; gzip level 0 = none. */
static int parse_location(Hdf5Store *h, const char *location, int *gzip_level)
{
    const char *query = strchr(location, '?');
    size_t n = query ? (size_t)(query - location) : strlen(location);
    if (n == 0)
        return imgset_fail("%s: no file name", h->uri);
    h->path = strndup(location, n);
    if (!h->path)
        return imgset_fail("out of memory");
    int compression = 0, level = HDF5_DEFAULT_GZIP_LEVEL, level_given = 0;
    for (const char *p = query ? query + 1 : NULL; p && *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 16 && strncmp(p, "compression=gzip", len) == 0)
            compression = 1;
        else if (len == 16 && strncmp(p, "compression=none", len) == 0)
            compression = 0;
        else if (len == 7 && strncmp(p, "level=", 6) == 0 && p[6] >= '1' && p[6] <= '9')
            level = p[6] - '0', level_given = 1;
        else
            return imgset_fail("%s: unknown option \"%.*s\" (expected compression=gzip, "
                               "compression=none or level=1..9)", h->uri, (int)len, p);
        p = end ? end + 1 : NULL;
    }
    if (level_given && !compression)
        return imgset_fail("%s: level= needs compression=gzip", h->uri);
    *gzip_level = compression ? level : 0;
    return 0;
}

/* Read exactly n bytes at offset; a short read means the file was cut. */
static int pread_exact(const Hdf5Store *h, uint8_t *dst, size_t n, int64_t offset)
{
    while (n > 0) {
        ssize_t got = pread(h->fd, dst, n, (off_t)offset);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return imgset_fail("%s: read at byte %lld: %s", h->uri, (long long)offset,
                               strerror(errno));
        if (got == 0)
            return imgset_fail("%s: file ends at byte %lld, inside image data (truncated?)",
                               h->uri, (long long)offset);
        dst += got;
        n -= (size_t)got;
        offset += got;
    }
    return 0;
}

/* The directory part of a path ("." when none), malloc'd; NULL when out of memory. */
static char *directory_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    return slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
}

/* Write all n bytes to fd. */
static int write_all(int fd, const uint8_t *src, size_t n)
{
    while (n > 0) {
        ssize_t put = write(fd, src, n);
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0)
            return -1;
        src += put;
        n -= (size_t)put;
    }
    return 0;
}

/* A short description of an HDF5 datatype for messages: "uint8", "float32", "string". */
static void describe_type(hid_t type, char *out, size_t n)
{
    size_t bits = H5Tget_size(type) * 8;
    switch (H5Tget_class(type)) {
    case H5T_INTEGER:
        snprintf(out, n, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", bits);
        break;
    case H5T_FLOAT:
        snprintf(out, n, "float%zu", bits);
        break;
    case H5T_STRING:
        snprintf(out, n, "string");
        break;
    case H5T_ENUM:
        snprintf(out, n, "enum (bool?)");
        break;
    case H5T_COMPOUND:
        snprintf(out, n, "compound");
        break;
    default:
        snprintf(out, n, "type class %d", (int)H5Tget_class(type));
    }
}

/* ---- attributes ----------------------------------------------------------------------- */

/* Write a scalar variable-length UTF-8 string attribute (what h5py writes for a str). */
static int write_string_attribute(Hdf5Store *h, hid_t object, const char *name,
                                  const char *value)
{
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    int rc = -1;
    if (type < 0 || space < 0 || H5Tset_size(type, H5T_VARIABLE) < 0 ||
        H5Tset_cset(type, H5T_CSET_UTF8) < 0)
        goto done;
    attr = H5Acreate2(object, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0 && H5Awrite(attr, type, &value) >= 0)
        rc = 0;
done:
    if (rc < 0)
        hdf5_fail(h, "cannot write attribute %s", name);
    close_id(&attr, H5Aclose);
    close_id(&space, H5Sclose);
    close_id(&type, H5Tclose);
    return rc;
}

/* Write an array of n variable-length UTF-8 strings (h5py's list of str). */
static int write_strings_attribute(Hdf5Store *h, hid_t object, const char *name,
                                   char *const *values, int32_t n)
{
    hsize_t dims[1] = {(hsize_t)n};
    hid_t type = H5Tcopy(H5T_C_S1), space = H5Screate_simple(1, dims, NULL);
    hid_t attr = H5I_INVALID_HID;
    int rc = -1;
    if (type < 0 || space < 0 || H5Tset_size(type, H5T_VARIABLE) < 0 ||
        H5Tset_cset(type, H5T_CSET_UTF8) < 0)
        goto done;
    attr = H5Acreate2(object, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0 && H5Awrite(attr, type, values) >= 0)
        rc = 0;
done:
    if (rc < 0)
        hdf5_fail(h, "cannot write attribute %s (%d strings)", name, n);
    close_id(&attr, H5Aclose);
    close_id(&space, H5Sclose);
    close_id(&type, H5Tclose);
    return rc;
}

static int write_int_attribute(Hdf5Store *h, hid_t object, const char *name, int64_t value)
{
    hid_t space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    int rc = -1;
    if (space >= 0)
        attr = H5Acreate2(object, name, H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr >= 0 && H5Awrite(attr, H5T_NATIVE_INT64, &value) >= 0)
        rc = 0;
    if (rc < 0)
        hdf5_fail(h, "cannot write attribute %s", name);
    close_id(&attr, H5Aclose);
    close_id(&space, H5Sclose);
    return rc;
}

/* 1 when the root has attribute `name`, 0 when not, -1 on error. */
static int has_attribute(Hdf5Store *h, const char *name)
{
    htri_t exists = H5Aexists(h->file, name);
    if (exists < 0)
        return hdf5_fail(h, "cannot look up attribute %s", name);
    return exists > 0;
}

static void free_strings(char **strings, size_t n)
{
    if (!strings)
        return;
    for (size_t i = 0; i < n; i++)
        free(strings[i]);
    free(strings);
}

/*
 * Read a root string attribute, scalar or 1-D, variable- or fixed-length, into *out
 * (*count malloc'd strings, freed with free_strings).
 */
static int read_strings_attribute(Hdf5Store *h, const char *name, char ***out, size_t *count)
{
    hid_t attr = H5Aopen(h->file, name, H5P_DEFAULT);
    hid_t file_type = H5I_INVALID_HID, space = H5I_INVALID_HID, memory_type = H5I_INVALID_HID;
    char **strings = NULL, **vlen = NULL;
    char *fixed = NULL;
    size_t n = 0;
    int rc = -1;
    if (attr < 0 || (file_type = H5Aget_type(attr)) < 0 || (space = H5Aget_space(attr)) < 0) {
        hdf5_fail(h, "cannot open attribute %s", name);
        goto done;
    }
    if (H5Tget_class(file_type) != H5T_STRING) {
        char type[64];
        describe_type(file_type, type, sizeof type);
        imgset_fail("%s: attribute %s is %s, expected strings", h->uri, name, type);
        goto done;
    }
    int rank = H5Sget_simple_extent_ndims(space);
    hssize_t points = H5Sget_simple_extent_npoints(space);
    if (rank < 0 || rank > 1 || points < 0 || points > IMGSET_MAX_CLASSES) {
        imgset_fail("%s: attribute %s must be a string or a list of at most %d strings", h->uri,
                    name, IMGSET_MAX_CLASSES);
        goto done;
    }
    n = (size_t)points;
    strings = calloc(n ? n : 1, sizeof *strings);
    if (!strings) {
        imgset_fail("out of memory");
        goto done;
    }
    htri_t variable = H5Tis_variable_str(file_type);
    if (variable < 0 || (memory_type = H5Tcopy(file_type)) < 0) {
        hdf5_fail(h, "attribute %s: bad string type", name);
        goto done;
    }
    if (variable) {
        vlen = calloc(n ? n : 1, sizeof *vlen);
        if (!vlen) {
            imgset_fail("out of memory");
            goto done;
        }
        if (H5Aread(attr, memory_type, vlen) < 0) {
            hdf5_fail(h, "cannot read attribute %s", name);
            free(vlen);
            vlen = NULL;
            goto done;
        }
        for (size_t i = 0; i < n; i++)
            if (!(strings[i] = strdup(vlen[i] ? vlen[i] : ""))) {
                imgset_fail("out of memory");
                break;
            }
#if H5_VERSION_GE(1, 12, 0)
        H5Treclaim(memory_type, space, H5P_DEFAULT, vlen);
#else
        H5Dvlen_reclaim(memory_type, space, H5P_DEFAULT, vlen);
#endif
        for (size_t i = 0; i < n; i++)
            if (!strings[i])
                goto done;
    } else {
        size_t width = H5Tget_size(file_type), total;
        if (width == 0 || size_mul(width, n ? n : 1, &total) < 0 || !(fixed = malloc(total))) {
            imgset_fail("%s: attribute %s: bad string size %zu", h->uri, name, width);
            goto done;
        }
        if (H5Aread(attr, memory_type, fixed) < 0) {
            hdf5_fail(h, "cannot read attribute %s", name);
            goto done;
        }
        int space_padded = H5Tget_strpad(file_type) == H5T_STR_SPACEPAD;
        for (size_t i = 0; i < n; i++) {
            const char *s = fixed + i * width;
            size_t len = strnlen(s, width);
            while (space_padded && len > 0 && s[len - 1] == ' ')
                len--;
            if (!(strings[i] = strndup(s, len))) {
                imgset_fail("out of memory");
                goto done;
            }
        }
    }
    *out = strings;
    *count = n;
    strings = NULL;
    rc = 0;
done:
    free_strings(strings, n);
    free(fixed);
    free(vlen);
    close_id(&memory_type, H5Tclose);
    close_id(&space, H5Sclose);
    close_id(&file_type, H5Tclose);
    close_id(&attr, H5Aclose);
    return rc;
}

/* Read a scalar integer root attribute. */
static int read_int_attribute(Hdf5Store *h, const char *name, int64_t *value)
{
    hid_t attr = H5Aopen(h->file, name, H5P_DEFAULT);
    hid_t type = attr >= 0 ? H5Aget_type(attr) : H5I_INVALID_HID;
    hid_t space = attr >= 0 ? H5Aget_space(attr) : H5I_INVALID_HID;
    int rc = -1;
    if (attr < 0 || type < 0 || space < 0)
        hdf5_fail(h, "cannot open attribute %s", name);
    else if (H5Tget_class(type) != H5T_INTEGER || H5Sget_simple_extent_npoints(space) != 1)
        imgset_fail("%s: attribute %s must be one integer", h->uri, name);
    else if (H5Aread(attr, H5T_NATIVE_INT64, value) < 0)
        hdf5_fail(h, "cannot read attribute %s", name);
    else
        rc = 0;
    close_id(&space, H5Sclose);
    close_id(&type, H5Tclose);
    close_id(&attr, H5Aclose);
    return rc;
}

/* Check imgset_format / imgset_version when present and read the name. */
static int read_root_attributes(Hdf5Store *h, DatasetInfo *info)
{
    char **strings = NULL;
    size_t n = 0;
    int exists = has_attribute(h, "imgset_format");
    if (exists < 0)
        return -1;
    if (exists) {
        if (read_strings_attribute(h, "imgset_format", &strings, &n) < 0)
            return -1;
        int good = n == 1 && strcmp(strings[0], HDF5_FORMAT_NAME) == 0;
        if (!good)
            imgset_fail("%s: attribute imgset_format is \"%s\", expected \"%s\"", h->uri,
                        n > 0 ? strings[0] : "", HDF5_FORMAT_NAME);
        free_strings(strings, n);
        if (!good)
            return -1;
    }
    if ((exists = has_attribute(h, "imgset_version")) < 0)
        return -1;
    if (exists) {
        int64_t version;
        if (read_int_attribute(h, "imgset_version", &version) < 0)
            return -1;
        if (version != HDF5_FORMAT_VERSION)
            return imgset_fail("%s: imgset_version is %lld, this build reads version %d", h->uri,
                               (long long)version, HDF5_FORMAT_VERSION);
    }
    if ((exists = has_attribute(h, "name")) < 0)
        return -1;
    if (exists) {
        if (read_strings_attribute(h, "name", &strings, &n) < 0)
            return -1;
        if (n == 1)
            dataset_info_set_name(info, strings[0]);
        free_strings(strings, n);
        if (n != 1)
            return imgset_fail("%s: attribute name must be one string", h->uri);
    }
    return 0;
}

/* ---- reading -------------------------------------------------------------------------- */

/* Open /SPLIT/WHAT, reopened with a chunk cache that suits how we read it; rank and dims out. */
static hid_t open_dataset(Hdf5Store *h, const char *split_name, const char *what, int *rank,
                          hsize_t dims[4])
{
    char path[64];
    snprintf(path, sizeof path, "/%s/%s", split_name, what);
    htri_t exists = H5Lexists(h->file, path, H5P_DEFAULT);
    if (exists <= 0)
        return hdf5_fail(h, "no dataset %s", path), H5I_INVALID_HID;
    hid_t dataset = H5Dopen2(h->file, path, H5P_DEFAULT);
    hid_t create = dataset >= 0 ? H5Dget_create_plist(dataset) : H5I_INVALID_HID;
    hid_t space = dataset >= 0 ? H5Dget_space(dataset) : H5I_INVALID_HID;
    if (dataset < 0 || create < 0 || space < 0) {
        hdf5_fail(h, "cannot open %s (is it a dataset?)", path);
        goto fail;
    }
    *rank = H5Sget_simple_extent_ndims(space);
    if (*rank < 1 || *rank > 4) {
        imgset_fail("%s: %s has rank %d, expected 1 to 4", h->uri, path, *rank);
        goto fail;
    }
    hsize_t max_dims[4];
    H5Sget_simple_extent_dims(space, dims, max_dims);
    if (H5Pget_layout(create) == H5D_CHUNKED) {
        /* HDF5 1.10 trusts the chunk shape it reads and overruns its buffers on a corrupt
         * one; a real one is never larger than a fixed dimension nor than 4 GiB. */
        hsize_t chunk[4] = {0};
        size_t chunk_bytes = 1;
        int chunk_rank = H5Pget_chunk(create, 4, chunk);
        int good = chunk_rank == *rank;
        for (int d = 0; good && d < *rank; d++)
            good = chunk[d] >= 1 && (max_dims[d] == H5S_UNLIMITED || chunk[d] <= max_dims[d]) &&
                   size_mul(chunk_bytes, (size_t)chunk[d], &chunk_bytes) == 0;
        if (!good || chunk_bytes > ((size_t)1 << 32)) {
            imgset_fail("%s: %s has a corrupt chunk shape", h->uri, path);
            goto fail;
        }
    }
    /* Compressed chunks are decompressed whole: cache them, as one chunk may hold several
     * images. Uncompressed chunks with no cache are read straight into our buffer. */
    if (H5Pget_layout(create) == H5D_CHUNKED) {
        hid_t access = H5Pcreate(H5P_DATASET_ACCESS);
        int filtered = H5Pget_nfilters(create) > 0;
        if (access < 0 ||
            H5Pset_chunk_cache(access, READ_CHUNK_CACHE_SLOTS,
                               filtered ? READ_CHUNK_CACHE_BYTES : 0, 1.0) < 0) {
            close_id(&access, H5Pclose);
            hdf5_fail(h, "cannot set up the chunk cache of %s", path);
            goto fail;
        }
        H5Dclose(dataset);
        dataset = H5Dopen2(h->file, path, access);
        if (dataset < 0)
            hdf5_fail(h, "cannot open %s", path);
        H5Pclose(access);
        if (dataset < 0)
            goto fail;
    }
    H5Pclose(create);
    H5Sclose(space);
    return dataset;
fail:
    close_id(&create, H5Pclose);
    close_id(&space, H5Sclose);
    close_id(&dataset, H5Dclose);
    return H5I_INVALID_HID;
}

/* 0 when the dataset holds integers (of any width and sign), else -1 with a message. */
static int check_integer(Hdf5Store *h, hid_t dataset, const char *split_name, const char *what)
{
    hid_t type = H5Dget_type(dataset);
    if (type < 0)
        return hdf5_fail(h, "/%s/%s: cannot get its type", split_name, what);
    int good = H5Tget_class(type) == H5T_INTEGER;
    char name[64];
    describe_type(type, name, sizeof name);
    H5Tclose(type);
    if (!good)
        return imgset_fail("%s: /%s/%s has element type %s, expected integers", h->uri,
                           split_name, what, name);
    return 0;
}

/* Read a whole integer dataset of `count` elements, converted to memory_type, into dst. */
static int read_integers(Hdf5Store *h, hid_t dataset, hid_t memory_type, void *dst,
                         int64_t count, const char *split_name, const char *what)
{
    if (count == 0)
        return 0;
    if (H5Dread(dataset, memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
        return hdf5_fail(h, "cannot read /%s/%s", split_name, what);
    return 0;
}

/* Allocate count * size bytes (at least 1), failing with a message. */
static void *allocate_array(const Hdf5Store *h, int64_t count, size_t size, const char *what)
{
    size_t bytes;
    if (count < 0 || size_mul((size_t)count + 1, size, &bytes) < 0)
        return imgset_fail("%s: %s: %lld entries is too many", h->uri, what, (long long)count),
               NULL;
    void *p = malloc(bytes);
    if (!p)
        imgset_fail("%s: out of memory for %s (%lld entries)", h->uri, what, (long long)count);
    return p;
}

/* Find where a contiguous dataset's bytes lie in the file, checking they are all there. */
static int locate_raw_data(Hdf5Store *h, Hdf5Split *sp, size_t total, const char *split_name)
{
    sp->raw_offset = -1;
    hid_t create = H5Dget_create_plist(sp->images);
    if (create < 0)
        return hdf5_fail(h, "/%s/images: cannot get its properties", split_name);
    int contiguous = H5Pget_layout(create) == H5D_CONTIGUOUS && H5Pget_external_count(create) == 0;
    H5Pclose(create);
    if (!contiguous || total == 0)
        return 0;
    haddr_t address = H5Dget_offset(sp->images);
    H5Eclear2(H5E_DEFAULT);
    if (address == HADDR_UNDEF)   /* never written: HDF5 gives the fill value */
        return 0;
    struct stat st;
    size_t end = 0;
    if (fstat(h->fd, &st) < 0)
        return imgset_fail("%s: %s", h->uri, strerror(errno));
    if (address > (haddr_t)INT64_MAX || size_add((size_t)address, total, &end) < 0 ||
        end > (size_t)st.st_size)
        return imgset_fail("%s: /%s/images needs bytes %llu..%zu but the file has %lld "
                           "(truncated?)", h->uri, split_name, (unsigned long long)address, end,
                           (long long)st.st_size);
    sp->raw_offset = (int64_t)address;
    return 0;
}

/*
 * gzip files with one image per chunk (h5py's chunks=(1,H,W,C), compression='gzip', and our
 * writer's) skip HDF5's filter pipeline: read_chunk() fetches the stored bytes with
 * H5Dread_chunk under the library lock (a few µs) and inflates them outside it, so loader
 * workers decompress in parallel: with libdeflate where the build has it (2-3x faster than
 * zlib's inflate, which took three quarters of the read time), else with zlib. Any other
 * layout or filter keeps the HDF5 path.
 */
static void check_deflate_chunks(Hdf5Split *sp, int rank, const hsize_t *dims)
{
    hid_t create = H5Dget_create_plist(sp->images);
    hsize_t chunk[4] = {0, 0, 0, 0};
    unsigned flags, config;
    size_t nvalues = 0;
    sp->deflate_chunks =
        create >= 0 && H5Pget_layout(create) == H5D_CHUNKED &&
        H5Pget_chunk(create, 4, chunk) == rank && chunk[0] == 1 && chunk[1] == dims[1] &&
        chunk[2] == dims[2] && (rank == 3 || chunk[3] == dims[3]) &&
        H5Pget_nfilters(create) == 1 &&
        H5Pget_filter2(create, 0, &flags, &nvalues, NULL, 0, NULL, &config) == H5Z_FILTER_DEFLATE;
    if (create >= 0)
        H5Pclose(create);
    H5Eclear2(H5E_DEFAULT);
}

static int inflate_chunk(Hdf5Store *h, int split, int64_t index, uint8_t *dst, size_t bytes,
                         size_t stored);

/* Read image `index` from its own deflate chunk; 1 when the chunk was never written (the
 * caller then lets HDF5 supply the fill value), 0 done, -1 error. */
static int read_chunk(Hdf5Store *h, Hdf5Split *sp, int split, int64_t index, uint8_t *dst,
                      size_t bytes)
{
    hsize_t at[4] = {(hsize_t)index, 0, 0, 0}, stored = 0;
    uint32_t mask = 0;
    pthread_mutex_lock(&hdf5_library_lock);
    int rc = H5Dget_chunk_storage_size(sp->images, at, &stored) < 0 ? -1 : 0;
    if (rc == 0 && stored > 0 && stored <= (hsize_t)64 << 20 && stored > h->batch_capacity) {
        uint8_t *bigger = realloc(h->batch, (size_t)stored);
        if (bigger) {
            h->batch = bigger;
            h->batch_capacity = (size_t)stored;
        }
    }
    if (rc == 0 && stored > 0 && stored <= h->batch_capacity)
        rc = H5Dread_chunk(sp->images, H5P_DEFAULT, at, &mask, h->batch) < 0 ? -1 : 0;
    if (rc < 0)
        rc = hdf5_fail(h, "/%s/images: cannot read the chunk of image %lld", split_names[split],
                       (long long)index);
    H5Eclear2(H5E_DEFAULT);
    pthread_mutex_unlock(&hdf5_library_lock);
    if (rc < 0)
        return -1;
    if (stored == 0)
        return 1;
    if (stored > h->batch_capacity)
        return imgset_fail("%s: /%s/images chunk of image %lld is %llu bytes, too large",
                           h->uri, split_names[split], (long long)index,
                           (unsigned long long)stored);
    if (mask & 1) {   /* the deflate filter was skipped for this chunk: stored as is */
        if (stored != bytes)
            return imgset_fail("%s: /%s/images chunk of image %lld holds %llu bytes, not %zu",
                               h->uri, split_names[split], (long long)index,
                               (unsigned long long)stored, bytes);
        memcpy(dst, h->batch, bytes);
        return 0;
    }
    return inflate_chunk(h, split, index, dst, bytes, (size_t)stored);
}

/* Inflate the zlib stream in h->batch (stored bytes) into exactly `bytes` at dst. */
static int inflate_chunk(Hdf5Store *h, int split, int64_t index, uint8_t *dst, size_t bytes,
                         size_t stored)
{
    const char *why = NULL;
#ifdef IMGSET_HAVE_LIBDEFLATE
    if (!h->inflater && !(h->inflater = libdeflate_alloc_decompressor()))
        return imgset_fail("%s: out of memory for a decompressor", h->uri);
    size_t out = 0;
    enum libdeflate_result r =
        libdeflate_zlib_decompress(h->inflater, h->batch, stored, dst, bytes, &out);
    if (r == LIBDEFLATE_INSUFFICIENT_SPACE)
        why = "longer than one image";
    else if (r != LIBDEFLATE_SUCCESS)
        why = "bad data";
    else if (out != bytes)
        why = "too short";
#else
    uLongf out = (uLongf)bytes;
    int zrc = uncompress(dst, &out, h->batch, (uLong)stored);
    if (zrc != Z_OK)
        why = zError(zrc);
    else if (out != bytes)
        why = "too short";
#endif
    if (why)
        return imgset_fail("%s: /%s/images image %lld: corrupt gzip chunk (%s)", h->uri,
                           split_names[split], (long long)index, why);
    return 0;
}

/* Check the images dataset's element type: uint8. */
static int check_images_type(Hdf5Store *h, hid_t images, const char *split_name)
{
    hid_t type = H5Dget_type(images);
    if (type < 0)
        return hdf5_fail(h, "/%s/images: cannot get its type", split_name);
    int good = H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 1 &&
               H5Tget_sign(type) == H5T_SGN_NONE;
    char name[64];
    describe_type(type, name, sizeof name);
    H5Tclose(type);
    if (!good)
        return imgset_fail("%s: /%s/images has element type %s, expected uint8", h->uri,
                           split_name, name);
    return 0;
}

/* Open a ragged split's offsets and shapes and check every image lies inside the flat array. */
static int open_ragged(Hdf5Store *h, Hdf5Split *sp, hsize_t total, const char *split_name)
{
    int offsets_rank, shapes_rank;
    hsize_t offsets_dims[4], shapes_dims[4];
    hid_t offsets = open_dataset(h, split_name, "offsets", &offsets_rank, offsets_dims);
    if (offsets < 0)
        return -1;
    hid_t shapes = open_dataset(h, split_name, "shapes", &shapes_rank, shapes_dims);
    int rc = -1;
    if (shapes < 0)
        goto done;
    if (shapes_rank != 2 || shapes_dims[1] != 3) {
        imgset_fail("%s: /%s/shapes must be (N, 3) integers, it has rank %d", h->uri,
                    split_name, shapes_rank);
        goto done;
    }
    if (offsets_rank != 1 || offsets_dims[0] != shapes_dims[0] + 1) {
        imgset_fail("%s: /%s/offsets has %llu entries, expected %llu (one more than the rows "
                    "of /%s/shapes)", h->uri, split_name,
                    (unsigned long long)(offsets_rank == 1 ? offsets_dims[0] : 0),
                    (unsigned long long)shapes_dims[0] + 1, split_name);
        goto done;
    }
    if (shapes_dims[0] > (hsize_t)MAX_IMAGE_COUNT) {
        imgset_fail("%s: /%s/shapes has %llu rows, too many", h->uri, split_name,
                    (unsigned long long)shapes_dims[0]);
        goto done;
    }
    sp->count = (int64_t)shapes_dims[0];
    if (check_integer(h, offsets, split_name, "offsets") < 0 ||
        check_integer(h, shapes, split_name, "shapes") < 0)
        goto done;
    size_t shape_entries;
    if (size_mul((size_t)sp->count, 3, &shape_entries) < 0 ||
        !(sp->offsets = allocate_array(h, sp->count + 1, sizeof *sp->offsets, "offsets")) ||
        !(sp->shapes = allocate_array(h, (int64_t)shape_entries, sizeof *sp->shapes, "shapes")))
        goto done;
    if (read_integers(h, offsets, H5T_NATIVE_INT64, sp->offsets, sp->count + 1, split_name,
                      "offsets") < 0 ||
        read_integers(h, shapes, H5T_NATIVE_INT32, sp->shapes, sp->count, split_name,
                      "shapes") < 0)
        goto done;
    for (int64_t i = 0; i < sp->count; i++) {
        ImageShape shape = {sp->shapes[3 * i], sp->shapes[3 * i + 1], sp->shapes[3 * i + 2]};
        if (!image_shape_valid(shape)) {
            imgset_fail("%s: /%s/shapes[%lld] = (%d, %d, %d) is not a valid image shape", h->uri,
                        split_name, (long long)i, shape.height, shape.width, shape.channels);
            goto done;
        }
        int64_t start = sp->offsets[i], end = sp->offsets[i + 1];
        if (start < 0 || end < start || (uint64_t)end > total ||
            (uint64_t)(end - start) != image_shape_bytes(shape)) {
            imgset_fail("%s: /%s/offsets[%lld..%lld] = %lld..%lld does not hold a %dx%dx%d "
                        "image inside /%s/images (%llu bytes)", h->uri, split_name,
                        (long long)i, (long long)i + 1, (long long)start, (long long)end,
                        shape.height, shape.width, shape.channels, split_name,
                        (unsigned long long)total);
            goto done;
        }
    }
    rc = 0;
done:
    close_id(&shapes, H5Dclose);
    close_id(&offsets, H5Dclose);
    return rc;
}

/* Open one split: images (fixed or ragged), labels; every count and range checked. */
static int open_split(Hdf5Store *h, int split)
{
    Hdf5Split *sp = &h->split[split];
    const char *name = split_names[split];
    char group[16];
    snprintf(group, sizeof group, "/%s", name);
    htri_t exists = H5Lexists(h->file, group, H5P_DEFAULT);
    if (exists <= 0)
        return hdf5_fail(h, "no /%s group", name);
    int rank;
    hsize_t dims[4];
    if ((sp->images = open_dataset(h, name, "images", &rank, dims)) < 0 ||
        check_images_type(h, sp->images, name) < 0)
        return -1;
    if ((sp->file_space = H5Dget_space(sp->images)) < 0)
        return hdf5_fail(h, "/%s/images: cannot get its dataspace", name);
    size_t total;
    if (rank == 1) {
        sp->ragged = 1;
        if (dims[0] > (hsize_t)SIZE_MAX)
            return imgset_fail("%s: /%s/images is too large", h->uri, name);
        total = (size_t)dims[0];
        if (open_ragged(h, sp, dims[0], name) < 0)
            return -1;
    } else if (rank == 3 || rank == 4) {
        sp->shape.height = dims[1] > IMGSET_MAX_SIDE ? -1 : (int32_t)dims[1];
        sp->shape.width = dims[2] > IMGSET_MAX_SIDE ? -1 : (int32_t)dims[2];
        sp->shape.channels = rank == 3 ? 1 : dims[3] > IMGSET_MAX_CHANNELS ? -1 : (int32_t)dims[3];
        if (!image_shape_valid(sp->shape))
            return imgset_fail("%s: /%s/images has images of %llux%llux%llu, expected H and W "
                               "in 1..%d and C in 1..%d", h->uri, name,
                               (unsigned long long)dims[1], (unsigned long long)dims[2],
                               (unsigned long long)(rank == 3 ? 1 : dims[3]), IMGSET_MAX_SIDE,
                               IMGSET_MAX_CHANNELS);
        sp->image_bytes = image_shape_bytes(sp->shape);
        if (dims[0] > (hsize_t)MAX_IMAGE_COUNT ||
            size_mul((size_t)dims[0], sp->image_bytes, &total) < 0)
            return imgset_fail("%s: /%s/images has %llu images, too many", h->uri, name,
                               (unsigned long long)dims[0]);
        sp->count = (int64_t)dims[0];
        /* The same shape as one image's file selection: with a different shape HDF5 maps
         * chunked selections element by element (20x slower). */
        hsize_t memory_dims[4] = {1, dims[1], dims[2], rank == 4 ? dims[3] : 1};
        if ((sp->memory_space = H5Screate_simple(rank, memory_dims, NULL)) < 0)
            return hdf5_fail(h, "cannot create a dataspace");
    } else {
        return imgset_fail("%s: /%s/images has rank %d, expected 4 (N,H,W,C), 3 (N,H,W) or 1 "
                           "(flat, with offsets and shapes)", h->uri, name, rank);
    }
    if (locate_raw_data(h, sp, total, name) < 0)
        return -1;
    if (!sp->ragged && sp->raw_offset < 0)
        check_deflate_chunks(sp, rank, dims);

    hid_t labels = open_dataset(h, name, "labels", &rank, dims);
    if (labels < 0)
        return -1;
    int rc = -1;
    if (check_integer(h, labels, name, "labels") < 0)
        goto done;
    if (rank != 1) {
        imgset_fail("%s: /%s/labels has rank %d, expected 1", h->uri, name, rank);
        goto done;
    }
    if ((int64_t)dims[0] != sp->count || dims[0] > (hsize_t)MAX_IMAGE_COUNT) {
        imgset_fail("%s: /%s/labels has %llu entries, /%s/images has %lld", h->uri, name,
                    (unsigned long long)dims[0], name, (long long)sp->count);
        goto done;
    }
    /* Read straight into int32: HDF5 clips out-of-range values, which the range check
     * below then rejects. */
    if (!(sp->labels_read = allocate_array(h, sp->count, sizeof *sp->labels_read, "labels")) ||
        read_integers(h, labels, H5T_NATIVE_INT32, sp->labels_read, sp->count, name,
                      "labels") < 0)
        goto done;
    for (int64_t i = 0; i < sp->count; i++)
        if (sp->labels_read[i] < 0 || sp->labels_read[i] >= IMGSET_MAX_CLASSES) {
            imgset_fail("%s: /%s/labels[%lld] = %d is not a label 0..%d", h->uri, name,
                        (long long)i, sp->labels_read[i], IMGSET_MAX_CLASSES - 1);
            goto done;
        }
    rc = 0;
done:
    close_id(&labels, H5Dclose);
    return rc;
}

/* Class names from the class_names attribute, or "0".."K-1" from the largest label. */
static int read_class_names(Hdf5Store *h, DatasetInfo *info)
{
    int32_t largest = -1;
    int64_t where_split = 0, where_index = 0;
    for (int split = 0; split < SPLIT_COUNT; split++)
        for (int64_t i = 0; i < h->split[split].count; i++)
            if (h->split[split].labels_read[i] > largest) {
                largest = h->split[split].labels_read[i];
                where_split = split;
                where_index = i;
            }
    int exists = has_attribute(h, "class_names");
    if (exists < 0)
        return -1;
    if (!exists) {
        if (largest < 0)
            return imgset_fail("%s: no class_names attribute and no labels to count classes "
                               "from", h->uri);
        int32_t k = largest + 1;
        char **names = calloc((size_t)k, sizeof *names);
        if (!names)
            return imgset_fail("out of memory");
        int rc = 0;
        for (int32_t i = 0; i < k && rc == 0; i++) {
            char text[16];
            snprintf(text, sizeof text, "%d", i);
            if (!(names[i] = strdup(text)))
                rc = imgset_fail("out of memory");
        }
        if (rc == 0)
            rc = dataset_info_set_classes(info, k, (const char *const *)names);
        free_strings(names, (size_t)k);
        return rc;
    }
    char **names = NULL;
    size_t n = 0;
    if (read_strings_attribute(h, "class_names", &names, &n) < 0)
        return -1;
    int rc = 0;
    if (n == 0)
        rc = imgset_fail("%s: attribute class_names is empty", h->uri);
    else if (largest >= (int64_t)n)
        rc = imgset_fail("%s: /%s/labels[%lld] = %d but class_names has only %zu names", h->uri,
                         split_names[where_split], (long long)where_index, largest, n);
    else
        rc = dataset_info_set_classes(info, (int32_t)n, (const char *const *)names);
    free_strings(names, n);
    return rc;
}

static void hdf5_release(Hdf5Store *h)
{
    for (int i = 0; i < SPLIT_COUNT; i++) {
        Hdf5Split *sp = &h->split[i];
        close_id(&sp->images, H5Dclose);
        close_id(&sp->labels, H5Dclose);
        close_id(&sp->offsets_dataset, H5Dclose);
        close_id(&sp->shapes_dataset, H5Dclose);
        close_id(&sp->group, H5Gclose);
        close_id(&sp->file_space, H5Sclose);
        close_id(&sp->memory_space, H5Sclose);
        free(sp->labels_read);
        free(sp->labels_written);
        free(sp->offsets);
        free(sp->shapes);
        if (sp->spool_fd >= 0)
            close(sp->spool_fd);
    }
    close_id(&h->file, H5Fclose);
    if (h->fd >= 0)
        close(h->fd);
    free(h->batch);
#ifdef IMGSET_HAVE_LIBDEFLATE
    if (h->inflater)
        libdeflate_free_decompressor(h->inflater);
#endif
    free(h->path);
    free(h->temp_path);
    free(h);
}

static Hdf5Store *hdf5_new(Store *s)
{
    Hdf5Store *h = calloc(1, sizeof *h);
    if (!h)
        return imgset_fail("out of memory"), NULL;
    h->uri = s->uri;
    h->file = H5I_INVALID_HID;
    h->fd = -1;
    for (int i = 0; i < SPLIT_COUNT; i++) {
        Hdf5Split *sp = &h->split[i];
        sp->images = sp->labels = sp->offsets_dataset = sp->shapes_dataset = H5I_INVALID_HID;
        sp->group = sp->file_space = sp->memory_space = H5I_INVALID_HID;
        sp->spool_fd = -1;
        sp->raw_offset = -1;
    }
    /* Failures become imgset_fail messages, never prints on stderr. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return h;
}

/* A file-access property list: close every object with the file. */
static hid_t file_access_plist(int writing)
{
    hid_t access = H5Pcreate(H5P_FILE_ACCESS);
    if (access < 0 || H5Pset_fclose_degree(access, H5F_CLOSE_STRONG) < 0)
        goto fail;
    /* The 1.8 file format: readable by every current h5py, and it stores attributes
     * larger than 64 KiB (many class names) densely. */
    if (writing && H5Pset_libver_bounds(access, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0)
        goto fail;
    return access;
fail:
    close_id(&access, H5Pclose);
    return H5I_INVALID_HID;
}

static int hdf5_open(Store *s, const char *location)
{
    Hdf5Store *h = hdf5_new(s);
    if (!h)
        return -1;
    int gzip_level;
    if (parse_location(h, location, &gzip_level) < 0)
        goto fail;
    h->fd = open(h->path, O_RDONLY | O_CLOEXEC);
    if (h->fd < 0) {
        imgset_fail("%s: cannot open %s: %s", s->uri, h->path, strerror(errno));
        goto fail;
    }
    htri_t is_hdf5 = H5Fis_hdf5(h->path);
    if (is_hdf5 <= 0) {
        if (is_hdf5 == 0)
            H5Eclear2(H5E_DEFAULT), imgset_fail("%s: %s is not an HDF5 file", s->uri, h->path);
        else
            hdf5_fail(h, "%s is not a readable HDF5 file", h->path);
        goto fail;
    }
    hid_t access = file_access_plist(0);
    if (access < 0) {
        hdf5_fail(h, "cannot set up file access");
        goto fail;
    }
    h->file = H5Fopen(h->path, H5F_ACC_RDONLY, access);
    if (h->file < 0)
        hdf5_fail(h, "cannot open %s as HDF5", h->path);   /* before any call clears the stack */
    H5Pclose(access);
    if (h->file < 0)
        goto fail;
    if (read_root_attributes(h, &s->info) < 0)
        goto fail;
    for (int split = 0; split < SPLIT_COUNT; split++) {
        if (open_split(h, split) < 0)
            goto fail;
        s->info.split[split].count = h->split[split].count;
        s->info.split[split].shape = h->split[split].shape;  /* zeros when ragged */
    }
    if (read_class_names(h, &s->info) < 0)
        goto fail;
    s->impl = h;
    return 0;
fail:
    hdf5_release(h);
    return -1;
}

static int hdf5_image_shape(Store *s, int split, int64_t index, ImageShape *shape)
{
    const Hdf5Split *sp = &((Hdf5Store *)s->impl)->split[split];
    if (!sp->ragged) {
        *shape = sp->shape;
        return 0;
    }
    const int32_t *hwc = sp->shapes + 3 * index;
    *shape = (ImageShape){hwc[0], hwc[1], hwc[2]};
    return 0;
}

static int hdf5_read_image(Store *s, int split, int64_t index, uint8_t *dst, size_t capacity,
                           ImageShape *shape, int32_t *label)
{
    Hdf5Store *h = s->impl;
    Hdf5Split *sp = &h->split[split];
    hdf5_image_shape(s, split, index, shape);
    size_t bytes = image_shape_bytes(*shape);
    if (bytes > capacity)
        return imgset_fail("%s: %s image %lld is %dx%dx%d (%zu bytes), the buffer holds %zu",
                           s->uri, split_names[split], (long long)index, shape->height,
                           shape->width, shape->channels, bytes, capacity);
    *label = sp->labels_read[index];
    int64_t start = sp->ragged ? sp->offsets[index] : index * (int64_t)bytes;
    if (sp->raw_offset >= 0)
        return pread_exact(h, dst, bytes, sp->raw_offset + start);
    if (sp->deflate_chunks) {
        int rc = read_chunk(h, sp, split, index, dst, bytes);
        if (rc <= 0)
            return rc;
    }

    /* Chunked, compressed or never written: a hyperslab read through HDF5, which is not
     * thread-safe: one call at a time in the process (loader workers each have a Store). */
    pthread_mutex_lock(&hdf5_library_lock);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hsize_t offset[4] = {(hsize_t)start, 0, 0, 0}, count[4] = {(hsize_t)bytes, 1, 1, 1};
    hid_t memory_space = sp->memory_space;
    if (!sp->ragged) {
        offset[0] = (hsize_t)index;
        count[0] = 1;
        count[1] = (hsize_t)shape->height;
        count[2] = (hsize_t)shape->width;
        count[3] = (hsize_t)shape->channels;   /* unused for (N,H,W) */
    } else if ((memory_space = H5Screate_simple(1, count, NULL)) < 0) {
        pthread_mutex_unlock(&hdf5_library_lock);
        return hdf5_fail(h, "cannot create a dataspace");
    }
    int rc = 0;
    if (H5Sselect_hyperslab(sp->file_space, H5S_SELECT_SET, offset, NULL, count, NULL) < 0 ||
        H5Dread(sp->images, H5T_NATIVE_UINT8, memory_space, sp->file_space, H5P_DEFAULT,
                dst) < 0)
        rc = hdf5_fail(h, "/%s/images: cannot read image %lld", split_names[split],
                       (long long)index);
    if (memory_space != sp->memory_space)
        H5Sclose(memory_space);
    pthread_mutex_unlock(&hdf5_library_lock);
    return rc;
}

static void hdf5_close(Store *s)
{
    if (s->impl)
        hdf5_release(s->impl);
    s->impl = NULL;
}

/* ---- writing -------------------------------------------------------------------------- */

/* Create dataset `what` in the split's group: element type, dims, gzip chunks when asked. */
static hid_t create_dataset(Hdf5Store *h, Hdf5Split *sp, const char *split_name,
                            const char *what, hid_t type, int rank, const hsize_t *dims,
                            const hsize_t *chunk)
{
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t create = H5Pcreate(H5P_DATASET_CREATE);
    hid_t dataset = H5I_INVALID_HID;
    int ok = space >= 0 && create >= 0;
    if (ok && chunk)
        ok = H5Pset_chunk(create, rank, chunk) >= 0 &&
             H5Pset_deflate(create, (unsigned)h->gzip_level) >= 0;
    else if (ok)
        ok = H5Pset_layout(create, H5D_CONTIGUOUS) >= 0;
    if (ok)
        dataset = H5Dcreate2(sp->group, what, type, space, H5P_DEFAULT, create, H5P_DEFAULT);
    if (dataset < 0)
        hdf5_fail(h, "cannot create /%s/%s", split_name, what);
    close_id(&create, H5Pclose);
    close_id(&space, H5Sclose);
    return dataset;
}

/* Write `count` rows starting at row `first` of a dataset from memory. */
static int write_rows(Hdf5Store *h, hid_t dataset, hid_t memory_type, const void *src,
                      int64_t first, int64_t count, const char *split_name, const char *what)
{
    if (count == 0)
        return 0;
    hid_t file_space = H5Dget_space(dataset), memory_space = H5I_INVALID_HID;
    hsize_t dims[4], start[4] = {(hsize_t)first, 0, 0, 0};
    int rank = file_space >= 0 ? H5Sget_simple_extent_ndims(file_space) : -1;
    int rc = -1;
    if (rank >= 1 && rank <= 4 && H5Sget_simple_extent_dims(file_space, dims, NULL) >= 0) {
        dims[0] = (hsize_t)count;
        /* Memory shaped like the selection: HDF5 then maps chunks without visiting every
         * element. */
        memory_space = H5Screate_simple(rank, dims, NULL);
        if (memory_space >= 0 &&
            H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, NULL, dims, NULL) >= 0 &&
            H5Dwrite(dataset, memory_type, memory_space, file_space, H5P_DEFAULT, src) >= 0)
            rc = 0;
    }
    if (rc < 0)
        hdf5_fail(h, "cannot write /%s/%s rows %lld..%lld", split_name, what, (long long)first,
                  (long long)(first + count - 1));
    close_id(&memory_space, H5Sclose);
    close_id(&file_space, H5Sclose);
    return rc;
}

/* Hand the buffered images of a split to HDF5 (fixed) or to the spool file (ragged). */
static int flush_batch(Hdf5Store *h, int split)
{
    Hdf5Split *sp = &h->split[split];
    if (h->batch_images == 0)
        return 0;
    if (sp->ragged) {
        if (write_all(sp->spool_fd, h->batch, h->batch_used) < 0)
            return imgset_fail("%s: writing the temporary pixel spool: %s", h->uri,
                               strerror(errno));
    } else if (write_rows(h, sp->images, H5T_NATIVE_UINT8, h->batch, sp->flushed,
                          h->batch_images, split_names[split], "images") < 0) {
        return -1;
    }
    sp->flushed += h->batch_images;
    h->batch_used = 0;
    h->batch_images = 0;
    return 0;
}

/* A ragged split's pixels, all spooled: create its flat dataset and copy them in. */
static int write_ragged_pixels(Hdf5Store *h, Hdf5Split *sp, const char *split_name)
{
    hsize_t total = (hsize_t)sp->offsets[sp->count];
    hsize_t chunk = total < RAGGED_CHUNK_BYTES ? total : RAGGED_CHUNK_BYTES;
    sp->images = create_dataset(h, sp, split_name, "images", H5T_STD_U8LE, 1, &total,
                                h->gzip_level && total > 0 ? &chunk : NULL);
    if (sp->images < 0)
        return -1;
    for (hsize_t done = 0; done < total;) {
        size_t n = total - done < h->batch_capacity ? (size_t)(total - done) : h->batch_capacity;
        ssize_t got = pread(sp->spool_fd, h->batch, n, (off_t)done);
        if (got <= 0)
            return imgset_fail("%s: reading back the temporary pixel spool: %s", h->uri,
                               got < 0 ? strerror(errno) : "short file");
        if (write_rows(h, sp->images, H5T_NATIVE_UINT8, h->batch, (int64_t)done, got,
                       split_name, "images") < 0)
            return -1;
        done += (hsize_t)got;
    }
    return 0;
}

/* Every image of a split is in: write what was kept in memory and close its datasets. */
static int finish_split(Hdf5Store *h, int split)
{
    Hdf5Split *sp = &h->split[split];
    const char *name = split_names[split];
    if (flush_batch(h, split) < 0)
        return -1;
    if (sp->ragged) {
        if (write_ragged_pixels(h, sp, name) < 0 ||
            write_rows(h, sp->offsets_dataset, H5T_NATIVE_INT64, sp->offsets, 0, sp->count + 1,
                       name, "offsets") < 0 ||
            write_rows(h, sp->shapes_dataset, H5T_NATIVE_INT32, sp->shapes, 0, sp->count, name,
                       "shapes") < 0)
            return -1;
        if (sp->spool_fd >= 0)
            close(sp->spool_fd);
        sp->spool_fd = -1;
    }
    if (write_rows(h, sp->labels, H5T_NATIVE_INT64, sp->labels_written, 0, sp->count, name,
                   "labels") < 0)
        return -1;
    close_id(&sp->images, H5Dclose);
    close_id(&sp->labels, H5Dclose);
    close_id(&sp->offsets_dataset, H5Dclose);
    close_id(&sp->shapes_dataset, H5Dclose);
    close_id(&sp->group, H5Gclose);
    sp->finished = 1;
    return 0;
}

/* An anonymous file beside the destination for a ragged split's pixels (gone on exit). */
static int open_spool(Hdf5Store *h, Hdf5Split *sp)
{
    char *dir = directory_of(h->path);
    if (!dir)
        return imgset_fail("out of memory");
    sp->spool_fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (sp->spool_fd < 0) {
        /* Filesystems without O_TMPFILE: a named file, unlinked at once. */
        char name[4096];
        snprintf(name, sizeof name, "%s.spool-XXXXXX", h->temp_path);
        sp->spool_fd = mkostemp(name, O_CLOEXEC);
        if (sp->spool_fd >= 0)
            unlink(name);
    }
    free(dir);
    if (sp->spool_fd < 0)
        return imgset_fail("%s: cannot create a temporary pixel spool: %s", h->uri,
                           strerror(errno));
    return 0;
}

/* Create a split's group and datasets (the sizes are known) and its in-memory arrays. */
static int create_split(Hdf5Store *h, int split, const SplitInfo *info)
{
    Hdf5Split *sp = &h->split[split];
    const char *name = split_names[split];
    sp->count = info->count;
    sp->ragged = !split_is_fixed(info);
    sp->shape = info->shape;
    sp->image_bytes = image_shape_bytes(info->shape);
    if ((sp->group = H5Gcreate2(h->file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0)
        return hdf5_fail(h, "cannot create group /%s", name);
    if (!(sp->labels_written = allocate_array(h, sp->count, sizeof *sp->labels_written,
                                              "labels")))
        return -1;
    hsize_t n = (hsize_t)sp->count;
    if ((sp->labels = create_dataset(h, sp, name, "labels", H5T_STD_I64LE, 1, &n, NULL)) < 0)
        return -1;
    if (sp->ragged) {
        hsize_t offsets_dims[1] = {n + 1}, shapes_dims[2] = {n, 3};
        size_t shape_entries;
        if (size_mul((size_t)sp->count, 3, &shape_entries) < 0 ||
            !(sp->offsets = allocate_array(h, sp->count + 1, sizeof *sp->offsets, "offsets")) ||
            !(sp->shapes = allocate_array(h, (int64_t)shape_entries, sizeof *sp->shapes,
                                          "shapes")))
            return -1;
        sp->offsets[0] = 0;
        if ((sp->offsets_dataset = create_dataset(h, sp, name, "offsets", H5T_STD_I64LE, 1,
                                                  offsets_dims, NULL)) < 0 ||
            (sp->shapes_dataset = create_dataset(h, sp, name, "shapes", H5T_STD_I32LE, 2,
                                                 shapes_dims, NULL)) < 0 ||
            open_spool(h, sp) < 0)
            return -1;
    } else {
        hsize_t dims[4] = {n, (hsize_t)sp->shape.height, (hsize_t)sp->shape.width,
                           (hsize_t)sp->shape.channels};
        hsize_t chunk[4] = {1, dims[1], dims[2], dims[3]};
        /* One image per chunk; an empty split has no room for a chunk. */
        sp->images = create_dataset(h, sp, name, "images", H5T_STD_U8LE, 4, dims,
                                    h->gzip_level && n > 0 ? chunk : NULL);
        if (sp->images < 0)
            return -1;
    }
    if (sp->count == 0)
        return finish_split(h, split);
    return 0;
}

static int hdf5_create(Store *s, const char *location, const DatasetInfo *info)
{
    Hdf5Store *h = hdf5_new(s);
    if (!h)
        return -1;
    if (parse_location(h, location, &h->gzip_level) < 0)
        goto fail;
    if (h->gzip_level && H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0) {
        imgset_fail("%s: this HDF5 library has no gzip (deflate) filter", s->uri);
        goto fail;
    }
    struct stat st;
    if (lstat(h->path, &st) == 0) {
        imgset_fail("%s: %s already exists", s->uri, h->path);
        goto fail;
    }
    if (errno != ENOENT) {
        imgset_fail("%s: cannot check %s: %s", s->uri, h->path, strerror(errno));
        goto fail;
    }
    h->batch_capacity = WRITE_BATCH_BYTES;
    if (!(h->batch = malloc(h->batch_capacity))) {
        imgset_fail("out of memory for the write buffer");
        goto fail;
    }
    hid_t access = file_access_plist(1);
    if (access < 0) {
        hdf5_fail(h, "cannot set up file access");
        goto fail;
    }
    size_t len = strlen(h->path) + 32;
    if (!(h->temp_path = malloc(len))) {
        H5Pclose(access);
        imgset_fail("out of memory");
        goto fail;
    }
    snprintf(h->temp_path, len, "%s.tmp-%ld", h->path, (long)getpid());
    h->file = H5Fcreate(h->temp_path, H5F_ACC_EXCL, H5P_DEFAULT, access);
    if (h->file < 0)
        hdf5_fail(h, "cannot create %s", h->temp_path);
    H5Pclose(access);
    if (h->file < 0) {
        free(h->temp_path);   /* it is not ours: never unlink it */
        h->temp_path = NULL;
        goto fail;
    }
    if (write_string_attribute(h, h->file, "imgset_format", HDF5_FORMAT_NAME) < 0 ||
        write_int_attribute(h, h->file, "imgset_version", HDF5_FORMAT_VERSION) < 0 ||
        write_string_attribute(h, h->file, "name", info->name) < 0 ||
        write_strings_attribute(h, h->file, "class_names", info->class_names,
                                info->num_classes) < 0)
        goto fail;
    for (int split = 0; split < SPLIT_COUNT; split++)
        if (create_split(h, split, &info->split[split]) < 0)
            goto fail;
    s->impl = h;
    return 0;
fail:
    if (h->temp_path) {
        close_id(&h->file, H5Fclose);
        unlink(h->temp_path);
    }
    hdf5_release(h);
    return -1;
}

static int hdf5_write_image(Store *s, int split, const uint8_t *pixels, ImageShape shape,
                            int32_t label)
{
    Hdf5Store *h = s->impl;
    Hdf5Split *sp = &h->split[split];
    int64_t index = s->written[split];
    size_t bytes = image_shape_bytes(shape);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    if (h->batch_used + bytes > h->batch_capacity) {
        if (flush_batch(h, split) < 0)
            return -1;
        if (bytes > h->batch_capacity) {   /* one image larger than the whole buffer */
            uint8_t *bigger = realloc(h->batch, bytes);
            if (!bigger)
                return imgset_fail("%s: out of memory for a %zu-byte image", s->uri, bytes);
            h->batch = bigger;
            h->batch_capacity = bytes;
        }
    }
    memcpy(h->batch + h->batch_used, pixels, bytes);
    h->batch_used += bytes;
    h->batch_images++;
    sp->labels_written[index] = label;
    if (sp->ragged) {
        if (sp->offsets[index] > INT64_MAX - (int64_t)bytes)
            return imgset_fail("%s: %s split is too large", s->uri, split_names[split]);
        sp->offsets[index + 1] = sp->offsets[index] + (int64_t)bytes;
        sp->shapes[3 * index] = shape.height;
        sp->shapes[3 * index + 1] = shape.width;
        sp->shapes[3 * index + 2] = shape.channels;
    }
    if (index + 1 == sp->count)
        return finish_split(h, split);
    return 0;
}

/* fsync a file or directory by name. */
static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int hdf5_commit(Store *s)
{
    Hdf5Store *h = s->impl;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    for (int split = 0; split < SPLIT_COUNT; split++)
        if (!h->split[split].finished)
            return imgset_fail("%s: %s split was not finished", s->uri, split_names[split]);
    if (H5Fflush(h->file, H5F_SCOPE_GLOBAL) < 0)
        return hdf5_fail(h, "cannot flush %s", h->temp_path);
    herr_t closed = H5Fclose(h->file);
    h->file = H5I_INVALID_HID;
    if (closed < 0)
        return hdf5_fail(h, "cannot close %s", h->temp_path);
    if (fsync_path(h->temp_path, O_RDONLY) < 0)
        return imgset_fail("%s: fsync %s: %s", s->uri, h->temp_path, strerror(errno));
    /* Never replace a file that appeared while we wrote. */
    if (renameat2(AT_FDCWD, h->temp_path, AT_FDCWD, h->path, RENAME_NOREPLACE) < 0) {
        if (errno == EEXIST)
            return imgset_fail("%s: %s already exists", s->uri, h->path);
        if (errno != EINVAL && errno != ENOSYS)
            return imgset_fail("%s: rename %s to %s: %s", s->uri, h->temp_path, h->path,
                               strerror(errno));
        struct stat st;
        if (lstat(h->path, &st) == 0)
            return imgset_fail("%s: %s already exists", s->uri, h->path);
        if (rename(h->temp_path, h->path) < 0)
            return imgset_fail("%s: rename %s to %s: %s", s->uri, h->temp_path, h->path,
                               strerror(errno));
    }
    char *dir = directory_of(h->path);
    if (dir)
        fsync_path(dir, O_RDONLY | O_DIRECTORY);   /* make the rename durable */
    free(dir);
    free(h->temp_path);
    h->temp_path = NULL;
    hdf5_release(h);
    s->impl = NULL;
    return 0;
}

static void hdf5_abort(Store *s)
{
    Hdf5Store *h = s->impl;
    if (!h)
        return;
    /* Close the datasets before the file: a file closed first stays open inside HDF5 until
     * its last object goes, and a flush that fails then (disk full) leaves it half-closed. */
    char *temp = h->temp_path ? strdup(h->temp_path) : NULL;
    hdf5_release(h);
    if (temp)
        unlink(temp);
    free(temp);
    s->impl = NULL;
}

/* The serial HDF5 library is not thread-safe, and loader workers each open their own Store:
 * every entry point that calls into the library holds hdf5_library_lock. read_image takes it
 * only on the chunked path; contiguous data is read with pread() and needs no lock. */
/* HDF5 closes whatever is still open at exit; after a failed write (disk full) that close
 * crashes inside the library, so we close our own objects and skip its exit handler. */
static void hdf5_library_init(void)
{
    static int done;
    if (!done++)
        H5dont_atexit();
}

static int locked_open(Store *s, const char *location)
{
    pthread_mutex_lock(&hdf5_library_lock);
    hdf5_library_init();
    int rc = hdf5_open(s, location);
    pthread_mutex_unlock(&hdf5_library_lock);
    return rc;
}

static void locked_close(Store *s)
{
    pthread_mutex_lock(&hdf5_library_lock);
    hdf5_close(s);
    pthread_mutex_unlock(&hdf5_library_lock);
}

static int locked_create(Store *s, const char *location, const DatasetInfo *info)
{
    pthread_mutex_lock(&hdf5_library_lock);
    hdf5_library_init();
    int rc = hdf5_create(s, location, info);
    pthread_mutex_unlock(&hdf5_library_lock);
    return rc;
}

static int locked_write_image(Store *s, int split, const uint8_t *pixels, ImageShape shape,
                              int32_t label)
{
    pthread_mutex_lock(&hdf5_library_lock);
    int rc = hdf5_write_image(s, split, pixels, shape, label);
    pthread_mutex_unlock(&hdf5_library_lock);
    return rc;
}

static int locked_commit(Store *s)
{
    pthread_mutex_lock(&hdf5_library_lock);
    int rc = hdf5_commit(s);
    pthread_mutex_unlock(&hdf5_library_lock);
    return rc;
}

static void locked_abort(Store *s)
{
    pthread_mutex_lock(&hdf5_library_lock);
    hdf5_abort(s);
    pthread_mutex_unlock(&hdf5_library_lock);
}

const StoreOps store_hdf5_ops = {
    .scheme = "hdf5",
    .alias = NULL,
    .summary = "hdf5:FILE[?compression=gzip] — one HDF5 file, h5py layout "
               "(/train/images (N,H,W,C) uint8, /train/labels)",
    .open = locked_open,
    .image_shape = hdf5_image_shape,
    .read_image = hdf5_read_image,
    .close = locked_close,
    .create = locked_create,
    .write_image = locked_write_image,
    .commit = locked_commit,
    .abort = locked_abort,
};
