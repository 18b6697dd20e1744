/* cmd_data.c — the data set subcommands: gen, import, convert, verify, info, stats. */
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "digest.h"
#include "error.h"
#include "generate.h"
#include "import.h"
#include "json.h"
#include "model.h"
#include "progress.h"
#include "stats.h"
#include "train.h"
#include "store_files.h"

int cli_error(const char *cmd, const char *message)
{
    fprintf(stderr, "imgset %s: %s\n", cmd, message);
    return 1;
}

long long cli_parse_count(const char *cmd, const char *option, const char *value)
{
    char *end;
    long long v = strtoll(value, &end, 10);
    if (end == value || *end != '\0' || v < 0) {
        fprintf(stderr, "imgset %s: %s wants a non-negative integer, not \"%s\"\n", cmd, option,
                value);
        return -1;
    }
    return v;
}

int cli_parse_numbers(const char *cmd, const char *option, const char *value, float *values,
                      int max)
{
    int n = 0;
    const char *p = value;
    for (;;) {
        char *end;
        double x = strtod(p, &end);
        if (end == p || !isfinite(x) || x < 0 || n >= max || (*end && *end != ',')) {
            fprintf(stderr, "imgset %s: %s wants up to %d non-negative numbers separated by "
                            "commas, not \"%s\"\n", cmd, option, max, value);
            return -1;
        }
        values[n++] = (float)x;
        if (!*end)
            return n;
        p = end + 1;
    }
}

int cli_parse_device(const char *cmd, const char *value, int allow_auto)
{
    if (strcmp(value, "cpu") == 0)
        return MODEL_CPU;
    if (strcmp(value, "cuda") == 0)
        return MODEL_CUDA;
    if (allow_auto && strcmp(value, "auto") == 0)
        return TRAIN_AUTO;
    fprintf(stderr, "imgset %s: unknown device \"%s\" (%scpu, cuda)\n", cmd, value,
            allow_auto ? "auto, " : "");
    return -2;
}

/* Sum of pixel bytes of a data set (reads shapes only). -1 on error. */
static double total_megabytes(Store *s)
{
    double bytes = 0;
    for (int split = 0; split < SPLIT_COUNT; split++) {
        const SplitInfo *sp = &s->info.split[split];
        if (split_is_fixed(sp)) {
            bytes += (double)sp->count * (double)image_shape_bytes(sp->shape);
            continue;
        }
        for (int64_t i = 0; i < sp->count; i++) {
            ImageShape shape;
            if (store_image_shape(s, split, i, &shape) < 0)
                return -1;
            bytes += (double)image_shape_bytes(shape);
        }
    }
    return bytes / 1e6;
}

/* nftw callback: tell the kernel to drop a file's cached pages. */
static int fadvise_file(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    if (type == FTW_F) {
        int fd = open(path, O_RDONLY);
        if (fd >= 0) {
            fdatasync(fd);
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            close(fd);
        }
    }
    return 0;
}

const char *cli_drop_cache(const char *uri)
{
    sync();
    FILE *f = fopen("/proc/sys/vm/drop_caches", "w");
    if (f) {
        int ok = fputs("3\n", f) >= 0;
        ok &= fclose(f) == 0;
        if (ok)
            return "cold: page cache dropped (/proc/sys/vm/drop_caches)";
    }
    const char *colon = strchr(uri, ':');
    if (!colon || strncmp(uri, "postgres", 8) == 0)
        return "cold: could not drop caches (not root, and the store is not a local file)";
    char path[4096];
    snprintf(path, sizeof path, "%s", colon + 1);
    char *query = strchr(path, '?');
    if (query)
        *query = '\0';
    if (nftw(path, fadvise_file, 16, FTW_PHYS) != 0)
        return "cold: could not drop caches for the store's files";
    return "cold: POSIX_FADV_DONTNEED on every file of the store (drop_caches not allowed)";
}

int cli_copy_and_report(const char *cmd, Store *src, const char *dst_uri)
{
    int64_t n = src->info.split[SPLIT_TRAIN].count + src->info.split[SPLIT_TEST].count;
    Progress bar;
    progress_start(&bar, cmd);
    int rc = store_copy(src, dst_uri, progress_update, &bar);
    double seconds = monotonic_seconds() - bar.start;
    progress_finish(&bar);
    if (rc < 0) {
        store_close(src);
        return cli_error(cmd, imgset_error());
    }
    double mb = total_megabytes(src);
    printf("%s: %lld images, %.1f MB into %s in %.2f s (%.0f img/s, %.1f MB/s)\n", cmd,
           (long long)n, mb, dst_uri, seconds, seconds > 0 ? (double)n / seconds : 0,
           seconds > 0 ? mb / seconds : 0);
    store_close(src);
    return 0;
}

