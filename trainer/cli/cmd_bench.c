/* cmd_bench.c — `imgset bench`: every store x every data-set shape; the results table of
 * average epoch seconds, loader-only throughput and AU, as Markdown, CSV, JSON and a plot. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "digest.h"
#include "clock.h"
#include "error.h"
#include "json.h"
#include "fsutil.h"
#include "generate.h"
#ifdef IMGSET_HAVE_CUDA
#include "gpu.h"
#endif
#include "loader.h"
#include "measure.h"
#include "model.h"
#include "pgserver.h"
#include "progress.h"
#include "train.h"

#ifndef IMGSET_LIBRARY_VERSIONS
#define IMGSET_LIBRARY_VERSIONS "unknown"
#endif

#define MAX_SHAPES 4
#define MAX_DATA 4
#define MAX_COLUMNS (MAX_SHAPES + MAX_DATA)
#define MAX_STORES 5
#define MAX_RUNS 32

static const char *const all_shapes[MAX_SHAPES] = {"cifar10", "tinyimagenet", "hires", "mixed"};
static const char *const all_stores[MAX_STORES] = {"files", "mmap", "gpummap", "hdf5", "pg"};

typedef struct BenchArgs {
    /* The columns: generated shapes, then the data sets of --data (named by the data set). */
    const char *shapes[MAX_COLUMNS];
    int nshapes;
    const char *data_uri[MAX_COLUMNS];   /* --data: where column j's data set is; else NULL */
    int size[MAX_COLUMNS];     /* resize + center-crop to size x size (mixed sizes), or 0 */
    const char *model;         /* --model: for every column; NULL: model_for() */
    const char *stores[MAX_STORES];
    int nstores;
    int read, train;           /* which measurements */
    int epochs, runs;
    double scale;
    const char *out;
    const char *db;            /* an existing server instead of the embedded one */
    int cold;
    int threads, workers, read_workers, batch, read_batch;
    int device;                /* training: TRAIN_AUTO, MODEL_CPU or MODEL_CUDA */
    uint64_t seed;
} BenchArgs;

static int known_arch(const char *name);

/* Median, min and max of a few numbers. */
typedef struct Spread {
    double median, min, max;
    int n;
} Spread;

/* One run's numbers of a cell, kept until the cell's every run is done. */
typedef struct RunValues {
    double read_rate, read_mbps, read_wait_ms;
    double epoch_seconds, train_wait, train_compute, train_rate, au, h2d_gbps;
} RunValues;

/* One store x shape cell. */
typedef struct Cell {
    char note[200];            /* "n/a — why" when the store is not available, or the error */
    int failed;                /* 1: an error, not a missing optional part */
    char uri[1200];
    double write_seconds;      /* converting the data set into the store; -1 when cached */
    Spread read_rate;          /* loader-only images/s per run */
    Spread read_mbps;
    Spread read_wait_ms;       /* mean data-wait per batch */
    Spread epoch_seconds;      /* per run: the average over its epochs */
    Spread train_wait, train_compute, train_rate, au;
    Spread h2d_gbps;           /* training on the GPU: pixel bytes / host-to-device seconds */
    const char *device;        /* where it trained: "cpu" or "cuda" */
    const char *model;
    RunValues runs[MAX_RUNS];  /* run r's numbers, summarised into the Spreads at the end */
    int runs_done;
    const char *cache;         /* with --cold: what dropping the cache did */
} Cell;

static void spread_of(Spread *s, double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    s->n = n;
    if (n == 0) {
        s->median = s->min = s->max = NAN;
        return;
    }
    s->min = v[0];
    s->max = v[n - 1];
    s->median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void bench_usage(FILE *out)
{
    fprintf(out,
            "usage: imgset bench [--shapes cifar10,tinyimagenet,hires,mixed] [--data URI,...]\n"
            "                    [--stores files,mmap,gpummap,hdf5,pg] [--mode read|train|both]\n"
            "                    [--model M] [--epochs E] [--runs R] [--scale F] [--out DIR]\n"
            "                    [--db URI] [--cold] [--threads T] [--workers W] [--batch B]\n"
            "                    [--seed S] [--device auto|cpu|cuda]\n\n"
            "Generate each data-set shape (or reuse a cached copy whose digest matches), write it\n"
            "into every store, and measure for each store x shape:\n"
            "  read   loader only: images/s, MB/s, mean data-wait per batch (batch 256,\n"
            "         2 workers, float output as for training)\n"
            "  train  cnn-small (resnet8 for hires; --model M for all): average epoch seconds,\n"
            "         data-wait, compute, images/s, AU = compute / wall; on a GPU also\n"
            "         host-to-device GB/s (gpummap always trains on the GPU: its batches are\n"
            "         gathered there)\n"
            "--data URI,... benches data sets of yours (imported ones: imgset import) as columns\n"
            "named by the data set, copied from URI into every store; with --data the shapes\n"
            "are benched only when --shapes names them.\n"
            "R runs each (median, min-max), in rounds: run 1 of every store, then run 2, ...\n"
            "Warm cache (one untimed read epoch before each loader-only run) unless --cold:\n"
            "then the page cache is dropped before every run where the machine allows.\n"
            "Writes DIR/results.md, results.csv, results.json and results.png (gnuplot).\n"
            "  --scale F   fraction of the full counts (1 = cifar10 50,000/10,000 etc.); of a\n"
            "              --data set, its first F of each split (at most all of it)\n"
            "  --model M   mlp, cnn-small, resnet8, densenet-tiny for every column\n"
            "  --epochs E  training epochs per run (default 2); --runs R (default 3)\n"
            "  --out DIR   default build/bench; data sets are cached in DIR/data\n"
            "  --device D  where to train: auto (default: cuda when a GPU is there), cpu, cuda\n"
            "  --db URI    use this server (postgresql://...) instead of starting an embedded\n"
            "              throwaway cluster (the default; it is stopped at the end)\n");
}

/* Split a comma list into names that must each be in `known`; count or -1. */
static int parse_list(char *list, const char *const *known, int nknown, const char **out,
                      const char *what)
{
    int n = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int found = -1;
        for (int i = 0; i < nknown; i++)
            if (strcmp(tok, known[i]) == 0)
                found = i;
        if (found < 0 || n >= nknown) {
            fprintf(stderr, "imgset bench: unknown %s \"%s\"\n", what, tok);
            return -1;
        }
        out[n++] = known[found];
    }
    return n;
}

