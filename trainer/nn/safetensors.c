/* safetensors.c — a strict safetensors parser (a small JSON reader for exactly the header's
 * shape) and the checkpoint format's allocation-free readers. */
#include "safetensors.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"
#include "error.h"
#include "nn.h"

/* ==== The parser ======================================================================= */

/* Shortest possible entries, to bound the tables by the header length:
 * "":{"dtype":"U8","shape":[],"data_offsets":[0,0]} is 49 bytes, "":"" is 5. */
#define MIN_TENSOR_ENTRY 49
#define MIN_META_ENTRY 5

typedef struct Parser {
    const uint8_t *start, *p, *end;   /* the JSON header */
    const char *what;
    SafetensorsTensor *tensors;
    int num_tensors, max_tensors;
    SafetensorsMeta *meta;
    int num_meta, max_meta;
    char *strings;                    /* decoded strings, NUL-terminated */
    size_t strings_used, strings_cap;
} Parser;

typedef struct DtypeInfo {
    const char *name;
    size_t size;
} DtypeInfo;

static const DtypeInfo dtypes[] = {
    {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2},
    {"F16", 2}, {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4}, {"I64", 8}, {"U64", 8},
    {"F64", 8},
};

/* Fail with the file, the byte offset in the header and the message. */
static int parse_error(const Parser *ps, const char *message)
{
    return imgset_fail("%s: bad safetensors header at byte %zu: %s", ps->what,
                       (size_t)(ps->p - ps->start) + 8, message);
}

static void skip_space(Parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

/* Consume `c` (after optional white space) or fail. */
static int expect(Parser *ps, char c)
{
    skip_space(ps);
    if (ps->p >= ps->end || *ps->p != (uint8_t)c) {
        char message[48];
        snprintf(message, sizeof message, "expected '%c'", c);
        return parse_error(ps, message);
    }
    ps->p++;
    return 0;
}

/* Consume ',' (returns 1) or `close` (returns 0); -1 on anything else. */
static int next_or_close(Parser *ps, char close)
{
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == ',') {
        ps->p++;
        return 1;
    }
    if (ps->p < ps->end && *ps->p == (uint8_t)close) {
        ps->p++;
        return 0;
    }
    char message[48];
    snprintf(message, sizeof message, "expected ',' or '%c'", close);
    return parse_error(ps, message);
}

/* Append one byte to the string area (its size bound makes overflow impossible, but check). */
static int put_byte(Parser *ps, uint8_t c)
{
    if (ps->strings_used >= ps->strings_cap)
        return parse_error(ps, "strings exceed the arena");
    ps->strings[ps->strings_used++] = (char)c;
    return 0;
}

/* Length of the valid UTF-8 sequence at p (multi-byte lead in p[0]), or 0 when invalid. */
static size_t utf8_sequence(const uint8_t *p, const uint8_t *end)
{
    uint8_t c = p[0];
    size_t n;
    uint8_t lo = 0x80, hi = 0xBF;   /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;              /* no overlong forms */
        if (c == 0xED)
            hi = 0x9F;              /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;              /* nothing above U+10FFFF */
    } else
        return 0;
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