/* ---- gen ---------------------------------------------------------------------------- */

static void gen_usage(FILE *out)
{
    fprintf(out,
            "usage: imgset gen --like SHAPE [--train N] [--test N] [--seed S] --out URI\n\n"
            "Make a synthetic, learnable data set and write it into a store.\n"
            "  --like SHAPE   cifar10 (32x32x3, 10 classes, 50000/10000)\n"
            "                 tinyimagenet (64x64x3, 200 classes, 100000/10000)\n"
            "                 hires (512x512x3, 10 classes, 5000/1000)\n"
            "                 mixed (48..512 per side, 10 classes, 10000/2000)\n"
            "  --train N      train images (default: the shape's)\n"
            "  --test N       test images (default: the shape's)\n"
            "  --seed S       the same seed gives the same bytes (default 1)\n"
            "  --out URI      files:DIR, mmap:DIR, hdf5:FILE, postgresql://...?dataset=NAME\n");
}

int cmd_gen(int argc, char **argv)
{
    static const struct option opts[] = {
        {"like", required_argument, 0, 'l'}, {"train", required_argument, 0, 'r'},
        {"test", required_argument, 0, 't'}, {"seed", required_argument, 0, 's'},
        {"out", required_argument, 0, 'o'},  {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    GenerateParams params = {.like = NULL, .train = -1, .test = -1, .seed = 1};
    const char *out = NULL;
    long long v;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'l': params.like = optarg; break;
        case 'o': out = optarg; break;
        case 'r':
            if ((v = cli_parse_count("gen", "--train", optarg)) < 0) return 2;
            params.train = v;
            break;
        case 't':
            if ((v = cli_parse_count("gen", "--test", optarg)) < 0) return 2;
            params.test = v;
            break;
        case 's':
            if ((v = cli_parse_count("gen", "--seed", optarg)) < 0) return 2;
            params.seed = (uint64_t)v;
            break;
        case 'h': gen_usage(stdout); return 0;
        default: gen_usage(stderr); return 2;
        }
    }
    if (!params.like || !out || optind != argc) {
        gen_usage(stderr);
        return 2;
    }
    Store *src = generate_open(&params);
    if (!src)
        return cli_error("gen", imgset_error());
    return cli_copy_and_report("gen", src, out);
}

/* ---- import ------------------------------------------------------------------------- */

static void import_usage(FILE *out)
{
    fprintf(out,
            "usage: imgset import cifar10 DIR --out URI\n"
            "       imgset import idx TRAIN_IMAGES TRAIN_LABELS [TEST_IMAGES TEST_LABELS] --out URI\n"
            "       imgset import imagefolder DIR [--heldout F] [--seed S] --out URI\n\n"
            "Bring a real data set into a store.\n"
            "  cifar10       CIFAR-10 binary version: data_batch_1..5.bin, test_batch.bin,\n"
            "                batches.meta.txt\n"
            "  idx           MNIST-style IDX files, plain or gzipped\n"
            "  imagefolder   DIR/{train,test}/<class>/* or DIR/<class>/* (then a held-out\n"
            "                fraction, default 0.1, becomes the test split), PNG and JPEG;\n"
            "                Tiny ImageNet's train/ + val/ layout too\n");
}

int cmd_import(int argc, char **argv)
{
    static const struct option opts[] = {
        {"out", required_argument, 0, 'o'},  {"heldout", required_argument, 0, 'f'},
        {"seed", required_argument, 0, 's'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *out = NULL;
    double heldout = 0.1;
    uint64_t seed = 1;
    long long v;
    char *end;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'f':
            heldout = strtod(optarg, &end);
            if (end == optarg || *end || heldout < 0 || heldout >= 1) {
                fprintf(stderr, "imgset import: --heldout wants a fraction in [0, 1), not "
                                "\"%s\"\n", optarg);
                return 2;
            }
            break;
        case 's':
            if ((v = cli_parse_count("import", "--seed", optarg)) < 0) return 2;
            seed = (uint64_t)v;
            break;
        case 'h': import_usage(stdout); return 0;
        default: import_usage(stderr); return 2;
        }
    }
    int npos = argc - optind;
    char **pos = argv + optind;
    if (!out || npos < 2) {
        import_usage(stderr);
        return 2;
    }
    Store *src = NULL;
    if (strcmp(pos[0], "cifar10") == 0 && npos == 2)
        src = import_cifar10_open(pos[1]);
    else if (strcmp(pos[0], "idx") == 0 && (npos == 3 || npos == 5))
        src = import_idx_open(pos[1], pos[2], npos == 5 ? pos[3] : NULL,
                              npos == 5 ? pos[4] : NULL);
    else if (strcmp(pos[0], "imagefolder") == 0 && npos == 2)
        src = imagefolder_open(pos[1], heldout, seed);
    else {
        int known = strcmp(pos[0], "cifar10") == 0 || strcmp(pos[0], "idx") == 0 ||
                    strcmp(pos[0], "imagefolder") == 0;
        fprintf(stderr, known ? "imgset import %s: wrong number of paths\n"
                              : "imgset import: unknown format \"%s\"\n", pos[0]);
        import_usage(stderr);
        return 2;
    }
    if (!src)
        return cli_error("import", imgset_error());
    return cli_copy_and_report("import", src, out);
}

