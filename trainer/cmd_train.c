/* cmd_train.c — `imgset train`: train a model through any loader, one report line per epoch. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cli.h"
#include "error.h"
#include "loader.h"
#include "metrics.h"
#include "model.h"
#include "progress.h"

/* Everything `imgset train` was asked to do. */
typedef struct TrainArgs {
    const char *uri, *test_uri, *arch, *save, *resume, *json;
    int epochs, batch, threads, workers, augment, size;
    uint64_t seed;
    float lr, momentum, weight_decay, min_lr;
    int nesterov;
    LrKind schedule;
    int warmup_epochs;
    int64_t stop_after;   /* batches to train before stopping (0 = all) */
} TrainArgs;

/* One epoch's report. */
typedef struct EpochReport {
    int epoch;
    int64_t images;
    double wall, wait, compute, eval_seconds;
    double loss, accuracy, test_accuracy, test_f1;
} EpochReport;

static void train_usage(FILE *out)
{
    fprintf(out,
            "usage: imgset train URI [--test URI] [--model M] [--epochs E] [--batch B] [--lr LR]\n"
            "                    [--momentum M] [--weight-decay W] [--nesterov]\n"
            "                    [--schedule constant|step|cosine] [--warmup E] [--threads T]\n"
            "                    [--workers W] [--seed S] [--size N] [--augment]\n"
            "                    [--save CKPT] [--resume CKPT] [--stop-after N] [--json FILE]\n\n"
            "Train a classifier on the train split of URI through the loader, and evaluate it on\n"
            "the test split (of URI, or of --test URI) after every epoch. Per epoch: wall seconds,\n"
            "data-wait seconds (time the trainer waited for batches), compute seconds, images/s,\n"
            "train loss and accuracy, test accuracy and macro-F1.\n"
            "  --model M        mlp, cnn-small (default), resnet8, densenet-tiny\n"
            "  --epochs E       default 5\n"
            "  --batch B        default 128\n"
            "  --lr LR          base learning rate (default 0.05), SGD\n"
            "  --momentum M     default 0.9; --weight-decay W default 5e-4; --nesterov\n"
            "  --schedule S     constant, step (x0.1 every third of the run), cosine (default)\n"
            "  --warmup E       epochs of linear warm-up (default 0)\n"
            "  --threads T      compute threads (default 2)\n"
            "  --workers W      loader prefetch threads (default 1)\n"
            "  --seed S         weights and shuffle; the same seed and threads give the same run\n"
            "  --size N         resize + center-crop inputs to NxN (needed for mixed sizes)\n"
            "  --augment        random crop (padding 4) and horizontal flip\n"
            "  --save CKPT      safetensors checkpoint after every epoch (and when stopped)\n"
            "  --resume CKPT    continue exactly where CKPT stopped\n"
            "  --stop-after N   stop after N batches, saving to --save (as an interruption would)\n"
            "  --json FILE      the per-epoch numbers as JSON (keys: see README)\n");
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
        {"json", required_argument, 0, 'j'},     {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *a = (TrainArgs){.arch = "cnn-small", .epochs = 5, .batch = 128, .threads = 2,
                     .workers = 1, .seed = 1, .lr = 0.05f, .momentum = 0.9f,
                     .weight_decay = 5e-4f, .schedule = LR_COSINE};
    long long v;
    char *end;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'T': a->test_uri = optarg; break;
        case 'm': a->arch = optarg; break;
        case 'o': a->save = optarg; break;
        case 'r': a->resume = optarg; break;
        case 'j': a->json = optarg; break;
        case 'a': a->augment = 1; break;
        case 'n': a->nesterov = 1; break;
        case 'e': case 'b': case 't': case 'w': case 'z': case 'u': case 's': case 'x':
            if ((v = cli_parse_count("train", argv[optind - 1], optarg)) < 0)
                return 2;
            if (c == 's') a->seed = (uint64_t)v;
            else if (c == 'x') a->stop_after = v;
            else if (v > 1 << 20) {
                fprintf(stderr, "imgset train: %s %s is too large\n", argv[optind - 1], optarg);
                return 2;
            } else if (c == 'e') a->epochs = (int)v;
            else if (c == 'b') a->batch = (int)v;
            else if (c == 't') a->threads = (int)v;
            else if (c == 'w') a->workers = (int)v;
            else if (c == 'z') a->size = (int)v;
            else a->warmup_epochs = (int)v;
            break;
        case 'l': case 'M': case 'd': {
            double x = strtod(optarg, &end);
            if (end == optarg || *end || !isfinite(x) || x < 0) {
                fprintf(stderr, "imgset train: %s wants a non-negative number, not \"%s\"\n",
                        argv[optind - 1], optarg);
                return 2;
            }
            if (c == 'l') a->lr = (float)x;
            else if (c == 'M') a->momentum = (float)x;
            else a->weight_decay = (float)x;
            break;
        }
        case 'S':
            if (strcmp(optarg, "constant") == 0) a->schedule = LR_CONSTANT;
            else if (strcmp(optarg, "step") == 0) a->schedule = LR_STEP;
            else if (strcmp(optarg, "cosine") == 0) a->schedule = LR_COSINE;
            else {
                fprintf(stderr, "imgset train: unknown schedule \"%s\" (constant, step, "
                                "cosine)\n", optarg);
                return 2;
            }
            break;
        case 'h': train_usage(stdout); return -1;
        default: train_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        train_usage(stderr);
        return 2;
    }
    a->uri = argv[optind];
    if (a->batch < 1 || a->threads < 1 || a->epochs < 1) {
        fprintf(stderr, "imgset train: --batch, --threads and --epochs must be at least 1\n");
        return 2;
    }
    if (a->nesterov && a->momentum <= 0) {
        fprintf(stderr, "imgset train: --nesterov needs a positive --momentum\n");
        return 2;
    }
    return 0;
}