static int hex4(const uint8_t *p, const uint8_t *end, unsigned *out)
{
    if (end - p < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return 0;
}

/* Encode code point cp (valid, not a surrogate, not 0) as UTF-8 into the string area. */
static int put_code_point(Parser *ps, unsigned cp)
{
    if (cp < 0x80)
        return put_byte(ps, (uint8_t)cp);
    if (cp < 0x800)
        return put_byte(ps, (uint8_t)(0xC0 | cp >> 6)) ||
               put_byte(ps, (uint8_t)(0x80 | (cp & 0x3F)));
    if (cp < 0x10000)
        return put_byte(ps, (uint8_t)(0xE0 | cp >> 12)) ||
               put_byte(ps, (uint8_t)(0x80 | (cp >> 6 & 0x3F))) ||
               put_byte(ps, (uint8_t)(0x80 | (cp & 0x3F)));
    return put_byte(ps, (uint8_t)(0xF0 | cp >> 18)) ||
           put_byte(ps, (uint8_t)(0x80 | (cp >> 12 & 0x3F))) ||
           put_byte(ps, (uint8_t)(0x80 | (cp >> 6 & 0x3F))) ||
           put_byte(ps, (uint8_t)(0x80 | (cp & 0x3F)));
}

/* A JSON string, decoded into the string area; *out points at it (NUL-terminated). */
static int parse_string(Parser *ps, const char **out)
{
    if (expect(ps, '"'))
        return -1;
    size_t start = ps->strings_used;
    for (;;) {
        if (ps->p >= ps->end)
            return parse_error(ps, "unterminated string");
        uint8_t c = *ps->p;
        if (c == '"') {
            ps->p++;
            break;
        }
        if (c < 0x20)
            return parse_error(ps, "control character in string");
        if (c >= 0x80) {
            size_t n = utf8_sequence(ps->p, ps->end);
            if (!n)
                return parse_error(ps, "invalid UTF-8");
            for (size_t i = 0; i < n; i++)
                if (put_byte(ps, ps->p[i]))
                    return -1;
            ps->p += n;
            continue;
        }
        if (c != '\\') {
            if (put_byte(ps, c))
                return -1;
            ps->p++;
            continue;
        }
        if (ps->end - ps->p < 2)
            return parse_error(ps, "unterminated escape");
        uint8_t e = ps->p[1];
        ps->p += 2;
        static const char simple_from[] = "\"\\/bfnrt", simple_to[] = "\"\\/\b\f\n\r\t";
        const char *k = e ? strchr(simple_from, e) : NULL;
        if (k) {
            if (put_byte(ps, (uint8_t)simple_to[k - simple_from]))
                return -1;
            continue;
        }
        unsigned cp, low;
        if (e != 'u' || hex4(ps->p, ps->end, &cp))
            return parse_error(ps, "bad escape in string");
        ps->p += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF)
            return parse_error(ps, "lone low surrogate in string");
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' ||
                hex4(ps->p + 2, ps->end, &low) || low < 0xDC00 || low > 0xDFFF)
                return parse_error(ps, "unpaired surrogate in string");
            ps->p += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        if (cp == 0)
            return parse_error(ps, "NUL character in string");
        if (put_code_point(ps, cp))
            return -1;
    }
    if (put_byte(ps, 0))
        return -1;
    *out = ps->strings + start;
    return 0;
}

/* A non-negative JSON integer (no sign, fraction or exponent) up to INT64_MAX. */
static int parse_uint(Parser *ps, uint64_t *out)
{
    skip_space(ps);
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9')
        return parse_error(ps, "expected a non-negative integer");
    if (*ps->p == '0' && ps->end - ps->p > 1 && ps->p[1] >= '0' && ps->p[1] <= '9')
        return parse_error(ps, "leading zero in integer");
    uint64_t v = 0;
    while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
        unsigned d = (unsigned)(*ps->p - '0');
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return parse_error(ps, "integer too large");
        v = v * 10 + d;
        ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == '.' || *ps->p == 'e' || *ps->p == 'E'))
        return parse_error(ps, "expected an integer");
    *out = v;
    return 0;
}

/* [n, n, ...] with at most max values; *count receives how many. */
static int parse_uint_array(Parser *ps, uint64_t *values, int max, int *count)
{
    if (expect(ps, '['))
        return -1;
    *count = 0;
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return 0;
    }
    for (;;) {
        if (*count >= max)
            return parse_error(ps, "too many values in array");
        if (parse_uint(ps, &values[(*count)++]))
            return -1;
        int more = next_or_close(ps, ']');
        if (more < 0)
            return -1;
        if (!more)
            return 0;
    }
}

