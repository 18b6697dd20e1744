/* cmd_read.c — `imgset read`: loader-only throughput (images/s, MB/s, data-wait, latency). */
#define _XOPEN_SOURCE 700
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <xxhash.h>

#include "cli.h"
#include "clock.h"
#include "error.h"
#include "gpu.h"
#include "json.h"
#include "loader.h"
#include "measure.h"
#include "model.h"
#include "train.h"

static void read_usage(FILE *out)
{
    fprintf(out,
            "usage: imgset read URI [--split S] [--batch B] [--epochs E] [--workers W]\n"
            "                   [--size N|HxW] [--float] [--augment] [--seed S] [--no-shuffle]\n"
            "                   [--drop-last] [--rank R --world N] [--cold] [--digest]\n"
            "                   [--device cpu|cuda|auto] [--json FILE] [--ids FILE]\n\n"
            "Read batches through the loader only (no training) and report per epoch: images/s,\n"
            "MB/s of pixels delivered, mean data-wait per batch, first-batch latency; peak RSS.\n"
            "  --split S     train (default) or test\n"
            "  --batch B     images per batch (default 256)\n"
            "  --epochs E    timed epochs (default 3), after one untimed warm-up epoch\n"
            "  --workers W   prefetch threads (default 2; 0 = load in the main thread)\n"
            "  --size N      resize + center-crop every image to NxN (needed for mixed sizes)\n"
            "  --float       also produce normalised float32 NCHW, as training does\n"
            "  --augment     random crop (padding 4) and horizontal flip\n"
            "  --cold        no warm-up epoch; drop the page cache first where the machine\n"
            "                allows (drop_caches as root, else POSIX_FADV_DONTNEED per file)\n"
            "  --digest      print a digest of the whole batch sequence (indices, labels,\n"
            "                pixels): equal across stores and worker counts for one seed\n"
            "  --device D    cpu (default): batches in host memory; cuda: in GPU memory\n"
            "                (gpummap: stores are gathered by the GPU, others copied from pinned\n"
            "                memory; --float normalises on the GPU), adding host-to-device GB/s;\n"
            "                auto: cuda where a device is, else cpu (as train and predict)\n"
            "  --json FILE   the same numbers as JSON\n"
            "  --ids FILE    the dataset indices of every timed batch, a line per batch:\n"
            "                the epoch, then the indices (to check sharding)\n");
}

/* What the command line asked for. */
typedef struct ReadArgs {
    const char *uri;
    LoaderOptions loader;
    long long epochs;
    int cold, digest;
    const char *json, *ids;
} ReadArgs;

/* Clamp a parsed count into an int32 option. */
static int32_t clamp32(long long v)
{
    return (int32_t)(v > 1 << 20 ? 1 << 20 : v);
}