/* ---- convert ------------------------------------------------------------------------ */

int cmd_convert(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--help") == 0) {
        printf("usage: imgset convert SRC_URI DST_URI\n\n"
               "Copy every image, label and class name from one store into a new one.\n"
               "The destination must not exist; it appears only when the copy is complete.\n");
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: imgset convert SRC_URI DST_URI\n");
        return 2;
    }
    Store *src = store_open(argv[1]);
    if (!src)
        return cli_error("convert", imgset_error());
    return cli_copy_and_report("convert", src, argv[2]);
}

/* ---- verify ------------------------------------------------------------------------- */

int cmd_verify(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: imgset verify URI [URI...]\n\n"
                "Print one digest per split (class names, shapes, labels and pixels, in order)\n"
                "for each store; exit 1 when any two stores differ.\n");
        return argc < 2 ? 2 : 0;
    }
    SplitDigest first[SPLIT_COUNT];
    int differ = 0;
    for (int a = 1; a < argc; a++) {
        Store *s = store_open(argv[a]);
        if (!s)
            return cli_error("verify", imgset_error());
        for (int split = 0; split < SPLIT_COUNT; split++) {
            SplitDigest d;
            Progress bar;
            progress_start(&bar, split_names[split]);
            int rc = digest_split(s, split, &d, progress_update, &bar);
            progress_finish(&bar);
            if (rc < 0) {
                store_close(s);
                return cli_error("verify", imgset_error());
            }
            int same = a == 1 || strcmp(d.hex, first[split].hex) == 0;
            if (a == 1)
                first[split] = d;
            differ |= !same;
            printf("%-5s %s %8lld images %12llu bytes  %s%s\n", split_names[split], d.hex,
                   (long long)d.count, (unsigned long long)d.pixel_bytes, argv[a],
                   same ? "" : "  DIFFERS");
        }
        store_close(s);
    }
    if (argc > 2)
        printf(differ ? "verify: the stores differ\n" : "verify: all %d stores are identical\n",
               argc - 1);
    return differ ? 1 : 0;
}

/* ---- info --------------------------------------------------------------------------- */

int cmd_info(int argc, char **argv)
{
    if (argc != 2 || strcmp(argv[1], "--help") == 0) {
        fprintf(argc != 2 ? stderr : stdout,
                "usage: imgset info URI\n\nCounts, shapes, classes and bytes of a data set.\n");
        return argc != 2 ? 2 : 0;
    }
    Store *s = store_open(argv[1]);
    if (!s)
        return cli_error("info", imgset_error());
    printf("store     %s\nname      %s\nclasses   %d:", s->uri,
           s->info.name[0] ? s->info.name : "(none)", s->info.num_classes);
    for (int k = 0; k < s->info.num_classes && k < 12; k++)
        printf(" %s", s->info.class_names[k]);
    printf("%s\n", s->info.num_classes > 12 ? " ..." : "");
    for (int split = 0; split < SPLIT_COUNT; split++) {
        const SplitInfo *sp = &s->info.split[split];
        double bytes = 0;
        int32_t min_side = 0, max_side = 0;
        for (int64_t i = 0; i < sp->count; i++) {
            ImageShape shape;
            if (store_image_shape(s, split, i, &shape) < 0) {
                store_close(s);
                return cli_error("info", imgset_error());
            }
            bytes += (double)image_shape_bytes(shape);
            int32_t lo = shape.height < shape.width ? shape.height : shape.width;
            int32_t hi = shape.height > shape.width ? shape.height : shape.width;
            if (i == 0 || lo < min_side) min_side = lo;
            if (i == 0 || hi > max_side) max_side = hi;
        }
        printf("%-9s %lld images, ", split_names[split], (long long)sp->count);
        if (split_is_fixed(sp))
            printf("%dx%dx%d", sp->shape.height, sp->shape.width, sp->shape.channels);
        else
            printf("mixed sizes, %d..%d per side", min_side, max_side);
        printf(", %.1f MB of pixels\n", bytes / 1e6);
    }
    store_close(s);
    return 0;
}

