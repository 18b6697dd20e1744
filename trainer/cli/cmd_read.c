/* cmd_read.c — `imgset read`: loader-only throughput (images/s, MB/s, data-wait, latency). */
#define _XOPEN_SOURCE 700
#include <errno.h>
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
#include "loader.h"
#include "progress.h"

static void read_usage(FILE *out)
{
    fprintf(out,
            "usage: imgset read URI [--split S] [--batch B] [--epochs E] [--workers W]\n"
            "                   [--size N|HxW] [--float] [--augment] [--seed S] [--no-shuffle]\n"
            "                   [--drop-last] [--rank R --world N] [--cold] [--digest]\n"
            "                   [--device host|cuda] [--json FILE] [--ids FILE]\n\n"
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
            "  --device D    host (default), or cuda: batches land in GPU memory (gpummap:\n"
            "                stores are gathered by the GPU, others copied from pinned memory;\n"
            "                --float normalises on the GPU); adds host-to-device GB/s\n"
            "  --json FILE   the same numbers as JSON\n"
            "  --ids FILE    the dataset indices of every timed batch, a line per batch:\n"
            "                the epoch, then the indices (to check sharding)\n");
}

typedef struct EpochStats {
    int64_t images;
    double seconds, wait_seconds, first_batch_seconds;
    double copy_seconds;      /* host-to-device transfers (--device cuda) */
    int64_t batches;
} EpochStats;

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One line of --ids: the epoch, then the batch's dataset indices. */
static void write_batch_ids(FILE *out, long long epoch, const Batch *b)
{
    fprintf(out, "%lld", epoch);
    for (int i = 0; i < b->count; i++)
        fprintf(out, " %lld", (long long)b->indices[i]);
    fputc('\n', out);
}

