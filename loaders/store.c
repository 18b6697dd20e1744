/* store.c — the table of store backends, URI dispatch, checked calls and store_copy(). */
#include "store.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

extern const StoreOps store_files_ops;
extern const StoreOps store_mmap_ops;
#ifdef IMGSET_HAVE_HDF5
extern const StoreOps store_hdf5_ops;
#endif
#ifdef IMGSET_HAVE_LIBPQ
extern const StoreOps store_pg_ops;
#endif
#ifdef IMGSET_HAVE_CUDA
extern const StoreOps store_gpummap_ops;
#endif

/* Every backend compiled into this build. */
static const StoreOps *const backends[] = {
    &store_files_ops,
    &store_mmap_ops,
#ifdef IMGSET_HAVE_CUDA
    &store_gpummap_ops,
#endif
#ifdef IMGSET_HAVE_HDF5
    &store_hdf5_ops,
#endif
#ifdef IMGSET_HAVE_LIBPQ
    &store_pg_ops,
#endif
    NULL,
};

const StoreOps *const *store_backends(void)
{
    return backends;
}

/* 1 when uri starts with "scheme:". */
static int has_scheme(const char *uri, const char *scheme)
{
    size_t n = strlen(scheme);
    return strncmp(uri, scheme, n) == 0 && uri[n] == ':';
}

const StoreOps *store_ops_for_uri(const char *uri)
{
    for (const StoreOps *const *b = backends; *b; b++)
        if (has_scheme(uri, (*b)->scheme) || ((*b)->alias && has_scheme(uri, (*b)->alias)))
            return *b;
    char known[256] = "";
    for (const StoreOps *const *b = backends; *b; b++) {
        strncat(known, known[0] ? ", " : "", sizeof known - strlen(known) - 1);
        strncat(known, (*b)->scheme, sizeof known - strlen(known) - 1);
        strncat(known, ":", sizeof known - strlen(known) - 1);
    }
    const char *colon = strchr(uri, ':');
    if (!colon)
        return imgset_fail("store URI \"%s\" has no scheme (expected one of %s)", uri, known),
               NULL;
    return imgset_fail("store URI \"%s\": unknown or not built-in scheme \"%.*s\" (this build "
                       "has %s)", uri, (int)(colon - uri), uri, known), NULL;
}

/* A zeroed Store for ops with its URI strings set; NULL on allocation failure. */
static Store *store_new(const StoreOps *ops, const char *uri, const char *location)
{
    Store *s = calloc(1, sizeof *s);
    if (!s) {
        imgset_fail("out of memory");
        return NULL;
    }
    s->ops = ops;
    s->uri = strdup(uri);
    s->location = strdup(location);
    if (!s->uri || !s->location) {
        free(s->uri);
        free(s->location);
        free(s);
        imgset_fail("out of memory");
        return NULL;
    }
    return s;
}

static void store_free(Store *s)
{
    dataset_info_free(&s->info);
    free(s->uri);
    free(s->location);
    free(s);
}

/* Check what a backend's open() reported, so readers can trust it. */
static int check_info(const Store *s)
{
    const DatasetInfo *info = &s->info;
    if (info->num_classes < 1 || info->num_classes > IMGSET_MAX_CLASSES)
        return imgset_fail("%s: bad class count %d", s->uri, info->num_classes);
    for (int i = 0; i < SPLIT_COUNT; i++) {
        const SplitInfo *sp = &info->split[i];
        if (sp->count < 0)
            return imgset_fail("%s: %s split has a negative count", s->uri, split_names[i]);
        if (split_is_fixed(sp) && !image_shape_valid(sp->shape))
            return imgset_fail("%s: %s split has an invalid image shape %dx%dx%d", s->uri,
                               split_names[i], sp->shape.height, sp->shape.width,
                               sp->shape.channels);
    }
    return 0;
}

/* store_open_with() for a given reader number. */
static Store *open_reader(const StoreOps *ops, const char *name, const char *location,
                          const void *arg, int reader)
{
    if (!ops->open)
        return imgset_fail("%s: this store cannot be read", name), NULL;
    Store *s = store_new(ops, name, location);
    if (!s)
        return NULL;
    s->open_arg = arg;
    s->reader = reader;
    int rc = ops->open(s, location);
    s->open_arg = NULL;
    if (rc < 0) {
        store_free(s);
        return NULL;
    }
    if (check_info(s) < 0) {
        ops->close(s);
        store_free(s);
        return NULL;
    }
    return s;
}

