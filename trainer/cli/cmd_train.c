/* cmd_train.c — `imgset train`: train a model through any loader, one report line per epoch. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "error.h"
#include "json.h"
#include "model.h"
#include "progress.h"
#include "ranks.h"
#include "train.h"

/* What the command line asked for: the run's configuration plus where to write JSON. */
typedef struct TrainArgs {
    TrainConfig config;
    const char *json;
    int rank, world;        /* from the MPI launcher (ranks_launched); 0 and 1 without */
} TrainArgs;

/* The per-epoch lines, kept for the JSON file. */
typedef struct TrainPrinter {
    const TrainArgs *args;
    EpochReport *reports;   /* (capacity), grown as epochs end */
    int count, capacity;
    int lost;               /* 1: out of memory, some epochs are missing */
    size_t parameters;
    int device;          /* MODEL_CPU or MODEL_CUDA, as the run chose */
    int world;           /* ranks */
    Progress bar;
} TrainPrinter;

static void train_usage(FILE *out)
{
    fprintf(out,
            "usage: imgset train URI [--test URI] [--model M] [--epochs E] [--batch B] [--lr LR]\n"
            "                    [--momentum M] [--weight-decay W] [--nesterov]\n"
            "                    [--schedule constant|step|cosine] [--warmup E] [--threads T]\n"
            "                    [--workers W] [--seed S] [--size N] [--augment]\n"
            "                    [--device auto|cpu|cuda]\n"
            "                    [--save CKPT] [--resume CKPT] [--stop-after N] [--json FILE]\n\n"
            "Train a classifier on the train split of URI through the loader, and evaluate it on\n"
            "the test split (of URI, or of --test URI) after every epoch. Per epoch: wall seconds,\n"
            "data-wait seconds (time the trainer waited for batches), compute seconds, images/s,\n"
            "train loss and accuracy, test accuracy and macro-F1; on a GPU also the seconds of\n"
            "host-to-device copies and their GB/s (compute is then the GPU's time, from CUDA\n"
            "events, and AU = compute / wall).\n"
            "  --model M        mlp, cnn-small (default), resnet8, densenet-tiny\n"
            "  --epochs E       default 5\n"
            "  --batch B        default 128\n"
            "  --lr LR          base learning rate (default 0.05), SGD\n"
            "  --momentum M     default 0.9; --weight-decay W default 5e-4; --nesterov\n"
            "  --schedule S     constant, step (x0.1 every third of the run), cosine (default)\n"
            "  --warmup E       epochs of linear warm-up (default 0)\n"
            "  --threads T      compute threads on the CPU (default 2)\n"
            "  --device D       auto (default: cuda when a GPU is there, else cpu), cpu, cuda\n"
            "  --workers W      loader prefetch threads (default 1)\n"
            "  --seed S         weights and shuffle; the same seed and threads give the same run\n"
            "  --size N         resize + center-crop inputs to NxN (needed for mixed sizes)\n"
            "  --augment        random crop (padding 4) and horizontal flip\n"
            "  --save CKPT      safetensors checkpoint after every epoch (and when stopped)\n"
            "  --resume CKPT    continue exactly where CKPT stopped\n"
            "  --stop-after N   stop after N batches, saving to --save (as an interruption would)\n"
            "  --json FILE      the per-epoch numbers as JSON (keys: see README)\n\n"
            "Under MPI (mpirun -np N imgset train ...; builds where mpicc was found) the N ranks\n"
            "train one model data-parallel: --batch is the global batch, each rank takes batch/N\n"
            "images of it from its shard, gradients are averaged every step; rank 0 prints,\n"
            "evaluates and writes checkpoints. --resume takes a checkpoint of any N.\n");
}

