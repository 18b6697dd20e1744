/* test_gpu.c — the loader's CUDA path: batches gathered and normalised on the GPU equal the
 * CPU loader's, for gpummap (zero-copy) and for a host store copied from pinned memory;
 * without a device, clear errors and the device tests reported as skipped with the reason. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "generate.h"
#include "gpu.h"
#include "loader.h"
#include "store.h"
#include "tap.h"
#include "transform.h"

static char scratch[] = "/tmp/imgset-test-gpu.XXXXXX";

/* The device tests, named once for running them and for skipping them. */
static const char *const device_tests[] = {
    "gather + normalise kernels on an unaligned 5x3x3 image equal transform_to_float",
    "gpummap_gather leaves other stores alone and refuses a bad index",
    "gpummap, 0 workers: device batches equal the CPU loader's",
    "gpummap, 2 workers: device batches equal the CPU loader's",
    "mmap --device cuda, 0 workers: device batches equal the CPU loader's",
    "mmap --device cuda, 2 workers: device batches equal the CPU loader's",
    "gpummap with augmentation (host path), 2 workers: device batches equal the CPU loader's",
};
enum { DEVICE_TESTS = sizeof device_tests / sizeof device_tests[0] };

#ifdef IMGSET_HAVE_CUDA
/* The kernels alone, on an image size that is not a multiple of 16 (the byte-wise gather). */
static void test_kernels(const char *name)
{
    enum { N = 4, H = 5, W = 3, C = 3, COUNT = 7, BYTES = H * W * C };
    uint8_t images[COUNT * BYTES], want_pixels[N * BYTES], got_pixels[N * BYTES];
    int64_t indices[N] = {6, 0, 3, 3};
    float want[N * BYTES], got[N * BYTES];
    const float mean[C] = {0.4914f, 0.4822f, 0.4465f}, std[C] = {0.247f, 0.243f, 0.261f};
    for (int i = 0; i < COUNT * BYTES; i++)
        images[i] = (uint8_t)(i * 37 + 11);
    for (int i = 0; i < N; i++)
        memcpy(want_pixels + i * BYTES, images + indices[i] * BYTES, BYTES);
    transform_to_float(want, want_pixels, N, H, W, C, mean, std);

    GpuStream *s = gpu_stream_create();
    uint8_t *d_images = gpu_device_alloc(sizeof images), *d_pixels = gpu_device_alloc(N * BYTES);
    int64_t *d_indices = gpu_device_alloc(sizeof indices);
    float *d_data = gpu_device_alloc(sizeof got);
    int rc = s && d_images && d_pixels && d_indices && d_data ? 0 : -1;
    if (rc == 0)
        rc = gpu_upload_async(s, d_images, images, sizeof images) < 0 ||
             gpu_upload_async(s, d_indices, indices, sizeof indices) < 0 ||
             gpu_gather_async(s, d_pixels, d_images, BYTES, d_indices, N, 0) < 0 ||
             gpu_normalise_async(s, d_data, d_pixels, N, H, W, C, mean, std) < 0 ||
             gpu_stream_wait(s, NULL) < 0 || gpu_download(got_pixels, d_pixels, N * BYTES) < 0 ||
             gpu_download(got, d_data, sizeof got) < 0 ? -1 : 0;
    double max_diff = 0;
    for (int i = 0; rc == 0 && i < N * BYTES; i++)
        max_diff = fmax(max_diff, fabs((double)got[i] - want[i]));
    ok(rc == 0 && memcmp(got_pixels, want_pixels, sizeof want_pixels) == 0 && max_diff <= 1e-6,
       "%s (max difference %g) %s", name, max_diff, rc < 0 ? imgset_error() : "");
    gpu_device_free(d_images);
    gpu_device_free(d_pixels);
    gpu_device_free(d_indices);
    gpu_device_free(d_data);
    gpu_stream_destroy(s);
}