Store *store_open_with(const StoreOps *ops, const char *name, const char *location,
                       const void *arg)
{
    return open_reader(ops, name, location, arg, 0);
}

Store *store_open_reader(const char *uri, int reader)
{
    const StoreOps *ops = store_ops_for_uri(uri);
    if (!ops)
        return NULL;
    if (reader < 0)
        return imgset_fail("%s: reader number %d is negative", uri, reader), NULL;
    return open_reader(ops, uri, strchr(uri, ':') + 1, NULL, reader);
}

Store *store_open(const char *uri)
{
    return store_open_reader(uri, 0);
}

Store *store_create(const char *uri, const DatasetInfo *info)
{
    const StoreOps *ops = store_ops_for_uri(uri);
    if (!ops)
        return NULL;
    if (!ops->create)
        return imgset_fail("%s: the %s store cannot be written", uri, ops->scheme), NULL;
    Store *s = store_new(ops, uri, strchr(uri, ':') + 1);
    if (!s)
        return NULL;
    if (dataset_info_copy(&s->info, info) < 0 || check_info(s) < 0 ||
        ops->create(s, s->location, &s->info) < 0) {
        store_free(s);
        return NULL;
    }
    s->writing = 1;
    return s;
}

/* Validate split and index against the store's counts. */
static int check_index(Store *s, int split, int64_t index)
{
    if (split < 0 || split >= SPLIT_COUNT)
        return imgset_fail("%s: bad split number %d", s->uri, split);
    if (index < 0 || index >= s->info.split[split].count)
        return imgset_fail("%s: %s index %lld out of range (the split has %lld images)", s->uri,
                           split_names[split], (long long)index,
                           (long long)s->info.split[split].count);
    return 0;
}

int store_image_shape(Store *s, int split, int64_t index, ImageShape *shape)
{
    if (check_index(s, split, index) < 0)
        return -1;
    if (split_is_fixed(&s->info.split[split])) {
        *shape = s->info.split[split].shape;
        return 0;
    }
    if (s->ops->image_shape(s, split, index, shape) < 0)
        return -1;
    if (!image_shape_valid(*shape))
        return imgset_fail("%s: %s image %lld has an invalid shape %dx%dx%d", s->uri,
                           split_names[split], (long long)index, shape->height, shape->width,
                           shape->channels);
    return 0;
}

int store_read_image(Store *s, int split, int64_t index, uint8_t *dst, size_t capacity,
                     ImageShape *shape, int32_t *label)
{
    if (check_index(s, split, index) < 0)
        return -1;
    if (s->ops->read_image(s, split, index, dst, capacity, shape, label) < 0)
        return -1;
    if (!image_shape_valid(*shape) || image_shape_bytes(*shape) > capacity)
        return imgset_fail("%s: %s image %lld: bad shape %dx%dx%d", s->uri, split_names[split],
                           (long long)index, shape->height, shape->width, shape->channels);
    if (*label < 0 || *label >= s->info.num_classes)
        return imgset_fail("%s: %s image %lld: label %d out of range 0..%d", s->uri,
                           split_names[split], (long long)index, *label,
                           s->info.num_classes - 1);
    return 0;
}

/* Every label of a gathered batch is a class of the data set. */
static int check_labels(Store *s, int split, const int64_t *indices, int n,
                        const int32_t *labels)
{
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= s->info.num_classes)
            return imgset_fail("%s: %s image %lld: label %d out of range 0..%d", s->uri,
                               split_names[split], (long long)indices[i], labels[i],
                               s->info.num_classes - 1);
    return 0;
}