/* Loader options shared by the train and test loaders. */
static void base_loader_options(const TrainArgs *a, LoaderOptions *o, int split)
{
    loader_options_default(o);
    o->split = split;
    o->batch_size = a->batch;
    o->seed = a->seed;
    o->workers = a->workers;
    o->want_float = 1;
    o->height = o->width = a->size;
    o->shuffle = split == SPLIT_TRAIN;
    o->augment = split == SPLIT_TRAIN && a->augment;
}

/* Test accuracy and macro-F1 of m over the whole test loader. */
static int evaluate(Model *m, Loader *test, double *accuracy, double *f1)
{
    int K = m->graph.spec.classes;
    int64_t *confusion = calloc((size_t)K * K, sizeof *confusion);
    if (!confusion)
        return imgset_fail("out of memory for a %dx%d confusion matrix", K, K);
    int rc = loader_start_epoch(test, 0, 0);
    const Batch *b;
    while (rc == 0 && (rc = loader_next(test, &b)) == 1) {
        rc = 0;
        const float *logits = model_forward(m, b->data, b->count, 0);
        confusion_add_logits(confusion, logits, b->labels, b->count, K);
    }
    *accuracy = confusion_accuracy(confusion, K);
    *f1 = confusion_macro_f1(confusion, K);
    free(confusion);
    return rc < 0 ? -1 : 0;
}

/* Write the run as JSON (keys documented in the README). */
static int write_json(const char *path, const TrainArgs *a, const Model *m,
                      const EpochReport *r, int n)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return imgset_fail("%s: cannot write: %m", path);
    fprintf(f, "{\"uri\": \"%s\", \"model\": \"%s\", \"batch\": %d, \"threads\": %d, "
               "\"workers\": %d, \"seed\": %llu, \"device\": \"cpu\", \"parameters\": %zu, "
               "\"epochs\": [",
            a->uri, a->arch, a->batch, a->threads, a->workers, (unsigned long long)a->seed,
            model_num_parameters(m));
    for (int i = 0; i < n; i++)
        fprintf(f, "%s\n  {\"epoch\": %d, \"images\": %lld, \"wall_seconds\": %.6f, "
                   "\"data_wait_seconds\": %.6f, \"compute_seconds\": %.6f, "
                   "\"images_per_s\": %.2f, \"au\": %.6f, \"train_loss\": %.6f, "
                   "\"train_accuracy\": %.6f, \"test_accuracy\": %.6f, "
                   "\"test_macro_f1\": %.6f, \"eval_seconds\": %.6f}",
                i ? "," : "", r[i].epoch, (long long)r[i].images, r[i].wall, r[i].wait,
                r[i].compute, r[i].images / r[i].wall, r[i].compute / r[i].wall, r[i].loss,
                r[i].accuracy, r[i].test_accuracy, r[i].test_f1, r[i].eval_seconds);
    fprintf(f, "\n]}\n");
    return fclose(f) == 0 ? 0 : imgset_fail("%s: write failed", path);
}

