/* import.h — real data sets as read-only stores: CIFAR-10 binary batches and MNIST-style IDX. */
#ifndef IMGSET_IMPORT_H
#define IMGSET_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#include "dataset.h"
#include "store.h"

/*
 * CIFAR-10, binary version: dir holds data_batch_1.bin … data_batch_5.bin (train),
 * test_batch.bin (test) and batches.meta.txt (the 10 class names, one per line; blank lines
 * ignored). A record is 1 label byte (0..9) + 3072 pixel bytes (1024 R, then G, then B,
 * each 32x32 row-major); images come out 32x32x3 channels-last.
 * data_batch_1.bin and test_batch.bin are required; data_batch_2..5 are read when present
 * (a subset such as data_batch_1..2 imports fewer train images), but a gap (data_batch_3
 * without data_batch_2) is an error. The files are read into memory at open.
 * Data set name "cifar10". NULL with imgset_fail() naming the file. Free with store_close().
 */
Store *import_cifar10_open(const char *dir);

/*
 * MNIST-style IDX files (MNIST, Fashion-MNIST, …): images have magic 0x00000803 (uint8,
 * dims N x H x W), labels 0x00000801 (uint8, dim N). Each file may be plain or gzip'd
 * (detected by the 1f 8b magic) and is read into memory at open. The test pair may both be
 * NULL: the test split is then empty. Channels = 1.
 * Classes: 10 ("0".."9") when every label is in 0..9 (MNIST's convention, so that a subset
 * lacking the 9s still has the usual classes); otherwise max label + 1, named by number.
 * Data set name: the directory holding train_images ("fashion-mnist" for
 * /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz), or "idx" when that is "."
 * or "/". NULL with imgset_fail() naming the file. Free with store_close().
 */
Store *import_idx_open(const char *train_images, const char *train_labels,
                       const char *test_images, const char *test_labels);

/* Read a whole file into a malloc'd buffer (caller frees *data); 0, or -1 with imgset_fail()
 * naming the path. Refuses files larger than max_bytes. */
int import_read_file(const char *path, size_t max_bytes, uint8_t **data, size_t *size);

/* ---- for tests and fuzzing: the parsers, on memory buffers ------------------------------ */

#define CIFAR10_SIDE 32
#define CIFAR10_RECORD (1 + 3 * CIFAR10_SIDE * CIFAR10_SIDE)   /* 3073 bytes */
#define CIFAR10_CLASSES 10

/* Check a batch file's bytes: size a multiple of CIFAR10_RECORD and every label 0..9.
 * Sets *records; 0, or -1 with imgset_fail() naming `file` (and the record). */
int cifar10_check_batch(const uint8_t *data, size_t size, const char *file, int64_t *records);

/* One record (CIFAR10_RECORD bytes) to a 32x32x3 channels-last image and its label. */
void cifar10_record_to_hwc(const uint8_t *record, uint8_t *dst /* (32, 32, 3) */,
                           int32_t *label);

/* Parse batches.meta.txt (size bytes, not NUL-terminated) into info's class names: exactly
 * 10 non-blank lines, surrounding whitespace trimmed, no control characters or '/'.
 * 0, or -1 with imgset_fail() naming `file`. */
int cifar10_parse_meta(const uint8_t *text, size_t size, const char *file, DatasetInfo *info);

/* An IDX array of unsigned bytes, pointing into the buffer it was parsed from. */
typedef struct IdxArray {
    int ndims;              /* 1 (labels) or 3 (images) */
    uint32_t dims[3];       /* (N) or (N, H, W) */
    const uint8_t *data;    /* dims[0] * … * dims[ndims-1] bytes */
    size_t data_size;
} IdxArray;

/* If data starts with the gzip magic, inflate it into a new malloc'd buffer (at most
 * max_bytes; concatenated gzip members are joined); otherwise copy it. Caller frees *out.
 * 0, or -1 with imgset_fail() naming `file`. */
int idx_decode(const uint8_t *data, size_t size, const char *file, size_t max_bytes,
               uint8_t **out, size_t *out_size);

/* Parse an (already decoded) IDX buffer that must hold uint8 data with `ndims` dimensions
 * (3 for images, 1 for labels): magic, dims within IMGSET_MAX_SIDE and size_t, exact size.
 * 0, or -1 with imgset_fail() naming `file` (expected vs found). */
int idx_parse(const uint8_t *data, size_t size, int ndims, const char *file, IdxArray *out);

/* Check an images/labels pair (same count) and find the largest label; 0, or -1 with
 * imgset_fail() naming both files. */
int idx_check_pair(const IdxArray *images, const char *images_file, const IdxArray *labels,
                   const char *labels_file, int32_t *max_label);

#endif
