/* test_npy.c — the .npy header parser (good and bad headers), formatter, mapping and writer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "npy.h"
#include "tap.h"

/* A header as numpy 1.24 writes it for np.zeros((10, 32, 32, 3), np.uint8). */
static const char numpy_u1_header[] =
    "\x93NUMPY\x01\x00v\x00{'descr': '|u1', 'fortran_order': False, 'shape': (10, 32, 32, 3), }"
    "                                                 \n";

/* Build "\x93NUMPY", version, length and dict into buf; returns the total length. */
static size_t make_header(uint8_t *buf, int major, const char *dict)
{
    size_t n = strlen(dict), prefix = major == 1 ? 10 : 12;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (uint8_t)major;
    buf[7] = 0;
    buf[8] = (uint8_t)n;
    buf[9] = (uint8_t)(n >> 8);
    if (prefix == 12) {
        buf[10] = (uint8_t)(n >> 16);
        buf[11] = (uint8_t)(n >> 24);
    }
    memcpy(buf + prefix, dict, n);
    return prefix + n;
}

/* Parse a version-1 header made from dict; returns the parser's result. */
static int parse_dict(const char *dict, NpyHeader *h)
{
    static uint8_t buf[4096];
    size_t n = make_header(buf, 1, dict);
    return npy_parse_header(buf, n, "t.npy", h);
}

/* The parse fails and the message contains `needle` and the file name. */
static void bad_dict(const char *dict, const char *needle, const char *what)
{
    NpyHeader h;
    int rc = parse_dict(dict, &h);
    ok(rc < 0 && strstr(imgset_error(), needle) && strstr(imgset_error(), "t.npy"),
       "refused: %s (%s)", what, imgset_error());
}

static void test_parse_numpy_header(void)
{
    NpyHeader h;
    size_t len = sizeof numpy_u1_header - 1;
    ok(npy_parse_header((const uint8_t *)numpy_u1_header, len, "a.npy", &h) == 0,
       "numpy's own uint8 header parses");
    ok(h.version_major == 1 && h.dtype == NPY_DTYPE_UINT8 && h.item_size == 1 &&
           strcmp(h.descr, "|u1") == 0, "descr |u1 decoded");
    ok(h.ndim == 4 && h.shape[0] == 10 && h.shape[1] == 32 && h.shape[2] == 32 &&
           h.shape[3] == 3, "shape (10, 32, 32, 3)");
    ok(h.data_offset == 128 && h.data_bytes == 10 * 32 * 32 * 3, "data at 128, 30720 bytes");
    ok(npy_check_file_size(&h, 128 + 30720, "a.npy") == 0, "exact file size accepted");
    ok(npy_check_file_size(&h, 128 + 30719, "a.npy") < 0 &&
           strstr(imgset_error(), "truncated") && strstr(imgset_error(), "a.npy"),
       "one byte short is truncated: %s", imgset_error());
    ok(npy_check_file_size(&h, 128 + 30721, "a.npy") < 0, "a trailing byte is refused");
    ok(npy_expect_dtype(&h, NPY_MASK(NPY_DTYPE_UINT8), "uint8", "a.npy") == 0,
       "dtype uint8 expected and found");
    ok(npy_expect_dtype(&h, NPY_MASK(NPY_DTYPE_INT64), "int64 ('<i8')", "a.npy") < 0 &&
           strstr(imgset_error(), "a.npy") && strstr(imgset_error(), "int64") &&
           strstr(imgset_error(), "|u1"), "wrong dtype names file, expected and found: %s",
       imgset_error());

    /* Every strict prefix of the header is refused, never read past. */
    int all_refused = 1;
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1);   /* exact size so ASan sees overreads */
        memcpy(copy, numpy_u1_header, n);
        if (npy_parse_header(copy, n, "a.npy", &h) == 0)
            all_refused = 0;
        free(copy);
    }
    ok(all_refused, "every truncation of the header is refused");
}