/* Parse the command line into a; returns 0, or the exit status for a usage error. */
static int parse_train_args(int argc, char **argv, TrainArgs *a)
{
    static const struct option opts[] = {
        {"test", required_argument, 0, 'T'},     {"model", required_argument, 0, 'm'},
        {"epochs", required_argument, 0, 'e'},   {"batch", required_argument, 0, 'b'},
        {"lr", required_argument, 0, 'l'},       {"momentum", required_argument, 0, 'M'},
        {"weight-decay", required_argument, 0, 'd'}, {"nesterov", no_argument, 0, 'n'},
        {"schedule", required_argument, 0, 'S'}, {"warmup", required_argument, 0, 'u'},
        {"threads", required_argument, 0, 't'},  {"workers", required_argument, 0, 'w'},
        {"seed", required_argument, 0, 's'},     {"size", required_argument, 0, 'z'},
        {"augment", no_argument, 0, 'a'},        {"save", required_argument, 0, 'o'},
        {"resume", required_argument, 0, 'r'},   {"stop-after", required_argument, 0, 'x'},
        {"json", required_argument, 0, 'j'},     {"device", required_argument, 0, 'D'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    a->json = NULL;
    train_config_default(&a->config);
    TrainConfig *cfg = &a->config;
    long long v;
    char *end;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'T': cfg->test_uri = optarg; break;
        case 'm': cfg->arch = optarg; break;
        case 'o': cfg->save = optarg; break;
        case 'r': cfg->resume = optarg; break;
        case 'j': a->json = optarg; break;
        case 'a': cfg->augment = 1; break;
        case 'n': cfg->nesterov = 1; break;
        case 'e': case 'b': case 't': case 'w': case 'z': case 'u': case 's': case 'x':
            if ((v = cli_parse_count("train", argv[optind - 1], optarg)) < 0)
                return 2;
            if (c == 's') cfg->seed = (uint64_t)v;
            else if (c == 'x') cfg->stop_after = v;
            else if (v > 1 << 20) {
                fprintf(stderr, "imgset train: %s %s is too large\n", argv[optind - 1], optarg);
                return 2;
            } else if (c == 'e') cfg->epochs = (int)v;
            else if (c == 'b') cfg->batch = (int)v;
            else if (c == 't') cfg->threads = (int)v;
            else if (c == 'w') cfg->workers = (int)v;
            else if (c == 'z') cfg->size = (int)v;
            else cfg->warmup_epochs = (int)v;
            break;
        case 'l': case 'M': case 'd': {
            double x = strtod(optarg, &end);
            if (end == optarg || *end || !isfinite(x) || x < 0) {
                fprintf(stderr, "imgset train: %s wants a non-negative number, not \"%s\"\n",
                        argv[optind - 1], optarg);
                return 2;
            }
            if (c == 'l') cfg->lr = (float)x;
            else if (c == 'M') cfg->momentum = (float)x;
            else cfg->weight_decay = (float)x;
            break;
        }
        case 'S':
            if (strcmp(optarg, "constant") == 0) cfg->schedule = LR_CONSTANT;
            else if (strcmp(optarg, "step") == 0) cfg->schedule = LR_STEP;
            else if (strcmp(optarg, "cosine") == 0) cfg->schedule = LR_COSINE;
            else {
                fprintf(stderr, "imgset train: unknown schedule \"%s\" (constant, step, "
                                "cosine)\n", optarg);
                return 2;
            }
            break;
        case 'D':
            if ((cfg->device = cli_parse_device("train", optarg, 1)) == -2)
                return 2;
            break;
        case 'h': train_usage(stdout); return -1;
        default: train_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        train_usage(stderr);
        return 2;
    }
    cfg->uri = argv[optind];
    if (cfg->batch < 1 || cfg->threads < 1 || cfg->epochs < 1) {
        fprintf(stderr, "imgset train: --batch, --threads and --epochs must be at least 1\n");
        return 2;
    }
    if (cfg->batch % a->world != 0) {
        fprintf(stderr, "imgset train: --batch %d is not divisible by the %d ranks (mpirun -np "
                        "%d): each rank trains on batch / ranks images of every batch\n",
                cfg->batch, a->world, a->world);
        return 2;
    }
    if (cfg->nesterov && cfg->momentum <= 0) {
        fprintf(stderr, "imgset train: --nesterov needs a positive --momentum\n");
        return 2;
    }
    return 0;
}

/* Write the run as JSON (keys documented in the README). */
static int write_json(const char *path, const TrainArgs *args, const TrainPrinter *p)
{
    const EpochReport *r = p->reports;
    int n = p->count;
    if (p->lost)
        return imgset_fail("%s: out of memory for the epochs' numbers; not written", path);
    const TrainConfig *a = &args->config;
    FILE *f = fopen(path, "w");
    if (!f)
        return imgset_fail("%s: cannot write: %m", path);
    Json j;
    json_start(&j, f, 0);
    json_object_begin(&j, NULL);
    json_string(&j, "uri", a->uri);
    json_string(&j, "model", a->arch);
    json_int(&j, "batch", a->batch);
    json_int(&j, "ranks", p->world);
    json_int(&j, "threads", a->threads);
    json_int(&j, "workers", a->workers);
    json_uint(&j, "seed", (unsigned long long)a->seed);
    json_string(&j, "device", p->device == MODEL_CUDA ? "cuda" : "cpu");
    json_uint(&j, "parameters", p->parameters);
    json_array_begin(&j, "epochs");
    for (int i = 0; i < n; i++) {
        json_raw(&j, "\n  ");
        json_object_begin(&j, NULL);
        json_int(&j, "epoch", r[i].epoch);
        json_int(&j, "images", (long long)r[i].images);
        json_number(&j, "wall_seconds", "%.6f", r[i].wall);
        json_number(&j, "data_wait_seconds", "%.6f", r[i].wait);
        json_number(&j, "compute_seconds", "%.6f", r[i].compute);
        json_number(&j, "images_per_s", "%.2f", r[i].images / r[i].wall);
        json_number(&j, "au", "%.6f", r[i].compute / r[i].wall);
        json_number(&j, "train_loss", "%.6f", r[i].loss);
        json_number(&j, "train_accuracy", "%.6f", r[i].accuracy);
        json_number(&j, "test_accuracy", "%.6f", r[i].test_accuracy);
        json_number(&j, "test_macro_f1", "%.6f", r[i].test_f1);
        json_number(&j, "eval_seconds", "%.6f", r[i].eval_seconds);
        json_number(&j, "allreduce_seconds", "%.6f", r[i].allreduce);
        json_number(&j, "h2d_seconds", "%.6f", r[i].copy);
        json_number(&j, "h2d_bytes", "%.0f", r[i].copy_bytes);
        json_object_end(&j);
    }
    json_array_end(&j);
    json_object_end(&j);
    return json_close_file(&j, f, path);
}

static void print_started(void *ctx, const TrainRun *run)
{
    TrainPrinter *p = ctx;
    const TrainConfig *c = &p->args->config;
    p->parameters = run->parameters;
    p->device = run->device;
    p->world = run->world;
    printf("train %s  model %s (%zu parameters)  input %dx%dx%d  %d classes  batch %d  "
           "threads %d  workers %d\n",
           c->uri, c->arch, run->parameters, run->input.channels, run->input.height,
           run->input.width, run->classes, c->batch, c->threads, c->workers);
    if (run->world > 1)
        printf("ranks %d, each with batch %d and its own threads and workers; gradients "
               "averaged every step (allreduce s: the exchange, waits included)\n",
               run->world, c->batch / run->world);
    printf("device %s (%s)\n", run->device == MODEL_CUDA ? "cuda" : "cpu", run->device_info);
    printf("%5s %8s %8s %8s %9s %6s %8s %8s %8s %8s", "epoch", "wall s", "wait s", "compute",
           "images/s", "AU", "loss", "train", "test", "macroF1");
    if (run->device == MODEL_CUDA)
        printf(" %8s %8s", "h2d s", "h2d GB/s");
    if (run->world > 1)
        printf(" %11s", "allreduce s");
    printf("\n");
    fflush(stdout);
}

static void print_epoch(void *ctx, const EpochReport *r)
{
    TrainPrinter *p = ctx;
    progress_finish(&p->bar);
    printf("%5d %8.2f %8.2f %8.2f %9.0f %5.1f%% %8.4f %8.4f %8.4f %8.4f", r->epoch, r->wall,
           r->wait, r->compute, r->images / r->wall, 100.0 * r->compute / r->wall, r->loss,
           r->accuracy, r->test_accuracy, r->test_f1);
    if (p->device == MODEL_CUDA)
        printf(" %8.4f %8.2f", r->copy, r->copy > 0 ? r->copy_bytes / r->copy / 1e9 : 0.0);
    if (p->world > 1)
        printf(" %11.3f", r->allreduce);
    printf("\n");
    fflush(stdout);
    if (p->count == p->capacity) {
        int want = p->capacity ? 2 * p->capacity : 64;
        EpochReport *bigger = realloc(p->reports, sizeof *bigger * (size_t)want);
        if (bigger) {
            p->reports = bigger;
            p->capacity = want;
        }
    }
    if (p->count < p->capacity)
        p->reports[p->count++] = *r;
    else
        p->lost = 1;
    progress_start(&p->bar, "train");
}

/* Batch progress of the epoch on the printer's bar (ctx is the TrainPrinter). */
static int print_progress(void *ctx, int64_t done, int64_t total)
{
    TrainPrinter *p = ctx;
    return progress_update(&p->bar, done, total);
}

/* A rank other than 0 prints no progress; it only passes on Ctrl-C (ctx unused). */
static int quiet_progress(void *ctx, int64_t done, int64_t total)
{
    return interrupted();
}

/* Parse the command line; ranks other than 0 keep their usage messages to themselves (rank 0
 * prints the same). */
static int parse_quietly(int argc, char **argv, TrainArgs *a)
{
    int saved = -1;
    FILE *null = a->rank > 0 ? fopen("/dev/null", "w") : NULL;
    if (null) {
        fflush(stderr);
        saved = dup(STDERR_FILENO);
        dup2(fileno(null), STDERR_FILENO);
    }
    int usage = parse_train_args(argc, argv, a);
    if (null) {
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);
        fclose(null);
    }
    return usage;
}