/* gpummap_gather: 0 for an mmap store, -1 naming the index for an index past the end. */
static void test_gather_hook(const char *name, const char *mmap_uri, const char *gpummap_uri)
{
    Store *plain = store_open(mmap_uri), *mapped = store_open(gpummap_uri);
    GpuStream *s = gpu_stream_create();
    uint8_t *d_pixels = gpu_device_alloc(2 * 3072);
    int64_t *d_indices = gpu_device_alloc(2 * sizeof(int64_t));
    int64_t *indices = gpu_host_alloc(2 * sizeof(int64_t));
    int32_t labels[2];
    int other = -2, bad = -2;
    if (plain && mapped && s && d_pixels && d_indices && indices) {
        indices[0] = 1;
        indices[1] = 300;   /* the train split has 300 images */
        other = gpummap_gather(plain, SPLIT_TRAIN, indices, 2, s, d_pixels, d_indices, labels);
        bad = gpummap_gather(mapped, SPLIT_TRAIN, indices, 2, s, d_pixels, d_indices, labels);
    }
    ok(other == 0 && bad == -1 && strstr(imgset_error(), "index 300") &&
           strstr(imgset_error(), "train"),
       "%s: %s", name, imgset_error());
    gpu_host_free(indices);
    gpu_device_free(d_indices);
    gpu_device_free(d_pixels);
    gpu_stream_destroy(s);
    store_close(mapped);
    store_close(plain);
}

/* Read epoch 1 from a device loader on device_uri and a host loader on host_uri (same
 * options otherwise) and compare every batch: indices, labels, pixels exactly, floats within
 * 1e-6. `gathered`: whether the device loader should get its batches from the store's own
 * device gather (Batch.pixels NULL) rather than by a copy from pinned host memory. */
static void test_loader_pair(const char *name, const char *device_uri, const char *host_uri,
                             int workers, int augment, int gathered)
{
    LoaderOptions o;
    loader_options_default(&o);
    o.batch_size = 32;
    o.workers = workers;
    o.want_float = 1;
    o.augment = augment;
    o.seed = 5;
    o.mean[0] = 0.49f, o.mean[1] = 0.48f, o.mean[2] = 0.45f;
    o.std[0] = 0.25f, o.std[1] = 0.24f, o.std[2] = 0.26f;
    Loader *host = loader_open(host_uri, &o);
    o.device = LOADER_CUDA;
    Loader *dev = host ? loader_open(device_uri, &o) : NULL;
    size_t image_bytes = 32 * 32 * 3, values = (size_t)o.batch_size * image_bytes;
    uint8_t *pixels = malloc(values);
    float *data = malloc(values * sizeof *data);
    int same = host && dev && pixels && data, batches = 0, path_ok = 1, rc_host, rc_dev;
    double max_diff = 0, copy_seconds = 0;
    if (same && (loader_start_epoch(host, 1, 0) < 0 || loader_start_epoch(dev, 1, 0) < 0))
        same = 0;
    while (same) {
        const Batch *hb, *db;
        rc_host = loader_next(host, &hb);
        rc_dev = loader_next(dev, &db);
        if (rc_host != rc_dev || rc_host < 0) {
            same = 0;
            break;
        }
        if (rc_host == 0)
            break;
        batches++;
        copy_seconds += db->copy_seconds;
        path_ok &= (db->pixels == NULL) == gathered && db->data == NULL && db->device_data;
        size_t n = (size_t)hb->count;
        same = db->count == hb->count &&
               memcmp(db->indices, hb->indices, n * sizeof *hb->indices) == 0 &&
               memcmp(db->labels, hb->labels, n * sizeof *hb->labels) == 0 &&
               gpu_download(pixels, db->device_pixels, n * image_bytes) == 0 &&
               memcmp(pixels, hb->pixels, n * image_bytes) == 0 &&
               gpu_download(data, db->device_data, n * image_bytes * sizeof *data) == 0;
        for (size_t i = 0; same && i < n * image_bytes; i++)
            max_diff = fmax(max_diff, fabs((double)data[i] - hb->data[i]));
    }
    ok(same && path_ok && batches == 10 && max_diff <= 1e-6 && copy_seconds > 0,
       "%s (%d batches, max difference %g, %.3f ms of copies, %s) %s", name, batches, max_diff,
       1e3 * copy_seconds, path_ok ? "path as expected" : "WRONG PATH",
       same ? "" : imgset_error());
    free(pixels);
    free(data);
    loader_close(dev);
    loader_close(host);
}
#endif

