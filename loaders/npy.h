/* npy.h — numpy .npy files: a strict header parser (safe on any bytes), a read-only mapping
 * of a whole file, and a sequential writer whose header is reserved first and filled at the end. */
#ifndef IMGSET_NPY_H
#define IMGSET_NPY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * The format (numpy's NEP 1, format versions 1.0, 2.0 and 3.0):
 *   "\x93NUMPY", major, minor, header length (uint16 LE for 1.0, uint32 LE for 2.0/3.0),
 *   then a Python dict literal such as
 *   {'descr': '|u1', 'fortran_order': False, 'shape': (10, 32, 32, 3), }
 *   padded with spaces and a final '\n', then the raw C-order array data.
 * numpy pads so that the data starts at a multiple of 64 bytes; our writer does the same.
 */

#define NPY_MAX_DIMS 32          /* numpy 1.x's NPY_MAXDIMS */
#define NPY_DESCR_MAX 32         /* longest descr string kept, including the NUL */
#define NPY_HEADER_MAX (1u << 20) /* larger headers are refused (numpy itself stops at 10000) */

/* The element types this project reads and writes. */
typedef enum NpyDtype {
    NPY_DTYPE_OTHER = 0,   /* any other descr ('<f4', '>i8', '<U10', …): parsed, never accepted */
    NPY_DTYPE_UINT8,       /* '|u1' (numpy's spelling), '<u1' or '>u1' */
    NPY_DTYPE_INT8,        /* '|i1', '<i1' or '>i1' */
    NPY_DTYPE_INT32,       /* '<i4' */
    NPY_DTYPE_INT64,       /* '<i8' */
} NpyDtype;

/* Bit for a dtype in an "accepted dtypes" mask: NPY_MASK(NPY_DTYPE_INT32) | … */
#define NPY_MASK(dtype) (1u << (dtype))

/* What a header says. Plain data, nothing owned. */
typedef struct NpyHeader {
    int version_major;              /* 1, 2 or 3 */
    int version_minor;              /* 0 */
    char descr[NPY_DESCR_MAX];      /* the descr string as written, e.g. "|u1" */
    NpyDtype dtype;                 /* descr decoded; NPY_DTYPE_OTHER when not one of ours */
    size_t item_size;               /* bytes per element (from the descr); 0 when unknown */
    int fortran_order;              /* always 0 after a successful parse (1 is refused) */
    int ndim;                       /* 0..NPY_MAX_DIMS */
    int64_t shape[NPY_MAX_DIMS];    /* (ndim,) each >= 0 */
    size_t element_count;           /* product of shape (1 for ndim 0), overflow-checked */
    size_t data_offset;             /* bytes before the data: magic + lengths + dict */
    size_t data_bytes;              /* element_count * item_size; 0 when item_size is 0 */
} NpyHeader;

/* A short name for a dtype ("uint8", "int32", …) for messages. */
const char *npy_dtype_name(NpyDtype dtype);

/*
 * Parse the header at the start of buf[0..len) (the whole file, or at least its header).
 * `name` (the file's path) is used in messages. Strict: magic, version, lengths, the dict's
 * syntax, its three keys (each exactly once, nothing else), the descr, the shape's digits
 * (overflow-checked) and its byte size are all checked; fortran_order True is refused
 * ("Fortran-order arrays are not supported"). Never reads outside buf.
 * Returns 0, or -1 with imgset_fail("file NAME: …").
 */
int npy_parse_header(const uint8_t *buf, size_t len, const char *name, NpyHeader *out);

/* Check that a file of file_size bytes holds exactly header + data (an unknown item size,
 * or fewer or more bytes than that, is an error naming the file); 0 or -1. */
int npy_check_file_size(const NpyHeader *h, uint64_t file_size, const char *name);

/* Check that the header's dtype is in `accepted` (a mask of NPY_MASK bits); the error
 * names the file, what was expected (`expected`, e.g. "uint8 ('|u1')") and the descr found. */
int npy_expect_dtype(const NpyHeader *h, unsigned accepted, const char *expected,
                     const char *name);

/* The descr our writer uses for a dtype ("|u1", "<i4", "<i8"; NULL for NPY_DTYPE_OTHER). */
const char *npy_dtype_descr(NpyDtype dtype);

/*
 * Format a complete header (magic, version, length, dict, space padding, '\n') into
 * buf[0..total_len), total_len chosen by the caller (e.g. npy_header_size()'s answer, or a
 * larger reserved size). Version 1.0 when it fits in a uint16 length, else 2.0.
 * Returns 0, or -1 with imgset_fail() when the dict does not fit in total_len.
 */
int npy_format_header(uint8_t *buf, size_t total_len, NpyDtype dtype, int ndim,
                      const int64_t *shape);

/* The smallest multiple of 64 that holds the header for this dtype and shape (as numpy). */
size_t npy_header_size(NpyDtype dtype, int ndim, const int64_t *shape);

/* ---- reading a whole file through mmap ---------------------------------------------- */

/* A file mapped read-only. Owns the mapping; release with npy_unmap(). */
typedef struct NpyMap {
    void *base;             /* the whole file, read-only; NULL when not mapped */
    size_t length;          /* file size */
    NpyHeader header;
    const uint8_t *data;    /* base + header.data_offset: header.data_bytes bytes */
} NpyMap;

/*
 * Map `path` read-only, parse and check its header (npy_parse_header, npy_check_file_size).
 * `advice` is passed to madvise() for the whole mapping (MADV_NORMAL, MADV_WILLNEED,
 * MADV_RANDOM, …). A missing file, an empty or truncated one, each is an error naming path.
 * On failure *m is zeroed; 0 or -1.
 * Note: a file truncated by someone else after mapping makes later reads raise SIGBUS.
 */
int npy_map(NpyMap *m, const char *path, int advice);

/* Unmap (NULL base is fine) and zero *m. */
void npy_unmap(NpyMap *m);

/* ---- writing ------------------------------------------------------------------------- */

/* A .npy file written sequentially through a large stdio buffer. The header is reserved at
 * open (room for any shape of ndim dimensions) and written with the final shape at finish,
 * so the data offset never moves. All fields are private to npy.c. */
typedef struct NpyWriter {
    FILE *file;
    char *path;             /* owned copy */
    char *buffer;           /* owned stdio buffer */
    NpyDtype dtype;
    int ndim;
    size_t header_len;      /* reserved bytes before the data (a multiple of 64) */
    uint64_t data_bytes;    /* written so far */
} NpyWriter;

/*
 * Create `path` (it must not exist: opened exclusively) and reserve its header.
 * buffer_size is the stdio buffer (0: a default of 1 MiB). 0 or -1 naming the path.
 */
int npy_writer_open(NpyWriter *w, const char *path, NpyDtype dtype, int ndim,
                    size_t buffer_size);

/* Append raw data (already little-endian, item_size-aligned counts are the caller's job). */
int npy_writer_write(NpyWriter *w, const void *data, size_t bytes);

/* Append one integer as a little-endian element of the writer's dtype (checks its range). */
int npy_writer_write_int(NpyWriter *w, int64_t value);

/*
 * Write the header with the final shape (ndim dims), check that the data written is
 * exactly what the shape needs, flush, fsync and close. The file stays at path.
 * On failure the file is closed (and left for the caller to remove); 0 or -1.
 */
int npy_writer_finish(NpyWriter *w, const int64_t *shape);

/* Close without finishing and unlink the file (for aborts); safe on a zeroed writer. */
void npy_writer_discard(NpyWriter *w);

#endif
