/* npy.c — numpy .npy header parsing and formatting, read-only mapping and a sequential writer. */
#include "npy.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "error.h"

static const uint8_t npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

#define NPY_ALIGN 64                 /* numpy's ARRAY_ALIGN: the data starts at a multiple */
#define NPY_DICT_MAX 1024            /* our formatted dicts: 32 dims of 20 digits fit easily */

const char *npy_dtype_name(NpyDtype dtype)
{
    switch (dtype) {
    case NPY_DTYPE_UINT8: return "uint8";
    case NPY_DTYPE_INT8: return "int8";
    case NPY_DTYPE_INT32: return "int32";
    case NPY_DTYPE_INT64: return "int64";
    default: return "unsupported";
    }
}

const char *npy_dtype_descr(NpyDtype dtype)
{
    switch (dtype) {
    case NPY_DTYPE_UINT8: return "|u1";
    case NPY_DTYPE_INT8: return "|i1";
    case NPY_DTYPE_INT32: return "<i4";
    case NPY_DTYPE_INT64: return "<i8";
    default: return NULL;
    }
}

static size_t dtype_item_size(NpyDtype dtype)
{
    switch (dtype) {
    case NPY_DTYPE_UINT8:
    case NPY_DTYPE_INT8: return 1;
    case NPY_DTYPE_INT32: return 4;
    case NPY_DTYPE_INT64: return 8;
    default: return 0;
    }
}

/* Decode a descr string into our dtype and its item size (0 when not a plain numeric type).
 * Multi-byte types must be little-endian ('<'); one-byte types take any byte-order mark. */
static void descr_decode(const char *descr, NpyDtype *dtype, size_t *item_size)
{
    *dtype = NPY_DTYPE_OTHER;
    *item_size = 0;
    size_t n = strlen(descr);
    if (n < 3 || !strchr("<>|=", descr[0]))
        return;
    char order = descr[0], kind = descr[1];
    size_t count = 0;
    for (size_t i = 2; i < n; i++) {
        if (descr[i] < '0' || descr[i] > '9' || i > 6)
            return;                 /* '<M8[ns]' and friends: unknown size, refused later */
        count = count * 10 + (size_t)(descr[i] - '0');
    }
    if (strchr("biufcSV", kind))
        *item_size = count;
    else if (kind == 'U')
        *item_size = 4 * count;     /* UCS-4 characters */
    if (count == 1 && (order == '<' || order == '|' || order == '>')) {
        if (kind == 'u')
            *dtype = NPY_DTYPE_UINT8;
        else if (kind == 'i')
            *dtype = NPY_DTYPE_INT8;
    } else if (order == '<' && kind == 'i' && count == 4) {
        *dtype = NPY_DTYPE_INT32;
    } else if (order == '<' && kind == 'i' && count == 8) {
        *dtype = NPY_DTYPE_INT64;
    }
}

/* ---- the dict parser ----------------------------------------------------------------- */

/* A cursor over the header's dict text; every read is bounds-checked against end. */
typedef struct DictParser {
    const char *p;
    const char *end;
    const char *name;        /* file name for messages */
} DictParser;

static void skip_space(DictParser *d)
{
    while (d->p < d->end && (*d->p == ' ' || *d->p == '\t' || *d->p == '\n' || *d->p == '\r'))
        d->p++;
}

/* Consume character c (after optional spaces) or fail saying what was expected. */
static int expect_char(DictParser *d, char c, const char *where)
{
    skip_space(d);
    if (d->p >= d->end)
        return imgset_fail("file %s: .npy header ends early (expected '%c' %s)", d->name, c,
                           where);
    if (*d->p != c)
        return imgset_fail("file %s: malformed .npy header: expected '%c' %s, found '%c' "
                           "(0x%02x)", d->name, c, where, *d->p >= 0x20 && *d->p < 0x7f
                           ? *d->p : '?', (unsigned char)*d->p);
    d->p++;
    return 0;
}