static void test_parse_variants(void)
{
    NpyHeader h;
    uint8_t buf[256];
    size_t n = make_header(buf, 2, "{'descr': '<i8', 'fortran_order': False, 'shape': (5,), }\n");
    ok(npy_parse_header(buf, n, "v2.npy", &h) == 0 && h.version_major == 2 &&
           h.dtype == NPY_DTYPE_INT64 && h.ndim == 1 && h.shape[0] == 5 && h.data_offset == n,
       "version 2.0 with int64 (5,)");
    n = make_header(buf, 3, "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }");
    ok(npy_parse_header(buf, n, "v3.npy", &h) == 0 && h.version_major == 3 &&
           h.dtype == NPY_DTYPE_INT32 && h.data_bytes == 24, "version 3.0 with int32 (2, 3)");
    ok(parse_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (), }", &h) == 0 &&
           h.ndim == 0 && h.element_count == 1, "0-d array shape ()");
    ok(parse_dict("{\"shape\": (3, 4,), \"descr\": \"<u1\", \"fortran_order\": False}", &h) ==
           0 && h.ndim == 2 && h.dtype == NPY_DTYPE_UINT8, "keys in any order, double quotes, "
       "trailing comma in tuple, none after the dict");
    ok(parse_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (7L, 2L), }", &h) == 0 &&
           h.shape[0] == 7, "Python 2 long suffix");
    ok(parse_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 9), }", &h) == 0 &&
           h.dtype == NPY_DTYPE_OTHER && h.item_size == 4 && h.data_bytes == 0,
       "float32 parses as an other dtype; zero-length shape");
    ok(npy_expect_dtype(&h, NPY_MASK(NPY_DTYPE_UINT8), "uint8", "t.npy") < 0 &&
           strstr(imgset_error(), "<f4"), "…and is refused where uint8 is expected");
    ok(parse_dict("{'descr': '>i8', 'fortran_order': False, 'shape': (2,), }", &h) == 0 &&
           h.dtype == NPY_DTYPE_OTHER, "big-endian int64 is not taken for int64");
    ok(parse_dict("{'descr': '>u1', 'fortran_order': False, 'shape': (2,), }", &h) == 0 &&
           h.dtype == NPY_DTYPE_UINT8, "'>u1' is uint8 (one byte has no order)");
}

static void test_parse_bad(void)
{
    NpyHeader h;
    uint8_t buf[256];
    size_t n = make_header(buf, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (1,), }");
    buf[0] = 0x92;
    ok(npy_parse_header(buf, n, "m.npy", &h) < 0 && strstr(imgset_error(), "magic") &&
           strstr(imgset_error(), "m.npy"), "wrong magic: %s", imgset_error());
    buf[0] = 0x93;
    buf[6] = 4;
    ok(npy_parse_header(buf, n, "m.npy", &h) < 0 && strstr(imgset_error(), "version 4.0"),
       "version 4.0 refused: %s", imgset_error());
    buf[6] = 1;
    buf[7] = 1;
    ok(npy_parse_header(buf, n, "m.npy", &h) < 0, "version 1.1 refused");
    buf[7] = 0;
    buf[8] = 0xff;
    ok(npy_parse_header(buf, n, "m.npy", &h) < 0 && strstr(imgset_error(), "truncated"),
       "header length past the end: %s", imgset_error());
    n = make_header(buf, 2, "{}");
    buf[11] = 0x7f;
    ok(npy_parse_header(buf, n, "m.npy", &h) < 0, "huge version-2 header length refused");

    bad_dict("{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }",
             "Fortran-order arrays are not supported", "Fortran order");
    bad_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), 'extra': 1, }",
             "unknown key 'extra'", "unknown key");
    bad_dict("{'descr': '|u1', 'descr': '|u1', 'fortran_order': False, 'shape': (2,), }",
             "twice", "duplicate key");
    bad_dict("{'descr': '|u1', 'shape': (2,), }", "fortran_order", "missing key");
    bad_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (5), }", "not a tuple",
             "(5) is not a tuple");
    bad_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (-5,), }", "negative",
             "negative dimension");
    bad_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (05,), }", "leading zero",
             "leading zero");
    bad_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999,), }",
             "larger than", "dimension beyond int64");
    bad_dict("{'descr': '<i8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
             "too large", "element count overflow");
    bad_dict("{'descr': '<i8', 'fortran_order': False, 'shape': (4611686018427387904,), }",
             "too large", "byte size overflow");
    bad_dict("{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (2,), }",
             "structured", "structured dtype");
    bad_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), } x", "after the dict",
             "text after the dict");
    bad_dict("{'descr': '|u\\x31', 'fortran_order': False, 'shape': (2,), }", "character",
             "escape in a string");
    bad_dict("{'descr': '|u1', 'fortran_order': Falsey, 'shape': (2,), }", "True or False",
             "bad boolean");
    bad_dict("{'descr': '|u1' 'fortran_order': False, 'shape': (2,), }", "expected", "missing comma");
    bad_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (2,)", "ends early",
             "unclosed dict");
    bad_dict("['descr']", "expected '{'", "not a dict");
    bad_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
             "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1), }", "more than 32", "33 dimensions");
    bad_dict("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), ", "quoted string",
             "header ending after a comma");
}