/* The value of one tensor entry: {"dtype": .., "shape": [..], "data_offsets": [b, e]}. */
static int parse_tensor(Parser *ps, SafetensorsTensor *t)
{
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    if (expect(ps, '{'))
        return -1;
    for (;;) {
        const char *key;
        size_t mark = ps->strings_used;
        if (parse_string(ps, &key) || expect(ps, ':'))
            return -1;
        if (strcmp(key, "dtype") == 0 && !have_dtype) {
            const char *dtype;
            if (parse_string(ps, &dtype))
                return -1;
            t->dtype_size = 0;
            for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
                if (strcmp(dtype, dtypes[i].name) == 0) {
                    snprintf(t->dtype, sizeof t->dtype, "%s", dtypes[i].name);
                    t->dtype_size = dtypes[i].size;
                }
            if (!t->dtype_size)
                return imgset_fail("%s: tensor \"%s\": unknown dtype \"%.20s\"", ps->what,
                                   t->name, dtype);
            have_dtype = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            uint64_t dims[SAFETENSORS_MAX_DIMS];
            if (parse_uint_array(ps, dims, SAFETENSORS_MAX_DIMS, &t->ndim))
                return -1;
            for (int i = 0; i < t->ndim; i++)
                t->shape[i] = (int64_t)dims[i];
            have_shape = 1;
        } else if (strcmp(key, "data_offsets") == 0 && !have_offsets) {
            uint64_t offsets[2];
            int n;
            if (parse_uint_array(ps, offsets, 2, &n))
                return -1;
            if (n != 2)
                return imgset_fail("%s: tensor \"%s\": data_offsets needs 2 values", ps->what,
                                   t->name);
            t->begin = offsets[0], t->end = offsets[1];
            have_offsets = 1;
        } else
            return imgset_fail("%s: tensor \"%s\": unexpected or repeated key \"%.40s\"",
                               ps->what, t->name, key);
        ps->strings_used = mark;   /* keys are not kept */
        int more = next_or_close(ps, '}');
        if (more < 0)
            return -1;
        if (!more)
            break;
    }
    if (!have_dtype || !have_shape || !have_offsets)
        return imgset_fail("%s: tensor \"%s\": needs dtype, shape and data_offsets", ps->what,
                           t->name);
    return 0;
}

/* The "__metadata__" object: string keys to string values. */
static int parse_metadata(Parser *ps)
{
    if (expect(ps, '{'))
        return -1;
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return 0;
    }
    for (;;) {
        if (ps->num_meta >= ps->max_meta)
            return parse_error(ps, "too many metadata entries");
        SafetensorsMeta *m = &ps->meta[ps->num_meta++];
        if (parse_string(ps, &m->key) || expect(ps, ':'))
            return -1;
        skip_space(ps);
        if (ps->p >= ps->end || *ps->p != '"')
            return imgset_fail("%s: metadata \"%.40s\": values must be strings", ps->what, m->key);
        if (parse_string(ps, &m->value))
            return -1;
        int more = next_or_close(ps, '}');
        if (more < 0)
            return -1;
        if (!more)
            return 0;
    }
}