int cmd_train(int argc, char **argv)
{
    TrainArgs a;
    int usage = parse_train_args(argc, argv, &a);
    if (usage)
        return usage < 0 ? 0 : usage;

    LoaderOptions to, eo;
    base_loader_options(&a, &to, SPLIT_TRAIN);
    base_loader_options(&a, &eo, SPLIT_TEST);
    Loader *train = loader_open(a.uri, &to);
    if (!train)
        return cli_error("train", imgset_error());
    Loader *test = loader_open(a.test_uri ? a.test_uri : a.uri, &eo);
    if (!test) {
        loader_close(train);
        return cli_error("train", imgset_error());
    }
    const DatasetInfo *info = loader_info(train);
    ImageShape shape = loader_shape(train);
    if (!image_shape_equal(shape, loader_shape(test))) {
        loader_close(train);
        loader_close(test);
        return cli_error("train", "train and test images differ in shape (use --size N)");
    }

    Model *m = model_create(a.arch, shape.channels, shape.height, shape.width,
                            info->num_classes, a.batch, a.seed);
    TrainState state = {.sampler_seed = a.seed};
    int status = 1;
    EpochReport *reports = calloc((size_t)a.epochs, sizeof *reports);
    if (!m || !reports || model_set_threads(m, a.threads) < 0)
        goto done;
    if (a.resume) {
        CheckpointInfo ci;
        if (checkpoint_restore(a.resume, m, &ci) < 0)
            goto done;
        state = ci.state;
        checkpoint_info_free(&ci);
        if (state.sampler_seed != a.seed) {
            imgset_fail("%s was trained with --seed %llu, not %llu", a.resume,
                        (unsigned long long)state.sampler_seed, (unsigned long long)a.seed);
            goto done;
        }
    }

    int64_t per_epoch = loader_batches(train);
    LrSchedule schedule = {
        .kind = a.schedule, .base_lr = a.lr, .warmup_steps = (int64_t)a.warmup_epochs * per_epoch,
        .total_steps = (int64_t)a.epochs * per_epoch, .gamma = 0.1f, .min_lr = 0,
        .step_size = (a.epochs * per_epoch + 2) / 3 > 0 ? (a.epochs * per_epoch + 2) / 3 : 1,
    };
    SgdConfig sgd = {a.momentum, a.weight_decay, a.nesterov};
    printf("train %s  model %s (%zu parameters)  input %dx%dx%d  %d classes  batch %d  "
           "threads %d  workers %d  device cpu\n",
           a.uri, a.arch, model_num_parameters(m), shape.channels, shape.height, shape.width,
           info->num_classes, a.batch, a.threads, a.workers);
    printf("%5s %8s %8s %8s %9s %8s %8s %8s %8s\n", "epoch", "wall s", "wait s", "compute",
           "images/s", "loss", "train", "test", "macroF1");

    int64_t batches_done = 0;
    int nreports = 0, stopped = 0;
    for (int epoch = (int)state.sampler_epoch; epoch < a.epochs && !stopped; epoch++) {
        int64_t start_batch = epoch == state.sampler_epoch ? state.sampler_position / a.batch : 0;
        if (loader_start_epoch(train, (uint64_t)epoch, start_batch) < 0)
            goto done;
        EpochReport r = {.epoch = epoch};
        double loss_sum = 0;
        int64_t correct = 0;
        Progress bar;
        progress_start(&bar, "train");
        double t0 = now_seconds();
        const Batch *b;
        int got;
        int64_t batch_no = start_batch;
        while ((got = loader_next(train, &b)) == 1) {
            r.wait += b->wait_seconds;
            double c0 = now_seconds();
            const float *logits = model_forward(m, b->data, b->count, 1);
            float loss;
            if (model_loss(m, b->labels, &loss) < 0)
                goto done;
            if (!isfinite(loss)) {
                imgset_fail("epoch %d batch %lld: the loss is %f; stopping (the last good "
                            "checkpoint%s%s is kept)", epoch, (long long)batch_no, loss,
                            a.save ? " " : "", a.save ? a.save : "");
                goto done;
            }
            for (int i = 0; i < b->count; i++)
                correct += metrics_argmax(logits + (size_t)i * info->num_classes,
                                          info->num_classes) == b->labels[i];
            model_zero_grad(m);
            if (model_backward(m) < 0)
                goto done;
            model_sgd_step(m, lr_at(&schedule, m->step), &sgd);
            r.compute += now_seconds() - c0;
            loss_sum += (double)loss * b->count;
            r.images += b->count;
            batch_no++;
            batches_done++;
            if (progress_update(&bar, batch_no, per_epoch) ||
                (a.stop_after && batches_done >= a.stop_after)) {
                stopped = 1;
                break;
            }
        }
        r.wall = now_seconds() - t0;
        progress_finish(&bar);
        if (got < 0)
            goto done;
        state.step = m->step;
        state.sampler_epoch = stopped && batch_no < per_epoch ? epoch : epoch + 1;
        state.sampler_position = stopped && batch_no < per_epoch ? batch_no * a.batch : 0;
        if (a.save && checkpoint_save(a.save, m, &state,
                                      (const char *const *)info->class_names, 1) < 0)
            goto done;
        if (stopped) {
            printf("stopped after %lld batches at epoch %d batch %lld%s%s\n",
                   (long long)batches_done, epoch, (long long)batch_no,
                   a.save ? "; checkpoint " : "", a.save ? a.save : "");
            break;
        }
        double e0 = now_seconds();
        if (evaluate(m, test, &r.test_accuracy, &r.test_f1) < 0)
            goto done;
        r.eval_seconds = now_seconds() - e0;
        r.loss = r.images ? loss_sum / r.images : 0;
        r.accuracy = r.images ? (double)correct / r.images : 0;
        printf("%5d %8.2f %8.2f %8.2f %9.0f %8.4f %8.4f %8.4f %8.4f\n", epoch, r.wall, r.wait,
               r.compute, r.images / r.wall, r.loss, r.accuracy, r.test_accuracy, r.test_f1);
        fflush(stdout);
        reports[nreports++] = r;
    }
    if (a.json && write_json(a.json, &a, m, reports, nreports) < 0)
        goto done;
    status = interrupted() ? 130 : 0;

done:
    if (status == 1)
        fprintf(stderr, "imgset train: %s\n", imgset_error());
    free(reports);
    model_free(m);
    loader_close(train);
    loader_close(test);
    return status;
}