int store_read_batch(Store *s, int split, const int64_t *indices, int n, uint8_t *dst,
                     int32_t *labels)
{
    if (split < 0 || split >= SPLIT_COUNT)
        return imgset_fail("%s: bad split number %d", s->uri, split);
    const SplitInfo *sp = &s->info.split[split];
    if (!split_is_fixed(sp))
        return imgset_fail("%s: the %s split has mixed image sizes; read it image by image",
                           s->uri, split_names[split]);
    size_t image_bytes = image_shape_bytes(sp->shape);
    for (int i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= sp->count)
            return check_index(s, split, indices[i]);
    if (s->ops->read_batch) {
        if (s->ops->read_batch(s, split, indices, n, dst, labels) < 0)
            return -1;
    } else {
        for (int i = 0; i < n; i++) {
            ImageShape shape;
            if (s->ops->read_image(s, split, indices[i], dst + (size_t)i * image_bytes,
                                   image_bytes, &shape, &labels[i]) < 0)
                return -1;
            if (!image_shape_equal(shape, sp->shape))
                return imgset_fail("%s: %s image %lld is %dx%dx%d, the split is %dx%dx%d",
                                   s->uri, split_names[split], (long long)indices[i],
                                   shape.height, shape.width, shape.channels, sp->shape.height,
                                   sp->shape.width, sp->shape.channels);
        }
    }
    return check_labels(s, split, indices, n, labels);
}

int store_can_read_batch_resized(const Store *s)
{
    return s->ops->read_batch_resized != NULL;
}

int store_read_batch_resized(Store *s, int split, const int64_t *indices, int n, ImageShape out,
                             uint8_t *dst, int32_t *labels)
{
    if (split < 0 || split >= SPLIT_COUNT)
        return imgset_fail("%s: bad split number %d", s->uri, split);
    if (!s->ops->read_batch_resized)
        return imgset_fail("%s: this store cannot resize batches itself", s->uri);
    for (int i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= s->info.split[split].count)
            return check_index(s, split, indices[i]);
    if (s->ops->read_batch_resized(s, split, indices, n, out, dst, labels) < 0)
        return -1;
    return check_labels(s, split, indices, n, labels);
}

int store_write_image(Store *s, int split, const uint8_t *pixels, ImageShape shape,
                      int32_t label)
{
    if (!s->writing)
        return imgset_fail("%s: not open for writing", s->uri);
    if (split < 0 || split >= SPLIT_COUNT)
        return imgset_fail("%s: bad split number %d", s->uri, split);
    for (int later = split + 1; later < SPLIT_COUNT; later++)
        if (s->written[later] > 0)
            return imgset_fail("%s: %s images must be written before %s images", s->uri,
                               split_names[split], split_names[later]);
    const SplitInfo *sp = &s->info.split[split];
    int64_t index = s->written[split];
    if (index >= sp->count)
        return imgset_fail("%s: more %s images than the %lld announced", s->uri,
                           split_names[split], (long long)sp->count);
    if (!image_shape_valid(shape))
        return imgset_fail("%s: %s image %lld: invalid shape %dx%dx%d", s->uri,
                           split_names[split], (long long)index, shape.height, shape.width,
                           shape.channels);
    if (split_is_fixed(sp) && !image_shape_equal(shape, sp->shape))
        return imgset_fail("%s: %s image %lld is %dx%dx%d, the split is %dx%dx%d", s->uri,
                           split_names[split], (long long)index, shape.height, shape.width,
                           shape.channels, sp->shape.height, sp->shape.width,
                           sp->shape.channels);
    if (label < 0 || label >= s->info.num_classes)
        return imgset_fail("%s: %s image %lld: label %d out of range 0..%d", s->uri,
                           split_names[split], (long long)index, label,
                           s->info.num_classes - 1);
    if (s->ops->write_image(s, split, pixels, shape, label) < 0)
        return -1;
    s->written[split]++;
    return 0;
}

int store_commit(Store *s)
{
    if (!s->writing) {
        store_close(s);
        return imgset_fail("store_commit: store was not being written");
    }
    for (int i = 0; i < SPLIT_COUNT; i++)
        if (s->written[i] != s->info.split[i].count) {
            imgset_fail("%s: %s split got %lld images, %lld were announced", s->uri,
                        split_names[i], (long long)s->written[i],
                        (long long)s->info.split[i].count);
            store_close(s);
            return -1;
        }
    int rc = s->ops->commit(s);
    if (rc < 0)
        s->ops->abort(s);
    s->writing = 0;
    store_free(s);
    return rc < 0 ? -1 : 0;
}