int cmd_read(int argc, char **argv)
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
        {"ids", required_argument, 0, 'i'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    LoaderOptions o;
    loader_options_default(&o);
    o.workers = 2;
    long long epochs = 3, v;
    int cold = 0, want_digest = 0;
    const char *json_path = NULL, *ids_path = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if ((o.split = split_from_name(optarg)) < 0)
                return fprintf(stderr, "imgset read: %s\n", imgset_error()), 2;
            break;
        case 'b':
            if ((v = cli_parse_count("read", "--batch", optarg)) < 0) return 2;
            if (v < 1) return fprintf(stderr, "imgset read: --batch must be at least 1\n"), 2;
            o.batch_size = (int32_t)(v > 1 << 20 ? 1 << 20 : v);
            break;
        case 'e':
            if ((epochs = cli_parse_count("read", "--epochs", optarg)) < 0) return 2;
            if (epochs < 1) return fprintf(stderr, "imgset read: --epochs must be at least 1\n"), 2;
            break;
        case 'w':
            if ((v = cli_parse_count("read", "--workers", optarg)) < 0) return 2;
            o.workers = (int)(v > 256 ? 257 : v);
            break;
        case 'z':
            if (sscanf(optarg, "%dx%d", &o.height, &o.width) != 2) {
                if ((v = cli_parse_count("read", "--size", optarg)) < 1) return 2;
                o.height = o.width = (int32_t)(v > 1 << 20 ? 1 << 20 : v);
            }
            break;
        case 'f': o.want_float = 1; break;
        case 'a': o.augment = 1; break;
        case 's':
            if ((v = cli_parse_count("read", "--seed", optarg)) < 0) return 2;
            o.seed = (uint64_t)v;
            break;
        case 'n': o.shuffle = 0; break;
        case 'd': o.drop_last = 1; break;
        case 'r':
            if ((v = cli_parse_count("read", "--rank", optarg)) < 0) return 2;
            o.rank = (int32_t)(v > 1 << 20 ? 1 << 20 : v);
            break;
        case 'W':
            if ((v = cli_parse_count("read", "--world", optarg)) < 0) return 2;
            if (v < 1) return fprintf(stderr, "imgset read: --world must be at least 1\n"), 2;
            o.world = (int32_t)(v > 1 << 20 ? 1 << 20 : v);
            break;
        case 'c': cold = 1; break;
        case 'g': want_digest = 1; break;
        case 'j': json_path = optarg; break;
        case 'i': ids_path = optarg; break;
        case 'D':
            if (strcmp(optarg, "host") == 0) {
                o.device = LOADER_HOST;
            } else if (strcmp(optarg, "cuda") == 0) {
                o.device = LOADER_CUDA;
            } else {
                fprintf(stderr, "imgset read: --device must be host or cuda, not \"%s\"\n",
                        optarg);
                return 2;
            }
            break;
        case 'h': read_usage(stdout); return 0;
        default: read_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        read_usage(stderr);
        return 2;
    }
    const char *uri = argv[optind];
    const char *cache_note = cold ? cli_drop_cache(uri) : "warm: one untimed epoch first";

    double t_open = monotonic_seconds();
    Loader *l = loader_open(uri, &o);
    if (!l)
        return cli_error("read", imgset_error());
    double open_seconds = monotonic_seconds() - t_open;
    FILE *ids = ids_path ? fopen(ids_path, "w") : NULL;
    if (ids_path && !ids) {
        fprintf(stderr, "imgset read: %s: %s\n", ids_path, strerror(errno));
        loader_close(l);
        return 1;
    }
    ImageShape shape = loader_shape(l);
    const char *device = o.device == LOADER_CUDA ? "cuda" : "host";
    printf("read %s  split %s  batch %d  workers %d  image %dx%dx%d  %lld batches/epoch  "
           "device %s\n%s\n", uri, split_names[o.split], o.batch_size, o.workers, shape.height,
           shape.width, shape.channels, (long long)loader_batches(l), device, cache_note);
    printf("%6s %10s %9s %11s %9s %13s %12s%s\n", "epoch", "images", "seconds", "images/s",
           "MB/s", "wait/batch ms", "first ms", o.device == LOADER_CUDA ? "   h2d GB/s" : "");
    size_t image_bytes = image_shape_bytes(shape);
    uint8_t *download = NULL;    /* host copy of a batch gathered on the device, for --digest */

    XXH3_state_t *digest = want_digest ? XXH3_createState() : NULL;
    if (digest)
        XXH3_128bits_reset(digest);
    EpochStats *stats = calloc((size_t)epochs, sizeof *stats);
    int rc = 0;
    int warmup = cold ? 0 : 1;
    for (long long e = -warmup; e < epochs && rc == 0; e++) {
        uint64_t epoch = (uint64_t)(e < 0 ? 0 : e);
        Progress bar;
        progress_start(&bar, e < 0 ? "warm-up" : "read");
        if (loader_start_epoch(l, epoch, 0) < 0) {
            rc = -1;
            break;
        }
        EpochStats st = {0};
        double start = monotonic_seconds();
        const Batch *b;
        int got;
        while ((got = loader_next(l, &b)) == 1) {
            if (st.batches == 0)
                st.first_batch_seconds = monotonic_seconds() - start;
            st.images += b->count;
            st.wait_seconds += b->wait_seconds;
            st.copy_seconds += b->copy_seconds;
            st.batches++;
            if (digest && e >= 0) {
                const uint8_t *pixels = b->pixels;
#ifdef IMGSET_HAVE_CUDA
                if (!pixels && b->device_pixels) {
                    if (!download && !(download = malloc((size_t)o.batch_size * image_bytes))) {
                        imgset_fail("out of memory for the digest's batch copy");
                        got = -1;
                        break;
                    }
                    if (gpu_download(download, b->device_pixels,
                                     (size_t)b->count * image_bytes) < 0) {
                        got = -1;
                        break;
                    }
                    pixels = download;
                }
#endif
                XXH3_128bits_update(digest, b->indices, (size_t)b->count * sizeof *b->indices);
                XXH3_128bits_update(digest, b->labels, (size_t)b->count * sizeof *b->labels);
                XXH3_128bits_update(digest, pixels, (size_t)b->count * image_bytes);
            }
            if (ids && e >= 0)
                write_batch_ids(ids, e, b);
            if (progress_update(&bar, st.batches, loader_batches(l))) {
                imgset_fail("interrupted");
                got = -1;
                break;
            }
        }
        st.seconds = monotonic_seconds() - start;
        progress_finish(&bar);
        if (got < 0) {
            rc = -1;
            break;
        }
        if (e < 0)
            continue;
        stats[e] = st;
        double mb = (double)st.images * (double)image_bytes / 1e6;
        printf("%6lld %10lld %9.3f %11.0f %9.1f %13.3f %12.2f", e, (long long)st.images,
               st.seconds, st.images / st.seconds, mb / st.seconds,
               st.batches ? 1e3 * st.wait_seconds / (double)st.batches : 0,
               1e3 * st.first_batch_seconds);
        if (o.device == LOADER_CUDA)
            printf(" %11.2f", st.copy_seconds > 0 ? mb / 1e3 / st.copy_seconds : 0);
        printf("\n");
    }
    free(download);
    if (ids && fclose(ids) != 0 && rc == 0)
        rc = imgset_fail("%s: %s", ids_path, strerror(errno));
    if (rc < 0) {
        fprintf(stderr, "imgset read: %s\n", imgset_error());
        free(stats);
        if (digest)
            XXH3_freeState(digest);
        loader_close(l);
        return 1;
    }

    double *rates = malloc((size_t)epochs * sizeof *rates);
    for (long long e = 0; e < epochs; e++)
        rates[e] = stats[e].images / stats[e].seconds;
    qsort(rates, (size_t)epochs, sizeof *rates, compare_double);
    double median = epochs % 2 ? rates[epochs / 2] : (rates[epochs / 2 - 1] + rates[epochs / 2]) / 2;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double peak_rss_mb = (double)ru.ru_maxrss / 1024.0;
    printf("median %.0f images/s (min %.0f, max %.0f), %.1f MB/s; open %.3f s; peak RSS %.0f MB\n",
           median, rates[0], rates[epochs - 1], median * image_bytes / 1e6, open_seconds,
           peak_rss_mb);
    /* Host-to-device rate over every timed epoch: bytes moved / time spent moving them. */
    double copy_seconds = 0, copied_gb = 0;
    for (long long e = 0; e < epochs; e++) {
        copy_seconds += stats[e].copy_seconds;
        copied_gb += (double)stats[e].images * (double)image_bytes / 1e9;
    }
    double h2d_gb_per_s = copy_seconds > 0 ? copied_gb / copy_seconds : 0;
    if (o.device == LOADER_CUDA)
        printf("host to device %.2f GB/s (%.3f s of copies for %.3f GB, %.3f ms per batch)\n",
               h2d_gb_per_s, copy_seconds, copied_gb,
               1e3 * copy_seconds / (double)(epochs * loader_batches(l)));
    char digest_hex[33] = "";
    if (digest) {
        XXH128_hash_t h = XXH3_128bits_digest(digest);
        snprintf(digest_hex, sizeof digest_hex, "%016llx%016llx", (unsigned long long)h.high64,
                 (unsigned long long)h.low64);
        printf("batch digest %s\n", digest_hex);
        XXH3_freeState(digest);
    }
    if (json_path) {
        FILE *j = fopen(json_path, "w");
        if (!j) {
            perror(json_path);
            rc = -1;
        } else {
            fprintf(j, "{\"uri\": \"%s\", \"split\": \"%s\", \"batch\": %d, \"workers\": %d, "
                       "\"device\": \"%s\", \"h2d_gb_per_s\": %.3f, \"h2d_seconds\": %.6f, "
                       "\"image\": [%d, %d, %d], \"cold\": %s, \"cache\": \"%s\", "
                       "\"open_seconds\": %.6f, \"peak_rss_mb\": %.1f, "
                       "\"median_images_per_s\": %.1f, \"min_images_per_s\": %.1f, "
                       "\"max_images_per_s\": %.1f, \"digest\": \"%s\", \"epochs\": [",
                    uri, split_names[o.split], o.batch_size, o.workers, device, h2d_gb_per_s,
                    copy_seconds, shape.height, shape.width, shape.channels,
                    cold ? "true" : "false", cache_note, open_seconds, peak_rss_mb, median,
                    rates[0], rates[epochs - 1], digest_hex);
            for (long long e = 0; e < epochs; e++) {
                const EpochStats *st = &stats[e];
                fprintf(j, "%s{\"epoch\": %lld, \"images\": %lld, \"seconds\": %.6f, "
                           "\"images_per_s\": %.1f, \"mb_per_s\": %.3f, "
                           "\"mean_wait_ms\": %.4f, \"first_batch_ms\": %.4f, "
                           "\"h2d_seconds\": %.6f}",
                        e ? ", " : "", e, (long long)st->images, st->seconds,
                        st->images / st->seconds,
                        st->images * (double)image_bytes / 1e6 / st->seconds,
                        st->batches ? 1e3 * st->wait_seconds / (double)st->batches : 0,
                        1e3 * st->first_batch_seconds, st->copy_seconds);
            }
            fprintf(j, "]}\n");
            if (fclose(j) != 0)
                rc = -1;
        }
    }
    free(rates);
    free(stats);
    loader_close(l);
    return rc < 0 ? 1 : 0;
}