static int parse_bench_args(int argc, char **argv, BenchArgs *a)
{
    static const struct option opts[] = {
        {"shapes", required_argument, 0, 'S'}, {"stores", required_argument, 0, 'T'},
        {"mode", required_argument, 0, 'm'},   {"epochs", required_argument, 0, 'e'},
        {"runs", required_argument, 0, 'r'},   {"scale", required_argument, 0, 'f'},
        {"out", required_argument, 0, 'o'},    {"db", required_argument, 0, 'd'},
        {"cold", no_argument, 0, 'c'},         {"threads", required_argument, 0, 't'},
        {"workers", required_argument, 0, 'w'}, {"batch", required_argument, 0, 'b'},
        {"seed", required_argument, 0, 's'},   {"device", required_argument, 0, 'D'},
        {"model", required_argument, 0, 'M'},  {"data", required_argument, 0, 'A'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *a = (BenchArgs){.read = 1, .train = 1, .epochs = 2, .runs = 3, .scale = 1.0,
                     .out = "build/bench", .threads = 2, .workers = 1, .read_workers = 2,
                     .batch = 128, .read_batch = 256, .device = TRAIN_AUTO, .seed = 1};
    for (int i = 0; i < MAX_SHAPES; i++)
        a->shapes[i] = all_shapes[i];
    for (int i = 0; i < MAX_STORES; i++)
        a->stores[i] = all_stores[i];
    a->nshapes = MAX_SHAPES;
    a->nstores = MAX_STORES;
    long long v;
    char *end;
    int c, shapes_given = 0, ndata = 0;
    const char *data[MAX_DATA];
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'S':
            if ((a->nshapes = parse_list(optarg, all_shapes, MAX_SHAPES, a->shapes, "shape")) < 1)
                return 2;
            shapes_given = 1;
            break;
        case 'A':
            for (char *tok = strtok(optarg, ","); tok; tok = strtok(NULL, ",")) {
                if (ndata == MAX_DATA) {
                    fprintf(stderr, "imgset bench: --data takes at most %d data sets\n",
                            MAX_DATA);
                    return 2;
                }
                data[ndata++] = tok;
            }
            break;
        case 'M':
            if (!known_arch(optarg)) {
                fprintf(stderr, "imgset bench: --model is mlp, cnn-small, resnet8 or "
                                "densenet-tiny, not \"%s\"\n", optarg);
                return 2;
            }
            a->model = optarg;
            break;
        case 'T':
            if ((a->nstores = parse_list(optarg, all_stores, MAX_STORES, a->stores, "store")) < 1)
                return 2;
            break;
        case 'm':
            a->read = strcmp(optarg, "read") == 0 || strcmp(optarg, "both") == 0;
            a->train = strcmp(optarg, "train") == 0 || strcmp(optarg, "both") == 0;
            if (!a->read && !a->train) {
                fprintf(stderr, "imgset bench: --mode is read, train or both, not \"%s\"\n",
                        optarg);
                return 2;
            }
            break;
        case 'f':
            a->scale = strtod(optarg, &end);
            if (end == optarg || *end || !(a->scale > 0) || a->scale > 10) {
                fprintf(stderr, "imgset bench: --scale wants a number in (0, 10], not \"%s\"\n",
                        optarg);
                return 2;
            }
            break;
        case 'o': a->out = optarg; break;
        case 'd': a->db = optarg; break;
        case 'c': a->cold = 1; break;
        case 'e': case 'r': case 't': case 'w': case 'b': case 's':
            if ((v = cli_parse_count("bench", argv[optind - 1], optarg)) < 0)
                return 2;
            if (c == 's') { a->seed = (uint64_t)v; break; }
            if (v < (c == 'w' ? 0 : 1) || v > (c == 'r' ? MAX_RUNS : 1 << 16)) {
                fprintf(stderr, "imgset bench: %s %s is out of range\n", argv[optind - 1], optarg);
                return 2;
            }
            if (c == 'e') a->epochs = (int)v;
            else if (c == 'r') a->runs = (int)v;
            else if (c == 't') a->threads = (int)v;
            else if (c == 'w') a->workers = (int)v;
            else a->batch = (int)v;
            break;
        case 'D':
            if ((a->device = cli_parse_device("bench", optarg, 1)) == -2)
                return 2;
            break;
        case 'h': bench_usage(stdout); return -1;
        default: bench_usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        bench_usage(stderr);
        return 2;
    }
    if (ndata && !shapes_given)
        a->nshapes = 0;
    for (int j = 0; j < a->nshapes; j++)
        a->size[j] = strcmp(a->shapes[j], "mixed") == 0 ? 64 : 0;
    for (int k = 0; k < ndata; k++)
        a->data_uri[a->nshapes++] = data[k];
    return 0;
}

/* 1 when name is one of the nn core's architectures. */
static int known_arch(const char *name)
{
    for (const char *const *n = model_arch_names(); *n; n++)
        if (strcmp(*n, name) == 0)
            return 1;
    return 0;
}

/* Name --data column j after its data set (the store's name, else the last part of its
 * location), in letters, digits, '.', '-', '_' (it becomes a file and a table name), and
 * note whether it needs resizing (mixed sizes). 0, or -1 with imgset_fail(). */
static int name_data_column(BenchArgs *a, int j, char *name, size_t cap)
{
    Store *s = store_open(a->data_uri[j]);
    if (!s)
        return -1;
    const char *base = s->info.name;
    if (!base[0]) {
        const char *slash = strrchr(s->location, '/');
        base = slash && slash[1] ? slash + 1 : s->location;
    }
    snprintf(name, cap, "%.40s", base);
    for (char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-' && *p != '_')
            *p = '_';
    a->shapes[j] = name;
    a->size[j] = split_is_fixed(&s->info.split[SPLIT_TRAIN]) ? 0 : 64;
    store_close(s);
    /* imported cifar10 beside the generated one, say: the data set's column gets "-data" */
    for (int k = 0; k < j; k++)
        if (strcmp(a->shapes[k], name) == 0) {
            if (strlen(name) + sizeof "-data" > cap)
                return imgset_fail("--data %s: a second column named %s", a->data_uri[j], name);
            strcat(name, "-data");
            k = -1;   /* the new name against every column again */
        }
    return 0;
}

/* ---- the machine line -------------------------------------------------------------- */

static void machine_line(const char *dir, char *out, size_t n)
{
    char cpu[160] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *colon = strchr(line, ':');
            snprintf(cpu, sizeof cpu, "%s", colon ? colon + 2 : line);
            cpu[strcspn(cpu, "\n")] = '\0';
            break;
        }
    if (f)
        fclose(f);
    struct sysinfo si;
    sysinfo(&si);
    struct statvfs vfs;
    double disk_free = statvfs(dir, &vfs) == 0 ? (double)vfs.f_bavail * vfs.f_frsize / 1e9 : 0;
    struct utsname u;
    uname(&u);
    char gpu[300] = "none (built without CUDA)";
#ifdef IMGSET_HAVE_CUDA
    if (gpu_require_device("GPU") < 0)
        snprintf(gpu, sizeof gpu, "%s", imgset_error());
    else
        gpu_describe(gpu, sizeof gpu);
#endif
    snprintf(out, n,
             "%s, %ld cores, %.0f GiB memory, %.0f GB free disk at %s, Linux %s; %s; %s",
             cpu, sysconf(_SC_NPROCESSORS_ONLN), (double)si.totalram * si.mem_unit / 1073741824.0,
             disk_free, dir, u.release, IMGSET_LIBRARY_VERSIONS, gpu);
}

/* ---- data: generate once, cache by digest ------------------------------------------- */

/* Digest of both splits of s as one string (for the cache check). */
static int digest_of(Store *s, char *out, size_t n)
{
    SplitDigest d[SPLIT_COUNT];
    int rc = 0;
    for (int i = 0; i < SPLIT_COUNT && rc == 0; i++)
        rc = digest_split(s, i, &d[i], NULL, NULL);
    if (rc == 0)
        snprintf(out, n, "%s %s", d[0].hex, d[1].hex);
    return rc;
}

/* digest_of the store at uri. */
static int store_digest(const char *uri, char *out, size_t n)
{
    Store *s = store_open(uri);
    int rc = s ? digest_of(s, out, n) : -1;
    store_close(s);
    return rc;
}

static int read_text(const char *path, char *out, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t got = fread(out, 1, n - 1, f);
    fclose(f);
    out[got] = '\0';
    out[strcspn(out, "\n")] = '\0';
    return 0;
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return imgset_fail("%s: %s", path, strerror(errno));
    fprintf(f, "%s\n", text);
    return fclose(f) == 0 ? 0 : imgset_fail("%s: write failed", path);
}

/* Remove a store's files (a cached copy whose digest no longer matches). */
static void remove_path(const char *path)
{
    if (fs_remove_tree(path) < 0)
        fprintf(stderr, "imgset bench: %s\n", imgset_error());
}

/* Run argv[0] (found on PATH) in folder dir with stderr to log_name there; its exit status,
 * 127 when the program is not installed. No shell is involved. */
static int run_in(const char *dir, char *const argv[], const char *log_name)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (chdir(dir) != 0)
            _exit(126);
        int fd = open(log_name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Make uri hold the data set whose digest is `digest`, from source_uri (its first head[s]
 * images of each split when head is not NULL; the generator when source_uri is NULL); reuse
 * a copy whose digest file matches. *seconds = time of the write, or -1 when the cached copy
 * was used. */
static int ensure_store(const char *uri, const char *path, const char *digest_path,
                        const char *digest, const char *source_uri, const int64_t *head,
                        const GenerateParams *gen, double *seconds)
{
    char have[200];
    *seconds = -1;
    if (access(path, F_OK) == 0 && digest && read_text(digest_path, have, sizeof have) == 0 &&
        strcmp(have, digest) == 0)
        return 0;
    remove_path(path);
    unlink(digest_path);
    Store *src = !source_uri ? generate_open(gen)
               : head ? store_open_head(source_uri, head) : store_open(source_uri);
    if (!src)
        return -1;
    Progress bar;
    char label[300];
    snprintf(label, sizeof label, "write %s", uri);
    progress_start(&bar, label);
    double t0 = monotonic_seconds();
    int rc = store_copy(src, uri, progress_update, &bar);
    *seconds = monotonic_seconds() - t0;
    progress_finish(&bar);
    store_close(src);
    if (rc < 0)
        return -1;
    char d[200];
    if (!digest) {
        if (store_digest(uri, d, sizeof d) < 0)
            return -1;
        digest = d;
    }
    return write_text(digest_path, digest);
}

/* ---- measurements -------------------------------------------------------------------- */

/* Loader options for the read measurement of column j. */
static void read_options(const BenchArgs *a, int j, const char *store, LoaderOptions *o)
{
    loader_options_default(o);
    o->batch_size = a->read_batch;
    o->workers = a->read_workers;
    o->want_float = 1;
    o->seed = a->seed;
    o->height = o->width = a->size[j];
    o->device = strcmp(store, "gpummap") == 0 ? LOADER_CUDA : LOADER_HOST;
}

/* One epoch through the loader: images/s, MB/s and mean wait per batch. */
static int read_epoch(Loader *l, uint64_t epoch, double *rate, double *mbps, double *wait_ms)
{
    EpochStats st;
    if (measure_epoch(l, epoch, NULL, NULL, NULL, &st) < 0)
        return -1;
    *rate = epoch_images_per_s(&st);
    *mbps = epoch_mb_per_s(&st, image_shape_bytes(loader_shape(l)));
    *wait_ms = epoch_wait_ms(&st);
    return 0;
}

/* Run r of the loader-only measurement: a fresh loader (new connections for pg), one untimed
 * warm-up epoch (or, with --cold, the page cache dropped instead), then epoch r + 1 timed. */
static int measure_read(const BenchArgs *a, int j, const char *store, Cell *cell, int r)
{
    LoaderOptions o;
    read_options(a, j, store, &o);
    if (a->cold)
        cell->cache = cli_drop_cache(cell->uri);
    Loader *l = loader_open(cell->uri, &o);
    if (!l)
        return -1;
    RunValues *v = &cell->runs[r];
    double x, y, z;
    int rc = a->cold ? 0 : read_epoch(l, 0, &x, &y, &z);   /* warm-up */
    if (rc == 0)
        rc = read_epoch(l, (uint64_t)r + 1, &v->read_rate, &v->read_mbps, &v->read_wait_ms);
    loader_close(l);
    return rc;
}

/* Sums of a run's epochs, collected by the train callback. */
typedef struct RunSums {
    double wall, wait, compute, copy, copy_bytes;
    int64_t images;
    int epochs;
} RunSums;

static void add_epoch(void *ctx, const EpochReport *r)
{
    RunSums *s = ctx;
    s->wall += r->wall;
    s->wait += r->wait;
    s->compute += r->compute;
    s->copy += r->copy;
    s->copy_bytes += r->copy_bytes;
    s->images += r->images;
    s->epochs++;
}

static int stop_on_interrupt(void *ctx, int64_t done, int64_t total)
{
    return interrupted();
}

/* The model column j trains: --model, else resnet8 for hires and cnn-small elsewhere. */
static const char *model_for(const BenchArgs *a, int j)
{
    if (a->model)
        return a->model;
    return !a->data_uri[j] && strcmp(a->shapes[j], "hires") == 0 ? "resnet8" : "cnn-small";
}

/* Run r of the training measurement: a fresh model and loader, a.epochs epochs (with --cold
 * the page cache dropped first). */
static int measure_train(const BenchArgs *a, int j, const char *store, Cell *cell, int r)
{
    TrainConfig c;
    train_config_default(&c);
    c.uri = cell->uri;
    c.arch = cell->model = model_for(a, j);
    c.epochs = a->epochs;
    c.batch = a->batch;
    c.threads = a->threads;
    c.workers = a->workers;
    c.seed = a->seed;
    c.size = a->size[j];
    c.evaluate = 0;
    /* gpummap's batches are gathered in GPU memory: it trains there or not at all */
    c.device = strcmp(store, "gpummap") == 0 ? MODEL_CUDA : a->device;
    if (a->cold)
        cell->cache = cli_drop_cache(cell->uri);
    RunSums sums = {0};
    TrainCallbacks cb = {NULL, add_epoch, stop_on_interrupt, &sums};
    TrainRun run;
    if (train_run(&c, &cb, &run) < 0)
        return -1;
    if (run.stopped || sums.epochs == 0)
        return imgset_fail("interrupted");
    RunValues *v = &cell->runs[r];
    v->epoch_seconds = sums.wall / sums.epochs;
    v->train_wait = sums.wait / sums.epochs;
    v->train_compute = sums.compute / sums.epochs;
    v->train_rate = (double)sums.images / sums.wall;
    v->au = sums.compute / sums.wall;
    v->h2d_gbps = sums.copy > 0 ? sums.copy_bytes / sums.copy / 1e9 : 0;
    cell->device = run.device == MODEL_CUDA ? "cuda" : "cpu";
    return 0;
}

/* The Spread over a cell's runs of the RunValues field at `offset`. */
static void spread_field(Spread *s, const Cell *cell, size_t offset)
{
    double v[MAX_RUNS];
    for (int r = 0; r < cell->runs_done; r++)
        memcpy(&v[r], (const char *)&cell->runs[r] + offset, sizeof v[r]);
    spread_of(s, v, cell->runs_done);
}

#define SPREAD(cell, name, field) spread_field(&(cell)->name, (cell), offsetof(RunValues, field))

/* The Spreads of a cell whose runs are all done. */
static void summarise(const BenchArgs *a, Cell *cell)
{
    if (a->read) {
        SPREAD(cell, read_rate, read_rate);
        SPREAD(cell, read_mbps, read_mbps);
        SPREAD(cell, read_wait_ms, read_wait_ms);
    }
    if (a->train) {
        SPREAD(cell, epoch_seconds, epoch_seconds);
        SPREAD(cell, train_wait, train_wait);
        SPREAD(cell, train_compute, train_compute);
        SPREAD(cell, train_rate, train_rate);
        SPREAD(cell, au, au);
        if (cell->device && strcmp(cell->device, "cuda") == 0)
            SPREAD(cell, h2d_gbps, h2d_gbps);
    }
}

/* Record a failed measurement of a cell: "n/a — no CUDA device" for a missing device (not an
 * error), else "error — message"; returns 1 for an error. */
static int cell_failed(Cell *cell, const char *store, const char *shape)
{
    const char *msg = imgset_error();
    int no_device = strstr(msg, "no CUDA device") != NULL;
    snprintf(cell->note, sizeof cell->note, "%s — %.150s", no_device ? "n/a" : "error",
             no_device ? "no CUDA device" : msg);
    if (no_device)
        return 0;
    cell->failed = 1;
    fprintf(stderr, "imgset bench: %s x %s: %s\n", store, shape, msg);
    return 1;
}

/* ---- reports ------------------------------------------------------------------------- */

/* "12.3 (12.1–12.6)" or the cell's note. */
static void format_spread(char *out, size_t n, const Cell *c, const Spread *s, const char *fmt)
{
    if (c->note[0]) {
        snprintf(out, n, "%s", c->note);
        return;
    }
    if (s->n == 0) {
        snprintf(out, n, "—");
        return;
    }
    char med[32], lo[32], hi[32];
    snprintf(med, sizeof med, fmt, s->median);
    snprintf(lo, sizeof lo, fmt, s->min);
    snprintf(hi, sizeof hi, fmt, s->max);
    if (s->n > 1)
        snprintf(out, n, "%s (%s–%s)", med, lo, hi);
    else
        snprintf(out, n, "%s", med);
}

typedef const Spread *(*SpreadOf)(const Cell *c);
static const Spread *get_epoch(const Cell *c) { return &c->epoch_seconds; }
static const Spread *get_read(const Cell *c) { return &c->read_rate; }
static const Spread *get_read_wait(const Cell *c) { return &c->read_wait_ms; }
static const Spread *get_au(const Cell *c) { return &c->au; }
static const Spread *get_wait(const Cell *c) { return &c->train_wait; }
static const Spread *get_compute(const Cell *c) { return &c->train_compute; }
static const Spread *get_h2d(const Cell *c) { return &c->h2d_gbps; }

/* A results table's title and header row: a column per shape. */
static void table_head(FILE *f, const BenchArgs *a, const char *title)
{
    fprintf(f, "\n### %s\n\n| store |", title);
    for (int j = 0; j < a->nshapes; j++)
        fprintf(f, " %s |", a->shapes[j]);
    fprintf(f, "\n|---|");
    for (int j = 0; j < a->nshapes; j++)
        fprintf(f, "---|");
    fprintf(f, "\n");
}

static void table(FILE *f, const BenchArgs *a, Cell cells[MAX_STORES][MAX_COLUMNS],
                  const char *title, SpreadOf get, const char *fmt)
{
    table_head(f, a, title);
    for (int i = 0; i < a->nstores; i++) {
        fprintf(f, "| %s |", a->stores[i]);
        for (int j = 0; j < a->nshapes; j++) {
            char text[256];
            format_spread(text, sizeof text, &cells[i][j], get(&cells[i][j]), fmt);
            fprintf(f, " %s |", text);
        }
        fprintf(f, "\n");
    }
}

static void csv_row(FILE *f, const char *store, const char *shape, const char *metric,
                    const Spread *s, const char *unit, const char *note)
{
    if (note[0])
        fprintf(f, "%s,%s,%s,,,,%s,\"%s\"\n", store, shape, metric, unit, note);
    else if (s->n)
        fprintf(f, "%s,%s,%s,%.6g,%.6g,%.6g,%s,\n", store, shape, metric, s->median, s->min,
                s->max, unit);
}

/* "name": {"median": …, "min": …, "max": …}, or null when nothing was measured. */
static void json_spread(Json *j, const char *name, const Spread *s)
{
    if (!s->n) {
        json_string(j, name, NULL);
        return;
    }
    json_object_begin(j, name);
    json_number(j, "median", "%.6g", s->median);
    json_number(j, "min", "%.6g", s->min);
    json_number(j, "max", "%.6g", s->max);
    json_object_end(j);
}

/* One column of results.dat: the median, or NaN (gnuplot's "missing") for an n/a cell. */
static void dat_value(FILE *f, const Cell *c, const Spread *s)
{
    if (s->n && !c->note[0])
        fprintf(f, " %.6g", s->median);
    else
        fprintf(f, " NaN");
}

/* Grouped bars of epoch seconds and loader images/s (log axis) with gnuplot, if present. */
/* 1 when some cell has a number for s (gnuplot fails on a panel without one). */
static int any_number(const BenchArgs *a, Cell cells[MAX_STORES][MAX_COLUMNS], SpreadOf s)
{
    for (int i = 0; i < a->nstores; i++)
        for (int j = 0; j < a->nshapes; j++)
            if (!cells[i][j].note[0] && s(&cells[i][j])->n)
                return 1;
    return 0;
}

static const char *plot(const BenchArgs *a, Cell cells[MAX_STORES][MAX_COLUMNS])
{
    int train = a->train && any_number(a, cells, get_epoch);
    int read = a->read && any_number(a, cells, get_read);
    if (!train && !read)
        return "no plot: no cell has a number";
    char path[1200];
    snprintf(path, sizeof path, "%s/results.dat", a->out);
    FILE *f = fopen(path, "w");
    if (!f)
        return "no plot: cannot write results.dat";
    fprintf(f, "# shape");
    for (int i = 0; i < a->nstores; i++)
        fprintf(f, " %s_epoch_s", a->stores[i]);
    for (int i = 0; i < a->nstores; i++)
        fprintf(f, " %s_images_per_s", a->stores[i]);
    fprintf(f, "\n");
    for (int j = 0; j < a->nshapes; j++) {
        fprintf(f, "%s", a->shapes[j]);
        for (int i = 0; i < a->nstores; i++)
            dat_value(f, &cells[i][j], &cells[i][j].epoch_seconds);
        for (int i = 0; i < a->nstores; i++)
            dat_value(f, &cells[i][j], &cells[i][j].read_rate);
        fprintf(f, "\n");
    }
    fclose(f);
    snprintf(path, sizeof path, "%s/results.gp", a->out);
    f = fopen(path, "w");
    if (!f)
        return "no plot: cannot write results.gp";
    fprintf(f,
            "set terminal pngcairo size 1400,560 font ',11'\n"
            "set output 'results.png'\n"
            "set datafile missing 'NaN'\n"
            "set style data histograms\nset style histogram clustered gap 1\n"
            "set style fill solid 0.85 border -1\nset key top left\nset grid ytics\n"
            "set multiplot layout 1,%d\n", train + read);
    if (train) {
        fprintf(f, "set title 'Average epoch seconds (training), lower is better'\n"
                   "set ylabel 'seconds'\nplot 'results.dat' ");
        for (int i = 0; i < a->nstores; i++)
            fprintf(f, "%s using %d:xtic(1) title '%s'", i ? ", ''" : "", 2 + i, a->stores[i]);
        fprintf(f, "\n");
    }
    if (read) {
        fprintf(f, "set title 'Loader only: images/s (log scale), higher is better'\n"
                   "set ylabel 'images/s'\nset logscale y\nplot 'results.dat' ");
        for (int i = 0; i < a->nstores; i++)
            fprintf(f, "%s using %d:xtic(1) title '%s'", i ? ", ''" : "", 2 + a->nstores + i,
                    a->stores[i]);
        fprintf(f, "\n");
    }
    fprintf(f, "unset multiplot\n");
    fclose(f);
    char *argv[] = {"gnuplot", "results.gp", NULL};
    int rc = run_in(a->out, argv, "gnuplot.log");
    if (rc == 127)
        return "no plot: gnuplot is not installed (apt-get install gnuplot-nox)";
    if (rc != 0)
        return "no plot: gnuplot failed (see gnuplot.log)";
    return "results.png";
}

static int write_reports(const BenchArgs *a, Cell cells[MAX_STORES][MAX_COLUMNS],
                         const char *machine, const int64_t counts[MAX_COLUMNS][2],
                         const char *pg_note)
{
    char path[1200];
    const char *plot_note = plot(a, cells);
    snprintf(path, sizeof path, "%s/results.md", a->out);
    FILE *f = fopen(path, "w");
    if (!f)
        return imgset_fail("%s: %s", path, strerror(errno));
    fprintf(f, "## pg_imgset benchmark: where should the data set live?\n\n");
    fprintf(f, "machine: %s\n\n", machine);
    /* where the host stores trained: as measured, else as asked */
    static const char *const device_names[] = {"auto (cuda when a GPU is there)", "cpu", "cuda"};
    const char *device = device_names[a->device + 1];
    for (int i = 0; i < a->nstores; i++)
        for (int j = 0; j < a->nshapes; j++)
            if (strcmp(a->stores[i], "gpummap") != 0 && cells[i][j].device)
                device = cells[i][j].device;
    /* with --cold, what dropping the cache did (the same sentence for every local store) */
    const char *cache = a->cold ? "cold" : "warm: one untimed epoch before each loader-only run";
    for (int i = 0; i < a->nstores && a->cold; i++)
        for (int j = 0; j < a->nshapes; j++)
            if (cells[i][j].cache && strcmp(a->stores[i], "pg") != 0)
                cache = cells[i][j].cache;
    fprintf(f, "settings: %d run%s per cell (median, min–max), in rounds over the stores; "
               "cache %s%s; training %d epoch%s of batch %d with %d compute thread%s and %d "
               "loader worker%s on device %s (gpummap: cuda); loader-only reads: batch %d, %d "
               "workers, float output; PostgreSQL: %s\n\ndata sets:",
            a->runs, a->runs > 1 ? "s" : "", cache, a->cold ? ", before every run" : "", a->epochs,
            a->epochs > 1 ? "s" : "", a->batch, a->threads, a->threads > 1 ? "s" : "",
            a->workers, a->workers != 1 ? "s" : "", device, a->read_batch,
            a->read_workers, pg_note);
    for (int j = 0; j < a->nshapes; j++)
        fprintf(f, "%s %s %lld train / %lld test (%s%s%s)", j ? ";" : "", a->shapes[j],
                (long long)counts[j][0], (long long)counts[j][1], model_for(a, j),
                a->data_uri[j] ? ", from " : "", a->data_uri[j] ? a->data_uri[j] : "");
    fprintf(f, "\n");
    if (a->train) {
        table(f, a, cells, "Average epoch seconds (training; lower is better)", get_epoch,
              "%.2f");
        table(f, a, cells, "Accelerator utilisation AU = compute / wall (training)", get_au,
              "%.3f");
        table(f, a, cells, "Data-wait seconds per epoch (training)", get_wait, "%.2f");
        table(f, a, cells, "Compute seconds per epoch (training; on a GPU its own time, from "
              "CUDA events)", get_compute, "%.2f");
        if (any_number(a, cells, get_h2d))   /* only when something trained on a GPU */
            table(f, a, cells, "Host-to-device GB/s (training on a GPU: pixel bytes / copy "
                  "time; gpummap: the GPU's gather from the mapped file)", get_h2d, "%.1f");
    }
    if (a->read) {
        table(f, a, cells, "Loader only: images/s (higher is better)", get_read, "%.0f");
        table(f, a, cells, "Loader only: mean data-wait per batch, ms", get_read_wait, "%.2f");
    }
    table_head(f, a, "Writing each store (seconds; mmap: generating the data set into it; "
                     "\"cached\": a copy with the same digest was reused)");
    for (int i = 0; i < a->nstores; i++) {
        fprintf(f, "| %s |", a->stores[i]);
        for (int j = 0; j < a->nshapes; j++) {
            const Cell *c = &cells[i][j];
            if (c->note[0])
                fprintf(f, " %s |", c->note);
            else if (c->write_seconds < 0)
                fprintf(f, " cached |");
            else
                fprintf(f, " %.2f |", c->write_seconds);
        }
        fprintf(f, "\n");
    }
    fprintf(f, "\nplot: %s\n", plot_note);
    fclose(f);

    snprintf(path, sizeof path, "%s/results.csv", a->out);
    f = fopen(path, "w");
    if (!f)
        return imgset_fail("%s: %s", path, strerror(errno));
    fprintf(f, "store,shape,metric,median,min,max,unit,note\n");
    for (int i = 0; i < a->nstores; i++)
        for (int j = 0; j < a->nshapes; j++) {
            const Cell *c = &cells[i][j];
            const char *st = a->stores[i], *sh = a->shapes[j];
            csv_row(f, st, sh, "epoch_seconds", &c->epoch_seconds, "s", c->note);
            csv_row(f, st, sh, "train_images_per_s", &c->train_rate, "images/s", c->note);
            csv_row(f, st, sh, "au", &c->au, "fraction", c->note);
            csv_row(f, st, sh, "train_data_wait", &c->train_wait, "s/epoch", c->note);
            csv_row(f, st, sh, "train_compute", &c->train_compute, "s/epoch", c->note);
            csv_row(f, st, sh, "train_h2d_gb_per_s", &c->h2d_gbps, "GB/s", c->note);
            csv_row(f, st, sh, "read_images_per_s", &c->read_rate, "images/s", c->note);
            csv_row(f, st, sh, "read_mb_per_s", &c->read_mbps, "MB/s", c->note);
            csv_row(f, st, sh, "read_wait_per_batch", &c->read_wait_ms, "ms", c->note);
        }
    fclose(f);

    snprintf(path, sizeof path, "%s/results.json", a->out);
    f = fopen(path, "w");
    if (!f)
        return imgset_fail("%s: %s", path, strerror(errno));
    Json j;
    json_start(&j, f, 0);
    json_object_begin(&j, NULL);
    json_string(&j, "machine", machine);
    json_int(&j, "runs", a->runs);
    json_int(&j, "epochs", a->epochs);
    json_string(&j, "cache", a->cold ? "cold" : "warm");
    json_int(&j, "batch", a->batch);
    json_int(&j, "threads", a->threads);
    json_int(&j, "workers", a->workers);
    json_number(&j, "scale", "%g", a->scale);
    json_array_begin(&j, "cells");
    for (int i = 0; i < a->nstores; i++)
        for (int k = 0; k < a->nshapes; k++) {
            const Cell *c = &cells[i][k];
            json_raw(&j, "\n  ");
            json_object_begin(&j, NULL);
            json_string(&j, "store", a->stores[i]);
            json_string(&j, "shape", a->shapes[k]);
            json_string(&j, "data", a->data_uri[k]);   /* null for a generated shape */
            json_string(&j, "model", model_for(a, k));
            json_int(&j, "train_images", (long long)counts[k][0]);
            json_string(&j, "device", c->device ? c->device : "");
            json_string(&j, "note", c->note);
            json_number(&j, "write_seconds", "%.6g", c->write_seconds);
            json_spread(&j, "epoch_seconds", &c->epoch_seconds);
            json_spread(&j, "train_images_per_s", &c->train_rate);
            json_spread(&j, "au", &c->au);
            json_spread(&j, "train_data_wait_seconds", &c->train_wait);
            json_spread(&j, "train_compute_seconds", &c->train_compute);
            json_spread(&j, "train_h2d_gb_per_s", &c->h2d_gbps);
            json_spread(&j, "read_images_per_s", &c->read_rate);
            json_spread(&j, "read_mb_per_s", &c->read_mbps);
            json_spread(&j, "read_wait_ms_per_batch", &c->read_wait_ms);
            json_object_end(&j);
        }
    json_raw(&j, "\n");
    json_array_end(&j);
    json_object_end(&j);
    return json_close_file(&j, f, path);
}

/* ---- the run --------------------------------------------------------------------------- */

/* Why a store cannot be measured in this build, or NULL. */
static const char *store_missing(const char *store)
{
    if (strcmp(store, "hdf5") == 0 && !store_ops_for_uri("hdf5:x"))
        return "n/a — built without HDF5";
    if (strcmp(store, "pg") == 0 && !store_ops_for_uri("postgresql://x"))
        return "n/a — built without libpq";
    if (strcmp(store, "gpummap") == 0 && !store_ops_for_uri("gpummap:x"))
        return "n/a — built without CUDA";
    return NULL;
}

/* A shape's data set as generated into mmap: every other store is written from it. */
typedef struct Source {
    GenerateParams gen;
    char key[200];             /* shape-train-test-seed, the data sets' file names */
    char mmap_dir[1200], mmap_uri[1300];
    char digest[200];          /* of the whole data set: a cached store must match it */
    double gen_seconds;
} Source;

/* Make cell's store hold the shape's data set (reusing a cached copy with the same digest)
 * and set cell->uri and cell->write_seconds. 0 or -1. */
static int prepare_cell(const BenchArgs *a, Cell *cell, const char *store, const Source *src,
                        const char *pg_base)
{
    if (strcmp(store, "mmap") == 0 || strcmp(store, "gpummap") == 0) {
        snprintf(cell->uri, sizeof cell->uri, "%s:%s", store, src->mmap_dir);
        if (strcmp(store, "mmap") == 0)
            cell->write_seconds = src->gen_seconds;   /* generated straight into mmap */
        return 0;
    }
    if (strcmp(store, "pg") == 0) {
        /* A fresh load each time: the embedded cluster is new for every bench. */
        char name[64], d[200];
        snprintf(name, sizeof name, "%s_%lld_s%llu", src->gen.like, (long long)src->gen.train,
                 (unsigned long long)a->seed);
        snprintf(cell->uri, sizeof cell->uri, "%s&dataset=%s", pg_base, name);
        Store *existing = store_open(cell->uri);
        if (existing && (store_close(existing), 1) &&
            store_digest(cell->uri, d, sizeof d) == 0 && strcmp(d, src->digest) == 0)
            return 0;
        Store *from = store_open(src->mmap_uri);
        Progress bar;
        progress_start(&bar, "write pg");
        double t0 = monotonic_seconds();
        int rc = from ? store_copy(from, cell->uri, progress_update, &bar) : -1;
        cell->write_seconds = monotonic_seconds() - t0;
        progress_finish(&bar);
        store_close(from);
        return rc;
    }
    char path[1300], digest_path[1400];
    snprintf(path, sizeof path, "%s/data/%s.%s", a->out, src->key,
             strcmp(store, "hdf5") == 0 ? "h5" : "files");
    snprintf(digest_path, sizeof digest_path, "%s.digest", path);
    snprintf(cell->uri, sizeof cell->uri, "%s:%s", store, path);
    return ensure_store(cell->uri, path, digest_path, src->digest, src->mmap_uri, NULL, NULL,
                        &cell->write_seconds);
}

/* Column j's data set in mmap (every other store is written from it), into src: generated
 * once for a shape; for a --data set, its first images (--scale) copied from its URI unless
 * a copy with the same digest is there. counts gets the train and test images. 0 or -1. */
static int prepare_source(const BenchArgs *a, int j, Source *src, int64_t counts[2])
{
    const char *name = a->shapes[j];
    int64_t head[SPLIT_COUNT];
    char digest_path[1300], have[200];
    GenerateParams gen = {name, 0, 0, a->seed};
    if (!a->data_uri[j]) {
        GenerateShape def;
        generate_shape_defaults(name, &def);
        gen.train = (int64_t)fmax(1, round(def.train * a->scale));
        gen.test = (int64_t)fmax(1, round(def.test * a->scale));
    } else {
        Store *s = store_open(a->data_uri[j]);
        if (!s)
            return -1;
        for (int k = 0; k < SPLIT_COUNT; k++) {
            int64_t n = s->info.split[k].count;
            head[k] = a->scale >= 1 ? n : (int64_t)fmin(n, fmax(1, round(n * a->scale)));
        }
        store_close(s);
        gen.train = head[SPLIT_TRAIN], gen.test = head[SPLIT_TEST];
    }
    counts[0] = gen.train, counts[1] = gen.test;
    src->gen = gen;
    snprintf(src->key, sizeof src->key, "%s%s-%lld-%lld-s%llu", a->data_uri[j] ? "data-" : "",
             name, (long long)gen.train, (long long)gen.test, (unsigned long long)a->seed);
    snprintf(src->mmap_dir, sizeof src->mmap_dir, "%s/data/%s.mmap", a->out, src->key);
    snprintf(src->mmap_uri, sizeof src->mmap_uri, "mmap:%s", src->mmap_dir);
    snprintf(digest_path, sizeof digest_path, "%s/data/%s.mmap.digest", a->out, src->key);
    fprintf(stderr, "[%s] preparing %s\n", name, src->key);
    if (a->data_uri[j]) {
        /* the digest of what the columns will hold: a cached copy must have it */
        Store *s = store_open_head(a->data_uri[j], head);
        int rc = s ? digest_of(s, src->digest, sizeof src->digest) : -1;
        store_close(s);
        return rc < 0 ? -1 : ensure_store(src->mmap_uri, src->mmap_dir, digest_path,
                                          src->digest, a->data_uri[j], head, NULL,
                                          &src->gen_seconds);
    }
    /* The source copy, generated once: its digest file says it is complete and intact. */
    if (read_text(digest_path, have, sizeof have) == 0 &&
        (store_digest(src->mmap_uri, src->digest, sizeof src->digest) < 0 ||
         strcmp(have, src->digest) != 0))
        unlink(digest_path);
    if (ensure_store(src->mmap_uri, src->mmap_dir, digest_path, NULL, NULL, NULL, &gen,
                     &src->gen_seconds) < 0)
        return -1;
    return read_text(digest_path, src->digest, sizeof src->digest) < 0
               ? imgset_fail("%s: cannot read", digest_path) : 0;
}

int cmd_bench(int argc, char **argv)
{
    static BenchArgs a;
    int usage = parse_bench_args(argc, argv, &a);
    if (usage)
        return usage < 0 ? 0 : usage;
    char path[1200];
    snprintf(path, sizeof path, "%s/data", a.out);
    if (fs_make_dirs(path) < 0)
        return cli_error("bench", imgset_error());

    static Cell cells[MAX_STORES][MAX_COLUMNS];
    int64_t counts[MAX_COLUMNS][2];
    static char names[MAX_COLUMNS][64];
    for (int j = 0; j < a.nshapes; j++)
        if (a.data_uri[j] && name_data_column(&a, j, names[j], sizeof names[j]) < 0)
            return cli_error("bench", imgset_error());
    char machine[1024];
    machine_line(a.out, machine, sizeof machine);
    printf("machine: %s\n", machine);

    /* The PostgreSQL server: the one given, or an embedded throwaway cluster. */
    static PgServer server;
    char pg_base[1200] = "", pg_note[300] = "not measured";
    const char *pg_missing = NULL;
    for (int i = 0; i < a.nstores; i++)
        if (strcmp(a.stores[i], "pg") == 0 && !(pg_missing = store_missing("pg"))) {
            if (a.db) {
                snprintf(pg_base, sizeof pg_base, "%s", a.db);
                snprintf(pg_note, sizeof pg_note, "the server at --db");
            } else if (pgserver_start(&server, getenv("TMPDIR") && *getenv("TMPDIR")
                                                   ? getenv("TMPDIR") : "/tmp", "2GB") == 0) {
                snprintf(pg_base, sizeof pg_base, "%s", server.conninfo);
                snprintf(pg_note, sizeof pg_note, "embedded throwaway cluster (shared_buffers "
                                                  "2GB, Unix socket)");
            } else {
                static char why[200];
                snprintf(why, sizeof why, "n/a — %.180s", imgset_error());
                pg_missing = why;
                fprintf(stderr, "imgset bench: %s\n", imgset_error());
            }
        }

    int total_cells = a.nstores * a.nshapes, done_cells = 0, errors = 0;
    double t_start = monotonic_seconds();
    for (int j = 0; j < a.nshapes && !interrupted(); j++) {
        const char *shape = a.shapes[j];
        Source source;
        memset(&source, 0, sizeof source);
        if (prepare_source(&a, j, &source, counts[j]) < 0) {
            fprintf(stderr, "imgset bench: %s: %s\n", shape, imgset_error());
            errors++;
            for (int i = 0; i < a.nstores; i++)
                snprintf(cells[i][j].note, sizeof cells[i][j].note, "error — data set");
            continue;
        }
        for (int i = 0; i < a.nstores && !interrupted(); i++) {
            const char *store = a.stores[i];
            Cell *cell = &cells[i][j];
            cell->write_seconds = -1;
            const char *missing = strcmp(store, "pg") == 0 ? pg_missing : store_missing(store);
            double elapsed = monotonic_seconds() - t_start;
            fprintf(stderr, "[%d/%d] %s x %s: preparing  (%.0f s so far)\n", ++done_cells,
                    total_cells, store, shape, elapsed);
            if (missing) {
                snprintf(cell->note, sizeof cell->note, "%s", missing);
                continue;
            }
            if (prepare_cell(&a, cell, store, &source, pg_base) < 0)
                errors += cell_failed(cell, store, shape);
        }
        /* The runs in rounds: run r of every store, then run r + 1, each round starting one
         * store later, so that a machine's drift (other load, clocks) falls on every store
         * alike instead of on whichever cells ran during it. */
        for (int r = 0; r < a.runs && !interrupted(); r++)
            for (int k = 0; k < a.nstores && !interrupted(); k++) {
                int i = (k + r) % a.nstores;
                const char *store = a.stores[i];
                Cell *cell = &cells[i][j];
                if (cell->note[0])
                    continue;
                fprintf(stderr, "[%s] run %d/%d: %s  (%.0f s so far)\n", shape, r + 1, a.runs,
                        store, monotonic_seconds() - t_start);
                if ((a.read && measure_read(&a, j, store, cell, r) < 0) ||
                    (a.train && measure_train(&a, j, store, cell, r) < 0))
                    errors += cell_failed(cell, store, shape);
                else
                    cell->runs_done++;
            }
        for (int i = 0; i < a.nstores; i++)
            if (!cells[i][j].note[0])
                summarise(&a, &cells[i][j]);
    }
    if (server.running)
        pgserver_stop(&server);
    if (interrupted())
        return cli_error("bench", "interrupted; nothing written");
    if (write_reports(&a, cells, machine, counts, pg_note) < 0)
        return cli_error("bench", imgset_error());
    snprintf(path, sizeof path, "%s/results.md", a.out);
    FILE *f = fopen(path, "r");
    char line[2048];
    while (f && fgets(line, sizeof line, f))
        fputs(line, stdout);
    if (f)
        fclose(f);
    printf("\nwritten: %s/results.md, results.csv, results.json, results.png (%.0f s)\n", a.out,
           monotonic_seconds() - t_start);
    return errors ? 1 : 0;
}