/* The tests for a machine without a device (or a build without CUDA). */
static void test_without_device(const char *mmap_uri, const char *gpummap_uri,
                                const char *reason)
{
    Store *s = store_open(gpummap_uri);
#ifdef IMGSET_HAVE_CUDA
    ok(!s && strncmp(imgset_error(), "gpummap: no CUDA device", 23) == 0,
       "without a device gpummap: fails clearly: %s", imgset_error());
#else
    ok(!s && strstr(imgset_error(), "gpummap"), "a build without CUDA has no gpummap: store: %s",
       imgset_error());
#endif
    store_close(s);
    LoaderOptions o;
    loader_options_default(&o);
    o.device = LOADER_CUDA;
    Loader *l = loader_open(mmap_uri, &o);
    ok(!l && strstr(imgset_error(), "no CUDA device"),
       "without a device the loader refuses --device cuda: %s", imgset_error());
    loader_close(l);
    for (int i = 0; i < DEVICE_TESTS; i++)
        skip(device_tests[i], reason);
}

#ifdef IMGSET_HAVE_CUDA
static void test_with_device(const char *mmap_uri, const char *gpummap_uri)
{
    LoaderOptions o;
    loader_options_default(&o);
    o.device = 7;
    Loader *l = loader_open(mmap_uri, &o);
    ok(!l && strstr(imgset_error(), "device number 7"), "a bad device number is refused: %s",
       imgset_error());
    loader_close(l);
    test_kernels(device_tests[0]);
    test_gather_hook(device_tests[1], mmap_uri, gpummap_uri);
    test_loader_pair(device_tests[2], gpummap_uri, mmap_uri, 0, 0, 1);
    test_loader_pair(device_tests[3], gpummap_uri, mmap_uri, 2, 0, 1);
    test_loader_pair(device_tests[4], mmap_uri, mmap_uri, 0, 0, 0);
    test_loader_pair(device_tests[5], mmap_uri, mmap_uri, 2, 0, 0);
    test_loader_pair(device_tests[6], gpummap_uri, mmap_uri, 2, 1, 0);
}
#endif

int main(void)
{
    if (!mkdtemp(scratch))
        return perror("mkdtemp"), 1;
    char mmap_uri[256], gpummap_uri[256];
    snprintf(mmap_uri, sizeof mmap_uri, "mmap:%s/c", scratch);
    snprintf(gpummap_uri, sizeof gpummap_uri, "gpummap:%s/c", scratch);
    GenerateParams p = {"cifar10", 300, 50, 3};
    if (ok(store_copy(generate_open(&p), mmap_uri, NULL, NULL) == 0, "make a test store: %s",
           imgset_error())) {
#ifdef IMGSET_HAVE_CUDA
        if (gpu_require_device("gpu") == 0) {
            char gpu[256];
            gpu_describe(gpu, sizeof gpu);
            printf("# %s\n", gpu);
            if (strstr(gpu, "host emulation"))   /* test_gpu_emu: say so in every line */
                tap_prefix = "[host emulation, not a GPU] ";
            test_with_device(mmap_uri, gpummap_uri);
        } else {
            char reason[512];   /* "no CUDA device (why)", kept before other calls fail */
            snprintf(reason, sizeof reason, "%s", strstr(imgset_error(), "no CUDA device"));
            test_without_device(mmap_uri, gpummap_uri, reason);
        }
#else
        test_without_device(mmap_uri, gpummap_uri, "no CUDA device (this build has no CUDA)");
#endif
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", scratch);
    return tap_done();
}