static int compare_by_offset(const void *a, const void *b)
{
    const SafetensorsTensor *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int compare_by_name(const void *a, const void *b)
{
    return strcmp(((const SafetensorsTensor *)a)->name, ((const SafetensorsTensor *)b)->name);
}

static int compare_meta(const void *a, const void *b)
{
    return strcmp(((const SafetensorsMeta *)a)->key, ((const SafetensorsMeta *)b)->key);
}

/* The header length from the first 8 bytes (little-endian). */
static uint64_t read_u64le(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Table sizes for a header of `header_len` bytes. */
static void arena_layout(size_t header_len, int *max_tensors, int *max_meta, size_t *strings)
{
    *max_tensors = (int)(header_len / MIN_TENSOR_ENTRY + 1);
    *max_meta = (int)(header_len / MIN_META_ENTRY + 1);
    /* decoded strings are never longer than their JSON form; one NUL per string */
    *strings = 2 * header_len + 16;
}

/* Round n up to a multiple of 16 (table alignment inside the arena). */
static size_t align16(size_t n)
{
    return (n + 15) & ~(size_t)15;
}

size_t safetensors_arena_size(const uint8_t *file, size_t len)
{
    if (len < 8)
        return 16;
    uint64_t header_len = read_u64le(file);
    if (header_len > SAFETENSORS_MAX_HEADER || header_len > len - 8)
        return 16;
    int max_tensors, max_meta;
    size_t strings;
    arena_layout((size_t)header_len, &max_tensors, &max_meta, &strings);
    return 16 + align16((size_t)max_tensors * sizeof(SafetensorsTensor)) +
           align16((size_t)max_meta * sizeof(SafetensorsMeta)) + strings;
}

int safetensors_parse(Safetensors *st, const uint8_t *file, size_t len, void *arena,
                      size_t arena_len, const char *what)
{
    memset(st, 0, sizeof *st);
    if (len < 8)
        return imgset_fail("%s: not a safetensors file (%zu bytes, shorter than the 8-byte "
                           "header length)", what, len);
    uint64_t header_len = read_u64le(file);
    if (header_len > len - 8)
        return imgset_fail("%s: safetensors header length %" PRIu64 " exceeds the file's %zu "
                           "bytes", what, header_len, len);
    if (header_len > SAFETENSORS_MAX_HEADER)
        return imgset_fail("%s: safetensors header of %" PRIu64 " bytes is larger than the "
                           "limit of %zu", what, header_len, SAFETENSORS_MAX_HEADER);
    if (arena_len < safetensors_arena_size(file, len))
        return imgset_fail("%s: parser arena too small", what);

    Parser ps = {.start = file + 8, .p = file + 8, .end = file + 8 + header_len, .what = what};
    size_t strings;
    arena_layout((size_t)header_len, &ps.max_tensors, &ps.max_meta, &strings);
    uint8_t *a = (uint8_t *)(((uintptr_t)arena + 15) & ~(uintptr_t)15);
    ps.tensors = (SafetensorsTensor *)a;
    a += align16((size_t)ps.max_tensors * sizeof(SafetensorsTensor));
    ps.meta = (SafetensorsMeta *)a;
    a += align16((size_t)ps.max_meta * sizeof(SafetensorsMeta));
    ps.strings = (char *)a;
    ps.strings_cap = strings;

    /* The header: one object, nothing before it, only spaces after it. */
    if (header_len == 0 || *ps.p != '{')
        return parse_error(&ps, "the header must start with '{'");
    ps.p++;
    skip_space(&ps);
    int have_metadata = 0;
    if (ps.p < ps.end && *ps.p == '}')
        ps.p++;
    else
        for (;;) {
            const char *name;
            imgset_check_interrupt();   /* a 16 MB header has many entries */
            if (parse_string(&ps, &name) || expect(&ps, ':'))
                return -1;
            if (strcmp(name, "__metadata__") == 0) {
                if (have_metadata)
                    return parse_error(&ps, "__metadata__ appears twice");
                have_metadata = 1;
                if (parse_metadata(&ps))
                    return -1;
            } else {
                if (ps.num_tensors >= ps.max_tensors)
                    return parse_error(&ps, "too many tensors");
                SafetensorsTensor *t = &ps.tensors[ps.num_tensors++];
                memset(t, 0, sizeof *t);
                t->name = name;
                if (parse_tensor(&ps, t))
                    return -1;
            }
            int more = next_or_close(&ps, '}');
            if (more < 0)
                return -1;
            if (!more)
                break;
        }
    for (; ps.p < ps.end; ps.p++)
        if (*ps.p != ' ')
            return parse_error(&ps, "unexpected bytes after the header object");

    /* Sizes and offsets: every tensor inside the data section, no holes, no overlaps. */
    st->data = file + 8 + header_len;
    st->data_len = len - 8 - (size_t)header_len;
    for (int i = 0; i < ps.num_tensors; i++) {
        SafetensorsTensor *t = &ps.tensors[i];
        uint64_t bytes = t->dtype_size;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] != 0 && bytes > UINT64_MAX / (uint64_t)t->shape[d])
                return imgset_fail("%s: tensor \"%s\": shape overflows", what, t->name);
            bytes *= (uint64_t)t->shape[d];
        }
        if (t->end < t->begin || t->end > st->data_len)
            return imgset_fail("%s: tensor \"%s\": data_offsets [%" PRIu64 ", %" PRIu64 "] "
                               "outside the %zu-byte data section", what, t->name, t->begin,
                               t->end, st->data_len);
        if (t->end - t->begin != bytes)
            return imgset_fail("%s: tensor \"%s\": %" PRIu64 " data bytes but its dtype and "
                               "shape need %" PRIu64, what, t->name, t->end - t->begin, bytes);
    }
    qsort(ps.tensors, (size_t)ps.num_tensors, sizeof *ps.tensors, compare_by_offset);
    uint64_t covered = 0;
    for (int i = 0; i < ps.num_tensors; i++) {
        const SafetensorsTensor *t = &ps.tensors[i];
        if (t->begin != covered)
            return imgset_fail("%s: tensor \"%s\": data starts at %" PRIu64 " but the previous "
                               "tensor ends at %" PRIu64 " (%s)", what, t->name, t->begin,
                               covered, t->begin < covered ? "overlap" : "hole");
        covered = t->end;
    }
    if (covered != st->data_len)
        return imgset_fail("%s: %" PRIu64 " bytes after the last tensor's data (the data "
                           "section is %zu bytes)", what, (uint64_t)st->data_len - covered,
                           st->data_len);
    qsort(ps.tensors, (size_t)ps.num_tensors, sizeof *ps.tensors, compare_by_name);
    for (int i = 1; i < ps.num_tensors; i++)
        if (strcmp(ps.tensors[i - 1].name, ps.tensors[i].name) == 0)
            return imgset_fail("%s: tensor \"%s\" appears twice", what, ps.tensors[i].name);
    qsort(ps.meta, (size_t)ps.num_meta, sizeof *ps.meta, compare_meta);
    for (int i = 1; i < ps.num_meta; i++)
        if (strcmp(ps.meta[i - 1].key, ps.meta[i].key) == 0)
            return imgset_fail("%s: metadata key \"%s\" appears twice", what, ps.meta[i].key);
    st->tensors = ps.tensors, st->num_tensors = ps.num_tensors;
    st->meta = ps.meta, st->num_meta = ps.num_meta;
    return 0;
}

