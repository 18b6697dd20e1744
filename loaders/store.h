/* store.h — one interface for every place a data set can live (files, mmap, hdf5, pg, …). */
#ifndef IMGSET_STORE_H
#define IMGSET_STORE_H

#include "dataset.h"

typedef struct Store Store;

/*
 * A store backend is one table of function pointers. A backend implements reading, writing
 * or both; the entries it does not implement are NULL. Backends are listed in one static
 * table in store.c, compiled in or out by build flags (IMGSET_HAVE_HDF5, …), and chosen by
 * the URI scheme — never by an if-chain on a type.
 *
 * Reading: open() fills s->info; image_shape() and read_image() are random access.
 * Writing: create() gets the whole DatasetInfo (counts and shapes known up front); then
 * write_image() is called in order — every train image, then every test image — and
 * commit() makes the store appear atomically (written under a temporary name, renamed at
 * the end). abort() removes whatever create()/write_image() left. A store that was created
 * and never committed must never look valid.
 *
 * All functions return 0 on success and -1 with imgset_fail() on failure.
 * A Store is used by one thread at a time.
 */
typedef struct StoreOps {
    const char *scheme;        /* URI scheme before ':' ("files", "mmap", "hdf5", …) */
    const char *alias;         /* a second scheme for the same backend ("postgres"), or NULL */
    const char *summary;       /* one line for `imgset --help` */

    int (*open)(Store *s, const char *location);
    int (*image_shape)(Store *s, int split, int64_t index, ImageShape *shape);
    /* Copy image `index` of `split` into dst (capacity bytes); set its shape and label. */
    int (*read_image)(Store *s, int split, int64_t index, uint8_t *dst, size_t capacity,
                      ImageShape *shape, int32_t *label);
    void (*close)(Store *s);

    int (*create)(Store *s, const char *location, const DatasetInfo *info);
    int (*write_image)(Store *s, int split, const uint8_t *pixels, ImageShape shape,
                       int32_t label);
    int (*commit)(Store *s);
    void (*abort)(Store *s);

    /* Optional fast path for loaders: gather images indices[0..n-1] of a fixed-shape split
     * into dst ((n, H, W, C), packed) and their labels. NULL: store.c loops over read_image. */
    int (*read_batch)(Store *s, int split, const int64_t *indices, int n, uint8_t *dst,
                      int32_t *labels);

    /* Optional fast path for loaders that resize (mixed sizes, or --size): gather images
     * indices[0..n-1] of any split, each resized + center-cropped to out (height x width) as
     * transform_resize_crop() does — byte for byte, so batches are the same with or without
     * it — into dst ((n, out), packed) and their labels. An image without out.channels
     * channels is an error naming it. NULL: the loader reads and resizes image by image. */
    int (*read_batch_resized)(Store *s, int split, const int64_t *indices, int n,
                              ImageShape out, uint8_t *dst, int32_t *labels);
} StoreOps;

struct Store {
    const StoreOps *ops;
    char *uri;            /* the whole URI as given, for messages */
    char *location;       /* the URI after "scheme:" */
    DatasetInfo info;     /* filled by open() / copied from create()'s argument */
    int writing;          /* 1 between create and commit/abort */
    int64_t written[SPLIT_COUNT];  /* images written so far per split (kept by store.c) */
    void *impl;           /* the backend's own state */
    const void *open_arg; /* store_open_with()'s arg, for open() only (importer options) */
    int reader;           /* which of several readers of one data set this is
                           * (store_open_reader), so a store served by several servers can
                           * spread them; 0 otherwise */
};

/* The backend for a URI's scheme, or NULL with imgset_fail() naming the URI. */
const StoreOps *store_ops_for_uri(const char *uri);

/* The registered backends, NULL-terminated (for --help and tests). */
const StoreOps *const *store_backends(void);

/* Open a store for reading; NULL with imgset_fail(). Free with store_close(). */
Store *store_open(const char *uri);

/* store_open for reader number `reader` (>= 0) of many reading one data set at once (a
 * loader's: rank + world * worker). A store served by several servers (postgresql:// with
 * several hosts) starts that reader on server reader mod servers; other stores ignore it. */
Store *store_open_reader(const char *uri, int reader);

/* Open a reader with the given ops (importers and generators use this: they are stores
 * without a URI scheme). `name` is used in messages; `arg` (borrowed, may be NULL) is seen by
 * ops->open() as s->open_arg, for options that do not fit in a location string.
 * NULL with imgset_fail(). */
Store *store_open_with(const StoreOps *ops, const char *name, const char *location,
                       const void *arg);

/* A reader of the first count[split] images of each split of the store at uri (all of a
 * split with fewer), e.g. to bench or copy part of a data set. NULL with imgset_fail(). */
Store *store_open_head(const char *uri, const int64_t count[SPLIT_COUNT]);

/* Start writing a store; NULL with imgset_fail(). Finish with store_commit() or store_close(). */
Store *store_create(const char *uri, const DatasetInfo *info);

/* Checked wrappers: split/index bounds, shapes and write order are validated here, so
 * backends may trust their arguments. */
int store_image_shape(Store *s, int split, int64_t index, ImageShape *shape);
int store_read_image(Store *s, int split, int64_t index, uint8_t *dst, size_t capacity,
                     ImageShape *shape, int32_t *label);
int store_write_image(Store *s, int split, const uint8_t *pixels, ImageShape shape,
                      int32_t label);

/* store_read_image into *buf, grown (realloc) to fit the image: for loops that read images of
 * any size one by one. *buf = NULL, *capacity = 0 to start; free(*buf) at the end. */
int store_read_image_grow(Store *s, int split, int64_t index, uint8_t **buf, size_t *capacity,
                          ImageShape *shape, int32_t *label);

/* The channels of a split's images: its fixed shape's, else image 0's (a ragged split's
 * images share their channel count). -1 with imgset_fail() for an empty split or a read
 * error. */
int store_split_channels(Store *s, int split);

/* Gather a batch of a fixed-shape split: dst holds n * image bytes, labels n entries.
 * Indices are checked; labels are checked against the class count. 0 or -1. */
int store_read_batch(Store *s, int split, const int64_t *indices, int n, uint8_t *dst,
                     int32_t *labels);

/* The store's read_batch_resized, with indices and labels checked; only for stores that have
 * one (store_can_read_batch_resized). 0 or -1. */
int store_can_read_batch_resized(const Store *s);
int store_read_batch_resized(Store *s, int split, const int64_t *indices, int n, ImageShape out,
                             uint8_t *dst, int32_t *labels);

/* Finish a written store (checks every split got its count) and free it; 0 or -1.
 * On failure the store is aborted and freed. */
int store_commit(Store *s);

/* Close a reader, or abort an uncommitted writer, and free. NULL is fine. */
void store_close(Store *s);

/* Called as work progresses: done out of total images. A non-zero return asks the work to
 * stop (Ctrl-C): it then fails with "interrupted" and cleans up. */
typedef int (*ProgressFn)(void *ctx, int64_t done, int64_t total);

/* Copy every image of src, in order, into a new store at dst_uri; 0 or -1.
 * An interrupted or failed copy leaves nothing that looks like a store at dst_uri. */
int store_copy(Store *src, const char *dst_uri, ProgressFn progress, void *progress_ctx);

#endif