/* 1 (and consume it) when the next non-space character is c. */
static int accept_char(DictParser *d, char c)
{
    skip_space(d);
    if (d->p < d->end && *d->p == c) {
        d->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string without escapes, of printable ASCII, into out (cap bytes). */
static int parse_string(DictParser *d, char *out, size_t cap, const char *what)
{
    skip_space(d);
    if (d->p >= d->end || (*d->p != '\'' && *d->p != '"'))
        return imgset_fail("file %s: malformed .npy header: expected a quoted string for %s",
                           d->name, what);
    char quote = *d->p++;
    size_t n = 0;
    while (d->p < d->end && *d->p != quote) {
        unsigned char c = (unsigned char)*d->p;
        if (c == '\\' || c < 0x20 || c >= 0x7f)
            return imgset_fail("file %s: malformed .npy header: unsupported character 0x%02x "
                               "in %s", d->name, c, what);
        if (n + 1 >= cap)
            return imgset_fail("file %s: malformed .npy header: %s is longer than %zu "
                               "characters", d->name, what, cap - 1);
        out[n++] = (char)c;
        d->p++;
    }
    if (d->p >= d->end)
        return imgset_fail("file %s: malformed .npy header: unterminated string in %s",
                           d->name, what);
    d->p++;
    out[n] = '\0';
    return 0;
}

/* True or False. */
static int parse_bool(DictParser *d, int *out)
{
    skip_space(d);
    size_t left = (size_t)(d->end - d->p);
    if (left >= 4 && memcmp(d->p, "True", 4) == 0) {
        d->p += 4;
        *out = 1;
    } else if (left >= 5 && memcmp(d->p, "False", 5) == 0) {
        d->p += 5;
        *out = 0;
    } else {
        return imgset_fail("file %s: malformed .npy header: fortran_order must be True or "
                           "False", d->name);
    }
    if (d->p < d->end && (*d->p == '_' || (*d->p >= 'a' && *d->p <= 'z') ||
                          (*d->p >= 'A' && *d->p <= 'Z') || (*d->p >= '0' && *d->p <= '9')))
        return imgset_fail("file %s: malformed .npy header: fortran_order must be True or "
                           "False", d->name);
    return 0;
}

/* A non-negative decimal integer as Python writes it (no leading zeros; "L" of Python 2
 * accepted), at most INT64_MAX. */
static int parse_dim(DictParser *d, int64_t *out)
{
    skip_space(d);
    if (d->p >= d->end || *d->p < '0' || *d->p > '9') {
        if (d->p < d->end && *d->p == '-')
            return imgset_fail("file %s: .npy header has a negative dimension", d->name);
        return imgset_fail("file %s: malformed .npy header: expected a dimension in 'shape'",
                           d->name);
    }
    const char *start = d->p;
    uint64_t v = 0;
    while (d->p < d->end && *d->p >= '0' && *d->p <= '9') {
        uint64_t digit = (uint64_t)(*d->p - '0');
        if (v > ((uint64_t)INT64_MAX - digit) / 10)
            return imgset_fail("file %s: .npy header has a dimension larger than 2^63-1",
                               d->name);
        v = v * 10 + digit;
        d->p++;
    }
    if (d->p - start > 1 && *start == '0')
        return imgset_fail("file %s: malformed .npy header: dimension with a leading zero",
                           d->name);
    if (d->p < d->end && (*d->p == 'L' || *d->p == 'l'))
        d->p++;
    *out = (int64_t)v;
    return 0;
}

/* A Python tuple of dimensions: (), (N,), (N, M), (N, M,) … */
static int parse_shape(DictParser *d, NpyHeader *h)
{
    if (expect_char(d, '(', "to open 'shape'") < 0)
        return -1;
    h->ndim = 0;
    if (accept_char(d, ')'))
        return 0;
    for (;;) {
        if (h->ndim >= NPY_MAX_DIMS)
            return imgset_fail("file %s: .npy header has more than %d dimensions", d->name,
                               NPY_MAX_DIMS);
        if (parse_dim(d, &h->shape[h->ndim]) < 0)
            return -1;
        h->ndim++;
        if (accept_char(d, ')')) {
            if (h->ndim == 1)     /* "(5)" is an int in Python, not a tuple */
                return imgset_fail("file %s: malformed .npy header: 'shape' (N) is not a "
                                   "tuple (expected (N,))", d->name);
            return 0;
        }
        if (expect_char(d, ',', "between dimensions in 'shape'") < 0)
            return -1;
        if (accept_char(d, ')'))
            return 0;
    }
}

/* The dict {'descr': …, 'fortran_order': …, 'shape': …} with exactly these keys. */
static int parse_dict(DictParser *d, NpyHeader *h)
{
    int have_descr = 0, have_order = 0, have_shape = 0;
    if (expect_char(d, '{', "at the start of the header") < 0)
        return -1;
    while (!accept_char(d, '}')) {
        char key[32];
        if (parse_string(d, key, sizeof key, "a key") < 0 ||
            expect_char(d, ':', "after a key") < 0)
            return -1;
        if (strcmp(key, "descr") == 0) {
            if (have_descr++)
                return imgset_fail("file %s: .npy header has 'descr' twice", d->name);
            skip_space(d);
            if (d->p < d->end && (*d->p == '[' || *d->p == '{'))
                return imgset_fail("file %s: structured .npy arrays are not supported (descr "
                                   "must be a plain dtype such as '|u1')", d->name);
            if (parse_string(d, h->descr, sizeof h->descr, "'descr'") < 0)
                return -1;
        } else if (strcmp(key, "fortran_order") == 0) {
            if (have_order++)
                return imgset_fail("file %s: .npy header has 'fortran_order' twice", d->name);
            if (parse_bool(d, &h->fortran_order) < 0)
                return -1;
        } else if (strcmp(key, "shape") == 0) {
            if (have_shape++)
                return imgset_fail("file %s: .npy header has 'shape' twice", d->name);
            if (parse_shape(d, h) < 0)
                return -1;
        } else {
            return imgset_fail("file %s: .npy header has an unknown key '%s' (expected descr, "
                               "fortran_order, shape)", d->name, key);
        }
        if (accept_char(d, ','))
            continue;
        if (expect_char(d, '}', "or ',' after a value") < 0)
            return -1;
        break;
    }
    if (!have_descr || !have_order || !have_shape)
        return imgset_fail("file %s: .npy header lacks '%s'", d->name,
                           !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
    skip_space(d);
    if (d->p != d->end)
        return imgset_fail("file %s: malformed .npy header: unexpected text after the dict",
                           d->name);
    return 0;
}

int npy_parse_header(const uint8_t *buf, size_t len, const char *name, NpyHeader *out)
{
    NpyHeader h;
    memset(&h, 0, sizeof h);
    memset(out, 0, sizeof *out);
    if (len < sizeof npy_magic || memcmp(buf, npy_magic, sizeof npy_magic) != 0)
        return imgset_fail("file %s: not a .npy file (bad magic, expected \"\\x93NUMPY\")",
                           name);
    if (len < 10)
        return imgset_fail("file %s: truncated .npy header (%zu bytes)", name, len);
    h.version_major = buf[6];
    h.version_minor = buf[7];
    if (h.version_minor != 0 || h.version_major < 1 || h.version_major > 3)
        return imgset_fail("file %s: unsupported .npy format version %d.%d (expected 1.0, 2.0 "
                           "or 3.0)", name, h.version_major, h.version_minor);
    size_t prefix, dict_len;
    if (h.version_major == 1) {
        prefix = 10;
        dict_len = (size_t)buf[8] | (size_t)buf[9] << 8;
    } else {
        if (len < 12)
            return imgset_fail("file %s: truncated .npy header (%zu bytes)", name, len);
        prefix = 12;
        dict_len = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 |
                   (size_t)buf[11] << 24;
    }
    if (dict_len > NPY_HEADER_MAX)
        return imgset_fail("file %s: .npy header length %zu is larger than the %u allowed",
                           name, dict_len, NPY_HEADER_MAX);
    if (dict_len > len - prefix)
        return imgset_fail("file %s: truncated .npy header (needs %zu bytes, has %zu)", name,
                           prefix + dict_len, len);
    DictParser d = {(const char *)buf + prefix, (const char *)buf + prefix + dict_len, name};
    if (parse_dict(&d, &h) < 0)
        return -1;
    if (h.fortran_order)
        return imgset_fail("file %s: Fortran-order arrays are not supported (save a C-order "
                           "array, e.g. numpy.ascontiguousarray(a))", name);
    h.data_offset = prefix + dict_len;
    descr_decode(h.descr, &h.dtype, &h.item_size);
    size_t count = 1;
    for (int i = 0; i < h.ndim; i++)
        if (size_mul(count, (size_t)h.shape[i], &count) < 0)
            return imgset_fail("file %s: .npy shape is too large (element count overflows)",
                               name);
    h.element_count = count;
    size_t total;
    if (size_mul(count, h.item_size, &h.data_bytes) < 0 ||
        size_add(h.data_offset, h.data_bytes, &total) < 0 || total > INT64_MAX)
        return imgset_fail("file %s: .npy shape is too large (byte size overflows)", name);
    *out = h;
    return 0;
}

int npy_check_file_size(const NpyHeader *h, uint64_t file_size, const char *name)
{
    if (h->item_size == 0)
        return imgset_fail("file %s: unsupported .npy dtype '%s'", name, h->descr);
    uint64_t need = (uint64_t)h->data_offset + (uint64_t)h->data_bytes;
    if (file_size < need)
        return imgset_fail("file %s: truncated: the .npy header needs %" PRIu64 " bytes, the "
                           "file has %" PRIu64, name, need, file_size);
    if (file_size > need)
        return imgset_fail("file %s: %" PRIu64 " unexpected bytes after the array data (the "
                           ".npy header accounts for %" PRIu64 " of %" PRIu64 ")", name,
                           file_size - need, need, file_size);
    return 0;
}

int npy_expect_dtype(const NpyHeader *h, unsigned accepted, const char *expected,
                     const char *name)
{
    if (h->dtype != NPY_DTYPE_OTHER && (accepted & NPY_MASK(h->dtype)))
        return 0;
    return imgset_fail("file %s: expected dtype %s, found '%s'", name, expected, h->descr);
}

/* ---- formatting ---------------------------------------------------------------------- */

/* The dict text numpy writes, e.g. "{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }".
 * Returns its length, or 0 when it does not fit in cap. */
static size_t format_dict(char *out, size_t cap, NpyDtype dtype, int ndim, const int64_t *shape)
{
    const char *descr = npy_dtype_descr(dtype);
    if (!descr || ndim < 0 || ndim > NPY_MAX_DIMS)
        return 0;
    size_t n = 0;
    int w = snprintf(out, cap, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    if (w < 0 || (size_t)w >= cap)
        return 0;
    n = (size_t)w;
    for (int i = 0; i < ndim; i++) {
        w = snprintf(out + n, cap - n, "%s%" PRId64, i ? ", " : "", shape[i]);
        if (w < 0 || (size_t)w >= cap - n)
            return 0;
        n += (size_t)w;
    }
    w = snprintf(out + n, cap - n, "%s), }", ndim == 1 ? "," : "");
    if (w < 0 || (size_t)w >= cap - n)
        return 0;
    return n + (size_t)w;
}

size_t npy_header_size(NpyDtype dtype, int ndim, const int64_t *shape)
{
    char dict[NPY_DICT_MAX];
    size_t n = format_dict(dict, sizeof dict, dtype, ndim, shape);
    if (n == 0)
        return 0;
    size_t total = 10 + n + 1;      /* prefix, dict, '\n' */
    if (total - 10 > 65535)
        total = 12 + n + 1;
    return (total + NPY_ALIGN - 1) / NPY_ALIGN * NPY_ALIGN;
}

int npy_format_header(uint8_t *buf, size_t total_len, NpyDtype dtype, int ndim,
                      const int64_t *shape)
{
    char dict[NPY_DICT_MAX];
    for (int i = 0; i < ndim && i < NPY_MAX_DIMS; i++)
        if (shape[i] < 0)
            return imgset_fail("npy: negative dimension %" PRId64, shape[i]);
    size_t n = format_dict(dict, sizeof dict, dtype, ndim, shape);
    if (n == 0)
        return imgset_fail("npy: cannot format a header for dtype %s with %d dimensions",
                           npy_dtype_name(dtype), ndim);
    size_t prefix = total_len - 10 <= 65535 ? 10 : 12;
    if (total_len < prefix + n + 1 || total_len - prefix > UINT32_MAX)
        return imgset_fail("npy: a %zu-byte header cannot hold the %zu-byte dict", total_len,
                           n);
    size_t dict_len = total_len - prefix;
    memcpy(buf, npy_magic, sizeof npy_magic);
    buf[6] = prefix == 10 ? 1 : 2;
    buf[7] = 0;
    buf[8] = (uint8_t)dict_len;
    buf[9] = (uint8_t)(dict_len >> 8);
    if (prefix == 12) {
        buf[10] = (uint8_t)(dict_len >> 16);
        buf[11] = (uint8_t)(dict_len >> 24);
    }
    memcpy(buf + prefix, dict, n);
    memset(buf + prefix + n, ' ', dict_len - n - 1);
    buf[total_len - 1] = '\n';
    return 0;
}

/* ---- mapping ------------------------------------------------------------------------- */

int npy_map(NpyMap *m, const char *path, int advice)
{
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return imgset_fail("file %s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return imgset_fail("file %s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return imgset_fail("file %s: not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return imgset_fail("file %s: empty (0 bytes), not a .npy file", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return imgset_fail("file %s: too large to map", path);
    }
    size_t length = (size_t)st.st_size;
    void *base = mmap(NULL, length, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);              /* the mapping keeps the file */
    if (base == MAP_FAILED)
        return imgset_fail("file %s: cannot mmap %zu bytes: %s", path, length, strerror(e));
    NpyHeader h;
    if (npy_parse_header(base, length, path, &h) < 0 ||
        npy_check_file_size(&h, (uint64_t)length, path) < 0) {
        munmap(base, length);
        return -1;
    }
    if (advice != MADV_NORMAL)
        (void)madvise(base, length, advice);    /* only a hint: failure changes nothing */
    m->base = base;
    m->length = length;
    m->header = h;
    m->data = (const uint8_t *)base + h.data_offset;
    return 0;
}

void npy_unmap(NpyMap *m)
{
    if (m->base)
        munmap(m->base, m->length);
    memset(m, 0, sizeof *m);
}

/* ---- writing ------------------------------------------------------------------------- */

int npy_writer_open(NpyWriter *w, const char *path, NpyDtype dtype, int ndim,
                    size_t buffer_size)
{
    memset(w, 0, sizeof *w);
    if (!npy_dtype_descr(dtype) || ndim < 0 || ndim > NPY_MAX_DIMS)
        return imgset_fail("file %s: cannot write dtype %s with %d dimensions", path,
                           npy_dtype_name(dtype), ndim);
    /* Reserve room for the widest possible shape so that the final header always fits. */
    int64_t widest[NPY_MAX_DIMS];
    for (int i = 0; i < ndim; i++)
        widest[i] = INT64_MAX;
    w->header_len = npy_header_size(dtype, ndim, widest);
    w->dtype = dtype;
    w->ndim = ndim;
    w->path = strdup(path);
    w->buffer = malloc(buffer_size ? buffer_size : (1u << 20));
    if (!w->path || !w->buffer) {
        free(w->path);
        free(w->buffer);
        memset(w, 0, sizeof *w);
        return imgset_fail("file %s: out of memory for a write buffer", path);
    }
    w->file = fopen(path, "wbx");
    if (!w->file) {
        int e = errno;
        free(w->path);
        free(w->buffer);
        memset(w, 0, sizeof *w);
        return imgset_fail("file %s: cannot create: %s", path, strerror(e));
    }
    setvbuf(w->file, w->buffer, _IOFBF, buffer_size ? buffer_size : (1u << 20));
    /* Zeros, not a header: an unfinished file never looks like a valid .npy. */
    static const uint8_t zeros[NPY_ALIGN];
    for (size_t done = 0; done < w->header_len; done += sizeof zeros)
        if (fwrite(zeros, 1, sizeof zeros, w->file) != sizeof zeros) {
            int e = errno;
            npy_writer_discard(w);
            return imgset_fail("file %s: write failed: %s", path, strerror(e));
        }
    return 0;
}

int npy_writer_write(NpyWriter *w, const void *data, size_t bytes)
{
    if (bytes && fwrite(data, 1, bytes, w->file) != bytes)
        return imgset_fail("file %s: write failed: %s", w->path, strerror(errno));
    w->data_bytes += bytes;
    return 0;
}

int npy_writer_write_int(NpyWriter *w, int64_t value)
{
    uint8_t b[8];
    size_t n = dtype_item_size(w->dtype);
    int64_t lo = 0, hi = 0;
    switch (w->dtype) {
    case NPY_DTYPE_UINT8: lo = 0; hi = UINT8_MAX; break;
    case NPY_DTYPE_INT8: lo = INT8_MIN; hi = INT8_MAX; break;
    case NPY_DTYPE_INT32: lo = INT32_MIN; hi = INT32_MAX; break;
    default: lo = INT64_MIN; hi = INT64_MAX; break;
    }
    if (value < lo || value > hi)
        return imgset_fail("file %s: value %" PRId64 " does not fit in %s", w->path, value,
                           npy_dtype_name(w->dtype));
    uint64_t u = (uint64_t)value;
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(u >> (8 * i));
    return npy_writer_write(w, b, n);
}

/* Close the file and free what the writer owns (the file stays). */
static int writer_close(NpyWriter *w)
{
    int rc = 0;
    if (w->file && fclose(w->file) != 0)
        rc = imgset_fail("file %s: close failed: %s", w->path, strerror(errno));
    w->file = NULL;
    free(w->buffer);
    w->buffer = NULL;
    return rc;
}

int npy_writer_finish(NpyWriter *w, const int64_t *shape)
{
    size_t count = 1, need;
    for (int i = 0; i < w->ndim; i++)
        if (shape[i] < 0 || size_mul(count, (size_t)shape[i], &count) < 0) {
            writer_close(w);
            return imgset_fail("file %s: bad final shape", w->path);
        }
    if (size_mul(count, dtype_item_size(w->dtype), &need) < 0 || need != w->data_bytes) {
        writer_close(w);
        return imgset_fail("file %s: %" PRIu64 " data bytes written, the shape needs %zu",
                           w->path, w->data_bytes, need);
    }
    uint8_t header[NPY_DICT_MAX + 2 * NPY_ALIGN];
    if (w->header_len > sizeof header ||
        npy_format_header(header, w->header_len, w->dtype, w->ndim, shape) < 0) {
        writer_close(w);
        return imgset_fail_prefix("file %s: ", w->path);
    }
    if (fflush(w->file) != 0 || fseek(w->file, 0, SEEK_SET) != 0 ||
        fwrite(header, 1, w->header_len, w->file) != w->header_len ||
        fflush(w->file) != 0 || fsync(fileno(w->file)) != 0) {
        int e = errno;
        writer_close(w);
        return imgset_fail("file %s: write failed: %s", w->path, strerror(e));
    }
    int rc = writer_close(w);
    free(w->path);
    w->path = NULL;
    return rc;
}

void npy_writer_discard(NpyWriter *w)
{
    if (w->file) {
        fclose(w->file);
        if (w->path)
            unlink(w->path);
    }
    free(w->buffer);
    free(w->path);
    memset(w, 0, sizeof *w);
}