/* Train as parsed and report (rank 0 prints); the exit status. */
static int train_and_report(TrainArgs *a)
{
    int rank0 = a->rank == 0;
    static TrainPrinter printer;
    printer.args = a;
    printer.world = a->world;
    progress_start(&printer.bar, "train");
    TrainCallbacks cb = {print_started, print_epoch, print_progress, &printer};
    TrainCallbacks quiet = {NULL, NULL, quiet_progress, NULL};
    TrainRun run;
    int rc = train_run(&a->config, rank0 ? &cb : &quiet, &run);
    progress_finish(&printer.bar);
    if (rc < 0)
        return rank0 ? cli_error("train", imgset_error()) : 1;
    if (run.stopped)
        printf("stopped after %lld batches at epoch %d batch %lld%s%s\n",
               (long long)run.batches_done, run.stop_epoch, (long long)run.stop_batch,
               a->config.save ? "; checkpoint " : "", a->config.save ? a->config.save : "");
    int json_rc = a->json && rank0 ? write_json(a->json, a, &printer) : 0;
    free(printer.reports);
    if (json_rc < 0)
        return cli_error("train", imgset_error());
    return interrupted() ? 130 : 0;
}

/*
 * Under an MPI launcher MPI starts first, so that every way out — a usage error included —
 * passes through ranks_finish(), where the ranks wait for each other: rank 0 has printed
 * before any rank exits (mpirun ends the whole job when a rank exits with an error).
 */
int cmd_train(int argc, char **argv)
{
    static TrainArgs a;
    ranks_launched(&a.rank, &a.world);
    if (a.world > 1) {
        if (!(a.config.comm = ranks_start()))
            return cli_error("train", imgset_error());   /* no MPI to wait with: every rank says it */
        ranks_label_notices(a.rank);
        if (a.rank > 0 && !freopen("/dev/null", "w", stdout))
            return 1;
    }
    const Comm *comm = a.config.comm;
    int usage = parse_quietly(argc, argv, &a);
    a.config.comm = comm;   /* parsing reset the configuration */
    int status = usage ? (usage < 0 ? 0 : usage) : train_and_report(&a);
    ranks_finish();
    return status;
}
