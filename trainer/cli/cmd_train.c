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
#include "metrics.h"
#include "model.h"
#include "nn.h"
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
    ModelSpec spec;      /* the model as the run built it */
    int64_t *confusion;  /* (classes, classes) of the last evaluation, or NULL */
    double top5;         /* of the last evaluation, -1 when not reported */
    char **class_names;  /* the data set's (spec.classes, copied), or NULL */
    Progress bar;
} TrainPrinter;

static void train_usage(FILE *out)
{
    fprintf(out,
            "usage: imgset train URI [--test URI] [--model M] [--epochs E] [--batch B] [--lr LR]\n"
            "                    [--momentum M] [--weight-decay W] [--nesterov]\n"
            "                    [--schedule constant|step|cosine] [--warmup E] [--threads T]\n"
            "                    [--workers W] [--seed S] [--size N] [--augment]\n"
            "                    [--device auto|cpu|cuda] [--loss cce|bce|mse|mae]\n"
            "                    [--activation relu|leaky-relu|tanh|sigmoid] [--leaky-slope S]\n"
            "                    [--normalize meanstd|minmax] [--mean M,..|auto] [--std S,..|auto]\n"
            "                    [--save CKPT] [--resume CKPT] [--stop-after N] [--json FILE]\n\n"
            "Train a classifier on the train split of URI through the loader, and evaluate it on\n"
            "the test split (of URI, or of --test URI) after every epoch. Per epoch: wall seconds,\n"
            "data-wait seconds (time the trainer waited for batches), compute seconds, images/s,\n"
            "train loss and accuracy, test accuracy and macro-F1; on a GPU also the seconds of\n"
            "host-to-device copies and their GB/s (compute is then the GPU's time, from CUDA\n"
            "events, and AU = compute / wall). At the end: test accuracy, top-5 accuracy (more\n"
            "than 10 classes), macro-F1 and the classes of lowest F1.\n"
            "  --model M        mlp, cnn-small (default), resnet8, densenet-tiny\n"
            "  --loss L         cce: softmax cross-entropy (default); bce: binary cross-entropy\n"
            "                   of each class's sigmoid against one-hot targets; mse, mae: squared\n"
            "                   or absolute error of the softmax probabilities against one-hot\n"
            "  --activation A   of the hidden layers of mlp and cnn-small: relu (default),\n"
            "                   leaky-relu, tanh, sigmoid (resnet8 and densenet-tiny use relu)\n"
            "  --leaky-slope S  leaky-relu's negative slope, 0..1 (default 0.01)\n"
            "  --normalize N    meanstd (default): (x/255 - mean) / std with --mean, --std\n"
            "                   (default 0.5 and 0.5: pixels to [-1, 1]) or auto (the train\n"
            "                   split's own, see imgset stats); minmax: the train split's\n"
            "                   per-channel min..max to [-1, 1]. Recorded in the checkpoint\n"
            "  --mean M,...     one value, or one per channel, on x/255; or auto\n"
            "  --std S,...      the same for the standard deviation\n"
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

/* 1 when every value is positive; else 0 with a message naming --std. */
static int check_positive(const float *values, int n)
{
    for (int i = 0; i < n; i++)
        if (!(values[i] > 0)) {
            fprintf(stderr, "imgset train: --std wants positive numbers, not %g\n",
                    (double)values[i]);
            return 0;
        }
    return 1;
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
        {"loss", required_argument, 0, 'L'},     {"activation", required_argument, 0, 'A'},
        {"leaky-slope", required_argument, 0, 'k'}, {"normalize", required_argument, 0, 'N'},
        {"mean", required_argument, 0, 'E'},     {"std", required_argument, 0, 'V'},
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
        case 'L':
            if ((cfg->loss = nn_loss_from_name(optarg)) < 0) {
                fprintf(stderr, "imgset train: --loss is cce, bce, mse or mae, not \"%s\"\n",
                        optarg);
                return 2;
            }
            break;
        case 'A':
            if ((cfg->activation = model_activation_from_name(optarg)) < 0) {
                fprintf(stderr, "imgset train: --activation is relu, leaky-relu, tanh or "
                                "sigmoid, not \"%s\"\n", optarg);
                return 2;
            }
            break;
        case 'k': {
            double x = strtod(optarg, &end);
            if (end == optarg || *end || !(x >= 0 && x <= 1)) {
                fprintf(stderr, "imgset train: --leaky-slope wants a number in [0, 1], not "
                                "\"%s\"\n", optarg);
                return 2;
            }
            cfg->leaky_slope = (float)x;
            break;
        }
        case 'N':
            if ((cfg->normalize = model_normalize_from_name(optarg)) < 0) {
                fprintf(stderr, "imgset train: --normalize is meanstd or minmax, not \"%s\"\n",
                        optarg);
                return 2;
            }
            break;
        case 'E': case 'V': {
            float *values = c == 'E' ? cfg->mean : cfg->std;
            int *count = c == 'E' ? &cfg->mean_values : &cfg->std_values;
            if (strcmp(optarg, "auto") == 0)
                *count = TRAIN_MEASURE;
            else if ((*count = cli_parse_numbers("train", argv[optind - 1], optarg, values,
                                                 IMGSET_MAX_CHANNELS)) < 0)
                return 2;
            else if (c == 'V' && !check_positive(values, *count))
                return 2;
            break;
        }
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
    if (cfg->normalize == NORM_MINMAX && (cfg->mean_values || cfg->std_values)) {
        fprintf(stderr, "imgset train: --mean and --std are for --normalize meanstd; minmax "
                        "takes the train split's minimum and maximum\n");
        return 2;
    }
    if (cfg->activation != ACT_RELU && strcmp(cfg->arch, "mlp") != 0 &&
        strcmp(cfg->arch, "cnn-small") != 0) {
        fprintf(stderr, "imgset train: --activation %s is for mlp and cnn-small (%s uses "
                        "relu)\n", model_activation_name(cfg->activation), cfg->arch);
        return 2;
    }
    return 0;
}

/* --mean / --std given as numbers must have 1 value or one per channel of the train split's
 * images: 0, or 2 with a message naming the flag (1 when the store cannot be read). */
static int check_value_counts(const TrainConfig *cfg)
{
    if (cfg->mean_values <= 1 && cfg->std_values <= 1)
        return 0;
    Store *s = store_open(cfg->uri);
    int channels = s ? store_split_channels(s, SPLIT_TRAIN) : -1;
    store_close(s);
    if (channels < 0)
        return cli_error("train", imgset_error());
    const int counts[2] = {cfg->mean_values, cfg->std_values};
    const char *flags[2] = {"--mean", "--std"};
    for (int i = 0; i < 2; i++)
        if (counts[i] > 1 && counts[i] != channels) {
            fprintf(stderr, "imgset train: %s has %d values; the images of %s have %d "
                            "channel%s (give 1 or %d)\n", flags[i], counts[i], cfg->uri,
                    channels, channels == 1 ? "" : "s", channels);
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
    cli_json_recipe(&j, &p->spec);
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
        json_number(&j, "test_top5_accuracy", "%.6f",   /* null: not reported */
                    r[i].test_top5 >= 0 ? r[i].test_top5 : NAN);
        json_number(&j, "eval_seconds", "%.6f", r[i].eval_seconds);
        json_number(&j, "allreduce_seconds", "%.6f", r[i].allreduce);
        json_number(&j, "h2d_seconds", "%.6f", r[i].copy);
        json_number(&j, "h2d_bytes", "%.0f", r[i].copy_bytes);
        json_object_end(&j);
    }
    json_array_end(&j);
    if (p->confusion) {   /* the last evaluation, class by class */
        int K = p->spec.classes;
        json_raw(&j, "\n ");
        json_object_begin(&j, "test");
        json_number(&j, "accuracy", "%.6f", confusion_accuracy(p->confusion, K));
        json_number(&j, "top5_accuracy", "%.6f", p->top5 >= 0 ? p->top5 : NAN);
        json_number(&j, "macro_f1", "%.6f", confusion_macro_f1(p->confusion, K));
        cli_json_class_metrics(&j, p->confusion, K, p->class_names);
        json_object_end(&j);
    } else {
        json_string(&j, "test", NULL);
    }
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
    p->spec = run->spec;
    p->class_names = run->class_names ? calloc((size_t)run->classes, sizeof(char *)) : NULL;
    for (int k = 0; p->class_names && k < run->classes; k++)
        p->class_names[k] = strdup(run->class_names[k] ? run->class_names[k] : "");
    printf("train %s  model %s (%zu parameters)  input %dx%dx%d  %d classes  batch %d  "
           "threads %d  workers %d\n",
           c->uri, c->arch, run->parameters, run->input.channels, run->input.height,
           run->input.width, run->classes, c->batch, c->threads, c->workers);
    if (run->world > 1)
        printf("ranks %d, each with batch %d and its own threads and workers; gradients "
               "averaged every step (allreduce s: the exchange, waits included)\n",
               run->world, c->batch / run->world);
    cli_print_recipe(stdout, &run->spec);
    printf("device %s (%s)\n", run->device == MODEL_CUDA ? "cuda" : "cpu", run->device_info);
    printf("%5s %8s %8s %8s %9s %6s %8s %8s %8s %8s", "epoch", "wall s", "wait s", "compute",
           "images/s", "AU", "loss", "train", "test", "macroF1");
    if (run->classes > 10)
        printf(" %8s", "top-5");
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
    if (p->spec.classes > 10)
        printf(" %8.4f", r->test_top5);
    if (p->device == MODEL_CUDA)
        printf(" %8.4f %8.2f", r->copy, r->copy > 0 ? r->copy_bytes / r->copy / 1e9 : 0.0);
    if (p->world > 1)
        printf(" %11.3f", r->allreduce);
    printf("\n");
    fflush(stdout);
    if (r->test_confusion) {
        size_t bytes = sizeof *p->confusion * (size_t)p->spec.classes * p->spec.classes;
        if (p->confusion || (p->confusion = malloc(bytes)))
            memcpy(p->confusion, r->test_confusion, bytes);
        p->top5 = r->test_top5;
    }
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
    if (!usage)
        usage = check_value_counts(&a->config);
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
    if (printer.confusion && !run.stopped && rank0)
        cli_print_class_summary(stdout, "test", printer.confusion, printer.spec.classes,
                                printer.class_names, printer.top5, 3);
    int json_rc = a->json && rank0 ? write_json(a->json, a, &printer) : 0;
    free(printer.reports);
    free(printer.confusion);
    for (int k = 0; printer.class_names && k < printer.spec.classes; k++)
        free(printer.class_names[k]);
    free(printer.class_names);
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