static void test_format(void)
{
    int64_t shape[4] = {10, 32, 32, 3};
    size_t size = npy_header_size(NPY_DTYPE_UINT8, 4, shape);
    uint8_t buf[256];
    ok(size == 128, "header for (10, 32, 32, 3) uint8 is 128 bytes, as numpy's");
    ok(npy_format_header(buf, size, NPY_DTYPE_UINT8, 4, shape) == 0 &&
           memcmp(buf, numpy_u1_header, size) == 0, "formatted header is numpy's byte for byte");
    int64_t one[1] = {5};
    NpyHeader h;
    ok(npy_format_header(buf, 192, NPY_DTYPE_INT64, 1, one) == 0 &&
           npy_parse_header(buf, 192, "f.npy", &h) == 0 && h.data_offset == 192 &&
           h.ndim == 1 && h.shape[0] == 5 && h.dtype == NPY_DTYPE_INT64 && buf[191] == '\n',
       "a larger reserved header pads with spaces and ends in a newline");
    ok(npy_format_header(buf, 32, NPY_DTYPE_INT64, 1, one) < 0, "too small a header is refused");
}

static void test_writer_and_map(void)
{
    char dir[] = "/tmp/test_npy.XXXXXX";
    if (!mkdtemp(dir)) {
        ok(0, "mkdtemp");
        return;
    }
    char path[256], empty[256], trunc[256];
    snprintf(path, sizeof path, "%s/a.npy", dir);
    snprintf(empty, sizeof empty, "%s/empty.npy", dir);
    snprintf(trunc, sizeof trunc, "%s/trunc.npy", dir);

    NpyWriter w;
    ok(npy_writer_open(&w, path, NPY_DTYPE_INT32, 2, 0) == 0, "writer opens");
    int good = 1;
    for (int i = 0; i < 6; i++)
        good &= npy_writer_write_int(&w, (i - 3) * 100000) == 0;
    ok(good, "six int32 written");
    ok(npy_writer_write_int(&w, (int64_t)1 << 40) < 0 && strstr(imgset_error(), "a.npy"),
       "an out-of-range value is refused");
    int64_t wrong[2] = {2, 4};
    NpyWriter w2;
    ok(npy_writer_open(&w2, path, NPY_DTYPE_UINT8, 1, 0) < 0 && strstr(imgset_error(), "a.npy"),
       "creating an existing file is refused: %s", imgset_error());
    int64_t shape[2] = {2, 3};
    ok(npy_writer_finish(&w, shape) == 0, "finish with shape (2, 3)");
    NpyMap m;
    ok(npy_map(&m, path, MADV_WILLNEED) == 0, "our file maps");
    ok(m.header.dtype == NPY_DTYPE_INT32 && m.header.ndim == 2 && m.header.shape[0] == 2 &&
           m.header.shape[1] == 3 && m.header.data_offset % 64 == 0,
       "shape (2, 3) int32, data at a multiple of 64 (%zu)", m.header.data_offset);
    size_t offset = m.header.data_offset;
    int32_t vals[6];
    memcpy(vals, m.data, sizeof vals);
    ok(vals[0] == -300000 && vals[5] == 200000, "values read back");
    npy_unmap(&m);

    NpyWriter w3;
    ok(npy_writer_open(&w3, trunc, NPY_DTYPE_UINT8, 1, 64) == 0, "second writer opens");
    npy_writer_write(&w3, "abc", 3);
    ok(npy_writer_finish(&w3, wrong) < 0 && strstr(imgset_error(), "trunc.npy"),
       "finish with a shape that does not match the data fails: %s", imgset_error());
    npy_writer_discard(&w3);
    ok(npy_map(&m, trunc, MADV_NORMAL) < 0, "the unfinished file is not a valid .npy");
    unlink(trunc);

    NpyWriter w4;
    ok(npy_writer_open(&w4, trunc, NPY_DTYPE_UINT8, 1, 0) == 0, "writer for discard opens");
    npy_writer_discard(&w4);
    ok(access(trunc, F_OK) != 0, "discard removes the file");

    FILE *f = fopen(empty, "wb");
    fclose(f);
    ok(npy_map(&m, empty, MADV_NORMAL) < 0 && strstr(imgset_error(), "empty.npy"),
       "an empty file is refused: %s", imgset_error());
    ok(npy_map(&m, "/nonexistent/x.npy", MADV_NORMAL) < 0 &&
           strstr(imgset_error(), "/nonexistent/x.npy"), "a missing file is refused: %s",
       imgset_error());
    /* Truncate our good file by one byte. */
    if (truncate(path, (off_t)offset + 23) == 0)
        ok(npy_map(&m, path, MADV_NORMAL) < 0 && strstr(imgset_error(), "truncated") &&
               strstr(imgset_error(), "a.npy"), "a truncated file is refused: %s",
           imgset_error());
    ok(m.base == NULL, "a failed map leaves nothing mapped");
    unlink(path);
    unlink(empty);
    rmdir(dir);
}

int main(void)
{
    test_parse_numpy_header();
    test_parse_variants();
    test_parse_bad();
    test_format();
    test_writer_and_map();
    return tap_done();
}