const SafetensorsTensor *safetensors_find(const Safetensors *st, const char *name)
{
    int lo = 0, hi = st->num_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(st->tensors[mid].name, name);
        if (c == 0)
            return &st->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

const char *safetensors_meta(const Safetensors *st, const char *key)
{
    int lo = 0, hi = st->num_meta - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(st->meta[mid].key, key);
        if (c == 0)
            return st->meta[mid].value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

int safetensors_read_f32(const Safetensors *st, const SafetensorsTensor *t, float *dst,
                         size_t count, const char *what)
{
    if (strcmp(t->dtype, "F32") != 0)
        return imgset_fail("%s: tensor \"%s\" has dtype %s, expected F32", what, t->name,
                           t->dtype);
    if (t->end - t->begin != (uint64_t)count * 4)
        return imgset_fail("%s: tensor \"%s\" has %" PRIu64 " elements, expected %zu", what,
                           t->name, (t->end - t->begin) / 4, count);
    const uint8_t *src = st->data + t->begin;
    for (size_t i = 0; i < count; i++) {
        if ((i & ((1u << 20) - 1)) == 0)
            imgset_check_interrupt();   /* between megafloats of a large tensor */
        uint32_t bits = (uint32_t)src[4 * i] | (uint32_t)src[4 * i + 1] << 8 |
                        (uint32_t)src[4 * i + 2] << 16 | (uint32_t)src[4 * i + 3] << 24;
        memcpy(&dst[i], &bits, 4);
    }
    return 0;
}

/* ==== Checkpoint metadata ============================================================== */

/* A decimal metadata value in [0, max]; -1 with imgset_fail() when missing or malformed. */
static int meta_uint(const Safetensors *st, const char *key, uint64_t max, uint64_t *out,
                     const char *what)
{
    const char *v = safetensors_meta(st, key);
    if (!v)
        return imgset_fail("%s: checkpoint metadata has no \"%s\"", what, key);
    uint64_t x = 0;
    if (!*v || strlen(v) > 20)
        return imgset_fail("%s: checkpoint metadata \"%s\" = \"%.30s\" is not a number", what,
                           key, v);
    for (const char *c = v; *c; c++) {
        if (*c < '0' || *c > '9' || x > (UINT64_MAX - (uint64_t)(*c - '0')) / 10)
            return imgset_fail("%s: checkpoint metadata \"%s\" = \"%.30s\" is not a number",
                               what, key, v);
        x = x * 10 + (uint64_t)(*c - '0');
    }
    if (x > max)
        return imgset_fail("%s: checkpoint metadata \"%s\" = %s is out of range (at most %" PRIu64
                           ")", what, key, v, max);
    *out = x;
    return 0;
}

/* The value of a metadata key that must be there; NULL with imgset_fail() when missing. */
static const char *meta_required(const Safetensors *st, const char *key, const char *what)
{
    const char *v = safetensors_meta(st, key);
    if (!v)
        imgset_fail("%s: checkpoint metadata has no \"%s\"", what, key);
    return v;
}

/* A name metadata value: its index by from_name(), or -1 with imgset_fail() naming the key. */
static int meta_name(const Safetensors *st, const char *key, int (*from_name)(const char *),
                     const char *known, int *out, const char *what)
{
    const char *v = meta_required(st, key, what);
    if (!v)
        return -1;
    if ((*out = from_name(v)) < 0)
        return imgset_fail("%s: checkpoint metadata \"%s\" = \"%.30s\" is not one of %s", what,
                           key, v, known);
    return 0;
}

/* One finite float at *p (strtof's syntax); advances *p. -1 when there is none. */
static int parse_float(const char **p, float *out)
{
    char *end;
    float x = strtof(*p, &end);
    if (end == *p || !isfinite(x))
        return -1;
    *out = x, *p = end;
    return 0;
}

/* A metadata value that is one finite float. */
static int meta_float(const Safetensors *st, const char *key, float *out, const char *what)
{
    const char *v = meta_required(st, key, what);
    if (!v)
        return -1;
    const char *p = v;
    if (parse_float(&p, out) < 0 || *p)
        return imgset_fail("%s: checkpoint metadata \"%s\" = \"%.30s\" is not a number", what,
                           key, v);
    return 0;
}

/* A metadata value that is a JSON array of exactly n finite numbers, "[0.5, 0.5, 0.5]". */
static int meta_floats(const Safetensors *st, const char *key, float *out, int n,
                       const char *what)
{
    const char *v = meta_required(st, key, what), *p = v;
    if (!v)
        return -1;
    int count = 0, bad = *p++ != '[';
    while (!bad) {
        while (*p == ' ')
            p++;
        if (count == 0 && *p == ']')
            break;
        float x;
        if (parse_float(&p, &x) < 0) {
            bad = 1;
            break;
        }
        if (count < n)
            out[count] = x;
        count++;
        while (*p == ' ')
            p++;
        if (*p == ']')
            break;
        bad = *p++ != ',';
    }
    if (bad || *p != ']' || p[1])
        return imgset_fail("%s: checkpoint metadata \"%s\" = \"%.40s\" is not a list of "
                           "numbers", what, key, v);
    if (count != n)
        return imgset_fail("%s: checkpoint metadata \"%s\" has %d values for %d channels", what,
                           key, count, n);
    return 0;
}

/* Version 2's keys: activation, leaky_slope, loss, normalize, mean, std (one per channel). */
static int read_recipe(const Safetensors *st, ModelSpec *spec, const char *what)
{
    int channels = spec->channels < MODEL_NORM_CHANNELS ? spec->channels : MODEL_NORM_CHANNELS;
    return meta_name(st, "activation", model_activation_from_name,
                     "relu, leaky-relu, tanh, sigmoid", &spec->activation, what) ||
           meta_float(st, "leaky_slope", &spec->leaky_slope, what) ||
           meta_name(st, "loss", nn_loss_from_name, "cce, bce, mse, mae", &spec->loss, what) ||
           meta_name(st, "normalize", model_normalize_from_name, "meanstd, minmax",
                     &spec->normalize, what) ||
           meta_floats(st, "mean", spec->mean, channels, what) ||
           meta_floats(st, "std", spec->std, channels, what) ? -1 : 0;
}

int checkpoint_read_info(const Safetensors *st, ModelSpec *spec, uint64_t *seed,
                         TrainState *state, const char *what)
{
    const char *format = safetensors_meta(st, "format");
    const char *version = safetensors_meta(st, "version");
    if (!format || strcmp(format, CHECKPOINT_FORMAT) != 0)
        return imgset_fail("%s: not a pg_imgset checkpoint (metadata \"format\" is %s%s%s, "
                           "expected \"" CHECKPOINT_FORMAT "\")", what, format ? "\"" : "",
                           format ? format : "missing", format ? "\"" : "");
    int v1 = version && strcmp(version, CHECKPOINT_VERSION_1) == 0;
    if (!version || (!v1 && strcmp(version, CHECKPOINT_VERSION) != 0))
        return imgset_fail("%s: checkpoint version %s, this build reads versions "
                           CHECKPOINT_VERSION_1 " and " CHECKPOINT_VERSION, what,
                           version ? version : "missing");
    const char *arch = safetensors_meta(st, "arch");
    if (!arch || strlen(arch) >= sizeof spec->arch)
        return imgset_fail("%s: checkpoint metadata has no valid \"arch\"", what);
    uint64_t c, h, w, k, step, s, epoch, position;
    if (meta_uint(st, "channels", MODEL_MAX_CHANNELS, &c, what) ||
        meta_uint(st, "height", IMGSET_MAX_SIDE, &h, what) ||
        meta_uint(st, "width", IMGSET_MAX_SIDE, &w, what) ||
        meta_uint(st, "classes", IMGSET_MAX_CLASSES, &k, what) ||
        meta_uint(st, "seed", UINT64_MAX, &s, what) ||
        meta_uint(st, "step", INT64_MAX, &step, what))
        return -1;
    /* version 1 has no recipe keys: ReLU, cross-entropy, mean = std = 0.5 */
    model_spec_default(spec, arch, (int)c, (int)h, (int)w, (int)k);
    if (!v1 && read_recipe(st, spec, what) < 0)
        return -1;
    if (seed)
        *seed = s;
    if (state) {
        memset(state, 0, sizeof *state);
        state->step = (int64_t)step;
        if (meta_uint(st, "sampler_seed", UINT64_MAX, &state->sampler_seed, what) ||
            meta_uint(st, "sampler_epoch", INT64_MAX, &epoch, what) ||
            meta_uint(st, "sampler_position", INT64_MAX, &position, what))
            return -1;
        state->sampler_epoch = (int64_t)epoch;
        state->sampler_position = (int64_t)position;
    }
    return 0;
}

/* 1 when tensor t of the file has the shape of graph tensor g. */
static int same_shape(const SafetensorsTensor *t, const ModelTensor *g)
{
    if (t->ndim != g->ndim)
        return 0;
    for (int i = 0; i < g->ndim; i++)
        if (t->shape[i] != g->shape[i])
            return 0;
    return 1;
}

/* Copy file tensor `name` into dst, checking dtype and shape against graph tensor g. */
static int read_tensor(const Safetensors *st, const char *name, const ModelTensor *g,
                       const char *arch, float *dst, const char *what)
{
    const SafetensorsTensor *t = safetensors_find(st, name);
    if (!t)
        return imgset_fail("%s: tensor \"%s\" of model %s is missing", what, name, arch);
    if (!same_shape(t, g)) {
        char have[96] = "", want[96] = "";
        for (int i = 0; i < t->ndim; i++)
            snprintf(have + strlen(have), sizeof have - strlen(have), "%s%" PRId64,
                     i ? "," : "", t->shape[i]);
        for (int i = 0; i < g->ndim; i++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%" PRId64,
                     i ? "," : "", g->shape[i]);
        return imgset_fail("%s: tensor \"%s\" has shape [%s], model %s needs [%s]", what, name,
                           have, arch, want);
    }
    return safetensors_read_f32(st, t, dst, g->count, what);
}

int checkpoint_read_tensors(const Safetensors *st, const ModelGraph *graph, float *params,
                            float *velocity, const char *what)
{
    char name[MODEL_NAME_MAX + 16];
    for (int i = 0; i < graph->num_tensors; i++) {
        const ModelTensor *g = &graph->tensors[i];
        if (read_tensor(st, g->name, g, graph->spec.arch, params + g->offset, what))
            return -1;
        if (velocity && g->trainable) {
            snprintf(name, sizeof name, "momentum.%s", g->name);
            if (read_tensor(st, name, g, graph->spec.arch, velocity + g->offset, what))
                return -1;
        }
    }
    /* nothing in the file that the model does not have */
    for (int i = 0; i < st->num_tensors; i++) {
        const char *n = st->tensors[i].name;
        int momentum = strncmp(n, "momentum.", 9) == 0;
        int id = model_graph_find(graph, momentum ? n + 9 : n);
        if (id < 0 || (momentum && !graph->tensors[id].trainable))
            return imgset_fail("%s: unexpected tensor \"%s\" (not part of model %s)", what, n,
                               graph->spec.arch);
    }
    return 0;
}

int checkpoint_decode_class_names(const char *json, char *buf, size_t cap, const char **names,
                                  int K, const char *what)
{
    size_t len = strlen(json);
    if (cap < len + 1)
        return imgset_fail("%s: class name buffer too small", what);
    Parser ps = {.start = (const uint8_t *)json, .p = (const uint8_t *)json,
                 .end = (const uint8_t *)json + len, .what = what, .strings = buf,
                 .strings_cap = cap};
    int count = 0;
    if (expect(&ps, '['))
        return imgset_fail_prefix("class_names: ");
    skip_space(&ps);
    if (ps.p < ps.end && *ps.p == ']')
        ps.p++;
    else
        for (;;) {
            const char *s;
            if (parse_string(&ps, &s))
                return imgset_fail_prefix("class_names: ");
            if (count < K)
                names[count] = s;
            count++;
            int more = next_or_close(&ps, ']');
            if (more < 0)
                return imgset_fail_prefix("class_names: ");
            if (!more)
                break;
        }
    skip_space(&ps);
    if (ps.p != ps.end)
        return imgset_fail("%s: class_names: unexpected bytes after the array", what);
    if (count != K)
        return imgset_fail("%s: class_names has %d names for %d classes", what, count, K);
    return 0;
}