void store_close(Store *s)
{
    if (!s)
        return;
    if (s->writing)
        s->ops->abort(s);
    else if (s->ops->close)
        s->ops->close(s);
    store_free(s);
}

/* ---- the first images of a store ---------------------------------------------------- */

typedef struct HeadArg {
    const char *uri;
    const int64_t *count;
} HeadArg;

static int head_open(Store *s, const char *location)
{
    const HeadArg *arg = s->open_arg;
    Store *inner = store_open(arg->uri);
    if (!inner)
        return -1;
    if (dataset_info_copy(&s->info, &inner->info) < 0) {
        store_close(inner);
        return imgset_fail("%s: out of memory", arg->uri);
    }
    for (int split = 0; split < SPLIT_COUNT; split++)
        if (arg->count[split] < s->info.split[split].count)
            s->info.split[split].count = arg->count[split] < 0 ? 0 : arg->count[split];
    s->impl = inner;
    return 0;
}

static int head_image_shape(Store *s, int split, int64_t index, ImageShape *shape)
{
    return store_image_shape(s->impl, split, index, shape);
}

static int head_read_image(Store *s, int split, int64_t index, uint8_t *dst, size_t capacity,
                           ImageShape *shape, int32_t *label)
{
    return store_read_image(s->impl, split, index, dst, capacity, shape, label);
}

static int head_read_batch(Store *s, int split, const int64_t *indices, int n, uint8_t *dst,
                           int32_t *labels)
{
    return store_read_batch(s->impl, split, indices, n, dst, labels);
}

static void head_close(Store *s)
{
    store_close(s->impl);
    s->impl = NULL;
}

static const StoreOps head_ops = {
    .scheme = "head",
    .summary = "the first images of another store",
    .open = head_open,
    .image_shape = head_image_shape,
    .read_image = head_read_image,
    .close = head_close,
    .read_batch = head_read_batch,
};

Store *store_open_head(const char *uri, const int64_t count[SPLIT_COUNT])
{
    HeadArg arg = {uri, count};
    return store_open_with(&head_ops, uri, uri, &arg);
}

int store_split_channels(Store *s, int split)
{
    const SplitInfo *info = &s->info.split[split];
    if (split_is_fixed(info))
        return info->shape.channels;
    ImageShape shape;
    if (info->count < 1)
        return imgset_fail("%s: the %s split is empty", s->uri, split_names[split]);
    return store_image_shape(s, split, 0, &shape) < 0 ? -1 : shape.channels;
}

int store_read_image_grow(Store *s, int split, int64_t index, uint8_t **buf, size_t *capacity,
                          ImageShape *shape, int32_t *label)
{
    if (store_image_shape(s, split, index, shape) < 0)
        return -1;
    size_t need = image_shape_bytes(*shape);
    if (need > *capacity) {
        uint8_t *bigger = realloc(*buf, need);
        if (!bigger)
            return imgset_fail("out of memory for a %zu-byte image", need);
        *buf = bigger;
        *capacity = need;
    }
    return store_read_image(s, split, index, *buf, *capacity, shape, label);
}

int store_copy(Store *src, const char *dst_uri, ProgressFn progress, void *progress_ctx)
{
    Store *dst = store_create(dst_uri, &src->info);
    if (!dst)
        return -1;
    int64_t total = src->info.split[SPLIT_TRAIN].count + src->info.split[SPLIT_TEST].count;
    int64_t done = 0;
    uint8_t *buf = NULL;
    size_t cap = 0;
    for (int split = 0; split < SPLIT_COUNT; split++) {
        for (int64_t i = 0; i < src->info.split[split].count; i++) {
            ImageShape shape;
            int32_t label;
            if (store_read_image_grow(src, split, i, &buf, &cap, &shape, &label) < 0 ||
                store_write_image(dst, split, buf, shape, label) < 0)
                goto fail;
            done++;
            if (progress && progress(progress_ctx, done, total)) {
                imgset_fail("%s: interrupted", dst_uri);
                goto fail;
            }
        }
    }
    free(buf);
    return store_commit(dst);

fail:
    free(buf);
    store_close(dst);
    return -1;
}