/* ---- stats -------------------------------------------------------------------------- */

static void stats_usage(FILE *out)
{
    fprintf(out,
            "usage: imgset stats URI [--split train|test] [--json FILE]\n\n"
            "Per-channel minimum, maximum, mean and standard deviation of a split's pixels, in\n"
            "one pass over the store (any store; default split train). Mean and std are of\n"
            "x/255 over every pixel (the population std, numpy's default): the values\n"
            "`imgset train --mean/--std` take; --mean auto and --normalize minmax compute them\n"
            "the same way.\n"
            "  --json FILE   the numbers as JSON (\"-\": standard output)\n");
}

/* The statistics as JSON into f (keys: see README). */
static void write_stats_json(Json *j, FILE *f, const char *uri, int split, const SplitStats *st,
                             double seconds)
{
    json_start(j, f, 0);
    json_object_begin(j, NULL);
    json_string(j, "uri", uri);
    json_string(j, "split", split_names[split]);
    json_int(j, "images", (long long)st->images);
    json_int(j, "pixels", (long long)st->pixels);
    json_number(j, "seconds", "%.6f", seconds);
    json_array_begin(j, "channels");
    for (int c = 0; c < st->channels; c++) {
        const ChannelStats *ch = &st->channel[c];
        json_raw(j, "\n  ");
        json_object_begin(j, NULL);
        json_int(j, "channel", c);
        json_int(j, "min", ch->min);
        json_int(j, "max", ch->max);
        json_number(j, "mean", "%.9g", ch->mean);
        json_number(j, "std", "%.9g", ch->std);
        json_object_end(j);
    }
    json_raw(j, "\n");
    json_array_end(j);
    json_object_end(j);
}

int cmd_stats(int argc, char **argv)
{
    static const struct option opts[] = {
        {"split", required_argument, 0, 's'}, {"json", required_argument, 0, 'j'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0},
    };
    int split = SPLIT_TRAIN, c;
    const char *json = NULL;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if ((split = split_from_name(optarg)) < 0) {
                fprintf(stderr, "imgset stats: --split is train or test, not \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'j': json = optarg; break;
        case 'h': stats_usage(stdout); return 0;
        default: stats_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        stats_usage(stderr);
        return 2;
    }
    Store *s = store_open(argv[optind]);
    if (!s)
        return cli_error("stats", imgset_error());
    Progress bar;
    progress_start(&bar, "stats");
    SplitStats st;
    double t0 = monotonic_seconds();
    int rc = split_stats(s, split, &st, progress_update, &bar);
    double seconds = monotonic_seconds() - t0;
    progress_finish(&bar);
    if (rc < 0) {
        store_close(s);
        return cli_error("stats", imgset_error());
    }
    FILE *out = json && strcmp(json, "-") == 0 ? stderr : stdout;   /* stdout: the JSON */
    fprintf(out, "stats %s %s: %lld images, %lld pixels per channel, %d channel%s, %.2f s\n",
            s->uri, split_names[split], (long long)st.images, (long long)st.pixels,
            st.channels, st.channels == 1 ? "" : "s", seconds);
    fprintf(out, "%7s %5s %5s %10s %10s   (mean and std of x/255)\n", "channel", "min", "max",
            "mean", "std");
    for (int k = 0; k < st.channels; k++)
        fprintf(out, "%7d %5d %5d %10.6f %10.6f\n", k, st.channel[k].min, st.channel[k].max,
                st.channel[k].mean, st.channel[k].std);
    if (json && strcmp(json, "-") == 0) {
        Json j;
        write_stats_json(&j, stdout, s->uri, split, &st, seconds);
        fputc('\n', stdout);
        rc = json_end(&j) < 0 || fflush(stdout) != 0 ? imgset_fail("standard output: write "
                                                                   "failed") : 0;
    } else if (json) {
        FILE *f = fopen(json, "w");
        Json j;
        if (!f)
            rc = imgset_fail("%s: cannot write: %m", json);
        else {
            write_stats_json(&j, f, s->uri, split, &st, seconds);
            rc = json_close_file(&j, f, json);
        }
    }
    store_close(s);
    return rc < 0 ? cli_error("stats", imgset_error()) : interrupted() ? 130 : 0;
}