/* Parse argv into a; 0, or the exit status (2: bad usage, message printed; -1: --help). */
static int parse_read_args(int argc, char **argv, ReadArgs *a)
{
    static const struct option opts[] = {
        {"split", required_argument, 0, 'p'},   {"batch", required_argument, 0, 'b'},
        {"epochs", required_argument, 0, 'e'},  {"workers", required_argument, 0, 'w'},
        {"size", required_argument, 0, 'z'},    {"float", no_argument, 0, 'f'},
        {"augment", no_argument, 0, 'a'},       {"seed", required_argument, 0, 's'},
        {"no-shuffle", no_argument, 0, 'n'},    {"drop-last", no_argument, 0, 'd'},
        {"rank", required_argument, 0, 'r'},    {"world", required_argument, 0, 'W'},
        {"cold", no_argument, 0, 'c'},          {"digest", no_argument, 0, 'g'},
        {"json", required_argument, 0, 'j'},    {"device", required_argument, 0, 'D'},
        {"ids", required_argument, 0, 'i'},     {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    LoaderOptions *o = &a->loader;
    loader_options_default(o);
    o->workers = 2;
    a->epochs = 3;
    long long v;
    int c, device = MODEL_CPU;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if ((o->split = split_from_name(optarg)) < 0)
                return cli_error("read", imgset_error()), 2;
            break;
        case 'b':
            if ((v = cli_parse_count("read", "--batch", optarg)) < 0) return 2;
            if (v < 1) return cli_error("read", "--batch must be at least 1"), 2;
            o->batch_size = clamp32(v);
            break;
        case 'e':
            if ((a->epochs = cli_parse_count("read", "--epochs", optarg)) < 0) return 2;
            if (a->epochs < 1) return cli_error("read", "--epochs must be at least 1"), 2;
            break;
        case 'w':
            if ((v = cli_parse_count("read", "--workers", optarg)) < 0) return 2;
            o->workers = (int)(v > 256 ? 257 : v);
            break;
        case 'z':
            if (sscanf(optarg, "%dx%d", &o->height, &o->width) != 2) {
                if ((v = cli_parse_count("read", "--size", optarg)) < 1) return 2;
                o->height = o->width = clamp32(v);
            }
            break;
        case 'f': o->want_float = 1; break;
        case 'a': o->augment = 1; break;
        case 's':
            if ((v = cli_parse_count("read", "--seed", optarg)) < 0) return 2;
            o->seed = (uint64_t)v;
            break;
        case 'n': o->shuffle = 0; break;
        case 'd': o->drop_last = 1; break;
        case 'r':
            if ((v = cli_parse_count("read", "--rank", optarg)) < 0) return 2;
            o->rank = clamp32(v);
            break;
        case 'W':
            if ((v = cli_parse_count("read", "--world", optarg)) < 0) return 2;
            if (v < 1) return cli_error("read", "--world must be at least 1"), 2;
            o->world = clamp32(v);
            break;
        case 'c': a->cold = 1; break;
        case 'g': a->digest = 1; break;
        case 'j': a->json = optarg; break;
        case 'i': a->ids = optarg; break;
        case 'D':
            if ((device = cli_parse_device("read", optarg, 1)) == -2) return 2;
            break;
        case 'h': read_usage(stdout); return -1;
        default: read_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        read_usage(stderr);
        return 2;
    }
    a->uri = argv[optind];
#ifdef IMGSET_HAVE_CUDA
    if (device == TRAIN_AUTO)
        device = gpu_require_device("read") == 0 ? MODEL_CUDA : MODEL_CPU;
#endif
    if (device == TRAIN_AUTO)
        device = MODEL_CPU;
    o->device = device == MODEL_CUDA ? LOADER_CUDA : LOADER_HOST;
    return 0;
}

/* What the timed epochs do with each batch: the digest of the sequence (indices, labels and
 * pixels of every batch, in order; batches in GPU memory are downloaded first) and the --ids
 * lines. */
typedef struct Visit {
    XXH3_state_t *state;  /* NULL without --digest */
    size_t image_bytes;
    uint8_t *download;    /* host copy of a batch gathered on the device */
    size_t download_cap;
    FILE *ids;            /* NULL without --ids */
    long long epoch;
} Visit;

/* One line of --ids: the epoch, then the batch's dataset indices. */
static int write_batch_ids(Visit *v, const Batch *b)
{
    fprintf(v->ids, "%lld", v->epoch);
    for (int i = 0; i < b->count; i++)
        fprintf(v->ids, " %lld", (long long)b->indices[i]);
    fputc('\n', v->ids);
    return ferror(v->ids) ? imgset_fail("--ids: write failed") : 0;
}

static int visit_batch(void *ctx, const Batch *b)
{
    Visit *d = ctx;
    if (d->ids && write_batch_ids(d, b) < 0)
        return -1;
    if (!d->state)
        return 0;
    size_t bytes = (size_t)b->count * d->image_bytes;
    const uint8_t *pixels = b->pixels;
#ifdef IMGSET_HAVE_CUDA
    if (!pixels && b->device_pixels) {
        if (bytes > d->download_cap) {
            free(d->download);
            if (!(d->download = malloc(bytes)))
                return imgset_fail("out of memory for the digest's batch copy");
            d->download_cap = bytes;
        }
        if (gpu_download(d->download, b->device_pixels, bytes) < 0)
            return -1;
        pixels = d->download;
    }
#endif
    XXH3_128bits_update(d->state, b->indices, (size_t)b->count * sizeof *b->indices);
    XXH3_128bits_update(d->state, b->labels, (size_t)b->count * sizeof *b->labels);
    XXH3_128bits_update(d->state, pixels, bytes);
    return 0;
}

/* What the whole run measured, for the summary and the JSON. */
typedef struct ReadResult {
    ImageShape shape;
    size_t image_bytes;
    int64_t batches_per_epoch;
    double open_seconds, peak_rss_mb;
    double median, min, max;         /* images/s over the timed epochs */
    double copy_seconds, copied_gb;  /* host-to-device over every timed epoch */
    const char *cache_note;
    char digest[33];                 /* hex, "" without --digest */
    EpochStats *epochs;              /* (args.epochs) */
} ReadResult;

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The per-epoch line of the table. */
static void print_epoch(const ReadArgs *a, const ReadResult *r, long long e)
{
    const EpochStats *st = &r->epochs[e];
    double mb = (double)st->images * (double)r->image_bytes / 1e6;
    printf("%6lld %10lld %9.3f %11.0f %9.1f %13.3f %12.2f", e, (long long)st->images, st->seconds,
           epoch_images_per_s(st), epoch_mb_per_s(st, r->image_bytes), epoch_wait_ms(st),
           1e3 * st->first_batch_seconds);
    if (a->loader.device == LOADER_CUDA)
        printf(" %11.2f", st->copy_seconds > 0 ? mb / 1e3 / st->copy_seconds : 0);
    printf("\n");
}

/* One untimed warm-up epoch (unless cold), then the timed epochs into r->epochs, each
 * printed; the digest (when asked) covers the timed epochs. 0 or -1. */
static int read_epochs(const ReadArgs *a, Loader *l, ReadResult *r)
{
    Visit d = {a->digest ? XXH3_createState() : NULL, r->image_bytes, NULL, 0, NULL, 0};
    if (a->digest && !d.state)
        return imgset_fail("out of memory for the digest");
    if (a->ids && !(d.ids = fopen(a->ids, "w"))) {
        XXH3_freeState(d.state);
        return imgset_fail("%s: cannot write: %m", a->ids);
    }
    if (d.state)
        XXH3_128bits_reset(d.state);
    int rc = 0;
    EpochStats warm;
    if (!a->cold)
        rc = measure_epoch(l, 0, "warm-up", NULL, NULL, &warm);
    for (long long e = 0; e < a->epochs && rc == 0; e++) {
        d.epoch = e;
        rc = measure_epoch(l, (uint64_t)e, "read", d.state || d.ids ? visit_batch : NULL, &d,
                           &r->epochs[e]);
        if (rc == 0)
            print_epoch(a, r, e);
    }
    if (rc == 0 && d.state) {
        XXH128_hash_t h = XXH3_128bits_digest(d.state);
        snprintf(r->digest, sizeof r->digest, "%016llx%016llx", (unsigned long long)h.high64,
                 (unsigned long long)h.low64);
    }
    if (d.state)
        XXH3_freeState(d.state);
    if (d.ids && fclose(d.ids) != 0 && rc == 0)
        rc = imgset_fail("%s: write failed", a->ids);
    free(d.download);
    return rc;
}

/* Median, spread, host-to-device totals and peak RSS of the timed epochs. 0 or -1. */
static int summarise(const ReadArgs *a, ReadResult *r)
{
    double *rates = malloc((size_t)a->epochs * sizeof *rates);
    if (!rates)
        return imgset_fail("out of memory");
    for (long long e = 0; e < a->epochs; e++) {
        rates[e] = epoch_images_per_s(&r->epochs[e]);
        r->copy_seconds += r->epochs[e].copy_seconds;
        r->copied_gb += (double)r->epochs[e].images * (double)r->image_bytes / 1e9;
    }
    qsort(rates, (size_t)a->epochs, sizeof *rates, compare_double);
    long long n = a->epochs;
    r->median = n % 2 ? rates[n / 2] : (rates[n / 2 - 1] + rates[n / 2]) / 2;
    r->min = rates[0], r->max = rates[n - 1];
    free(rates);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    r->peak_rss_mb = (double)ru.ru_maxrss / 1024.0;
    return 0;
}

static void print_summary(const ReadArgs *a, const ReadResult *r)
{
    printf("median %.0f images/s (min %.0f, max %.0f), %.1f MB/s; open %.3f s; peak RSS %.0f MB\n",
           r->median, r->min, r->max, r->median * (double)r->image_bytes / 1e6, r->open_seconds,
           r->peak_rss_mb);
    if (a->loader.device == LOADER_CUDA)
        printf("host to device %.2f GB/s (%.3f s of copies for %.3f GB, %.3f ms per batch)\n",
               r->copy_seconds > 0 ? r->copied_gb / r->copy_seconds : 0, r->copy_seconds,
               r->copied_gb,
               1e3 * r->copy_seconds / (double)(a->epochs * r->batches_per_epoch));
    if (r->digest[0])
        printf("batch digest %s\n", r->digest);
}

/* The same numbers as JSON (keys documented in the README). 0 or -1. */
static int write_read_json(const ReadArgs *a, const ReadResult *r)
{
    FILE *f = fopen(a->json, "w");
    if (!f)
        return imgset_fail("%s: cannot write: %m", a->json);
    const LoaderOptions *o = &a->loader;
    Json j;
    json_start(&j, f, 0);
    json_object_begin(&j, NULL);
    json_string(&j, "uri", a->uri);
    json_string(&j, "split", split_names[o->split]);
    json_int(&j, "batch", o->batch_size);
    json_int(&j, "workers", o->workers);
    json_string(&j, "device", o->device == LOADER_CUDA ? "cuda" : "cpu");
    json_number(&j, "h2d_gb_per_s", "%.3f",
                r->copy_seconds > 0 ? r->copied_gb / r->copy_seconds : 0);
    json_number(&j, "h2d_seconds", "%.6f", r->copy_seconds);
    json_array_begin(&j, "image");
    json_int(&j, NULL, r->shape.height);
    json_int(&j, NULL, r->shape.width);
    json_int(&j, NULL, r->shape.channels);
    json_array_end(&j);
    json_bool(&j, "cold", a->cold);
    json_string(&j, "cache", r->cache_note);
    json_number(&j, "open_seconds", "%.6f", r->open_seconds);
    json_number(&j, "peak_rss_mb", "%.1f", r->peak_rss_mb);
    json_number(&j, "median_images_per_s", "%.1f", r->median);
    json_number(&j, "min_images_per_s", "%.1f", r->min);
    json_number(&j, "max_images_per_s", "%.1f", r->max);
    json_string(&j, "digest", r->digest);
    json_array_begin(&j, "epochs");
    for (long long e = 0; e < a->epochs; e++) {
        const EpochStats *st = &r->epochs[e];
        json_object_begin(&j, NULL);
        json_int(&j, "epoch", e);
        json_int(&j, "images", (long long)st->images);
        json_number(&j, "seconds", "%.6f", st->seconds);
        json_number(&j, "images_per_s", "%.1f", epoch_images_per_s(st));
        json_number(&j, "mb_per_s", "%.3f", epoch_mb_per_s(st, r->image_bytes));
        json_number(&j, "mean_wait_ms", "%.4f", epoch_wait_ms(st));
        json_number(&j, "first_batch_ms", "%.4f", 1e3 * st->first_batch_seconds);
        json_number(&j, "h2d_seconds", "%.6f", st->copy_seconds);
        json_object_end(&j);
    }
    json_array_end(&j);
    json_object_end(&j);
    return json_close_file(&j, f, a->json);
}

int cmd_read(int argc, char **argv)
{
    ReadArgs a;
    int usage = parse_read_args(argc, argv, &a);
    if (usage)
        return usage < 0 ? 0 : usage;
    ReadResult r = {0};
    r.cache_note = a.cold ? cli_drop_cache(a.uri) : "warm: one untimed epoch first";
    double t_open = monotonic_seconds();
    Loader *l = loader_open(a.uri, &a.loader);
    if (!l)
        return cli_error("read", imgset_error());
    r.open_seconds = monotonic_seconds() - t_open;
    r.shape = loader_shape(l);
    r.image_bytes = image_shape_bytes(r.shape);
    r.batches_per_epoch = loader_batches(l);
    printf("read %s  split %s  batch %d  workers %d  image %dx%dx%d  %lld batches/epoch  "
           "device %s\n%s\n", a.uri, split_names[a.loader.split], a.loader.batch_size,
           a.loader.workers, r.shape.height, r.shape.width, r.shape.channels,
           (long long)r.batches_per_epoch, a.loader.device == LOADER_CUDA ? "cuda" : "cpu",
           r.cache_note);
    printf("%6s %10s %9s %11s %9s %13s %12s%s\n", "epoch", "images", "seconds", "images/s",
           "MB/s", "wait/batch ms", "first ms", a.loader.device == LOADER_CUDA ? "   h2d GB/s" : "");
    int rc = (r.epochs = calloc((size_t)a.epochs, sizeof *r.epochs)) ? 0
             : imgset_fail("out of memory");
    if (rc == 0)
        rc = read_epochs(&a, l, &r);
    if (rc == 0)
        rc = summarise(&a, &r);
    if (rc == 0) {
        print_summary(&a, &r);
        if (a.json)
            rc = write_read_json(&a, &r);
    }
    free(r.epochs);
    loader_close(l);
    return rc < 0 ? cli_error("read", imgset_error()) : 0;
}
