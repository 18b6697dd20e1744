/* train.c — the training loop over a loader and a model (see train.h). */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "clock.h"
#include "error.h"
#include "gpu.h"
#include "loader.h"
#include "metrics.h"
#include "model.h"

void train_config_default(TrainConfig *c)
{
    *c = (TrainConfig){.arch = "cnn-small", .epochs = 5, .batch = 128, .threads = 2,
                       .workers = 1, .seed = 1, .lr = 0.05f, .momentum = 0.9f,
                       .weight_decay = 5e-4f, .schedule = LR_COSINE, .evaluate = 1,
                       .device = TRAIN_AUTO};
}

/* Loader options shared by the train and test loaders. */
static void loader_options_for(const TrainConfig *c, int device, LoaderOptions *o, int split)
{
    loader_options_default(o);
    o->split = split;
    o->batch_size = c->batch;
    o->seed = c->seed;
    o->workers = c->workers;
    o->want_float = 1;
    o->height = o->width = c->size;
    o->shuffle = split == SPLIT_TRAIN;
    o->augment = split == SPLIT_TRAIN && c->augment;
    o->device = device == MODEL_CUDA ? LOADER_CUDA : LOADER_HOST;
}

/* Where to train: as configured, or with TRAIN_AUTO the GPU when this build has CUDA and the
 * driver sees a device. Fills run->device and run->device_info; -1 when the configured
 * device cannot be used. */
static int choose_device(const TrainConfig *c, TrainRun *run)
{
    run->device = MODEL_CPU;
    if (c->device == MODEL_CPU) {
        snprintf(run->device_info, sizeof run->device_info, "as asked");
        return 0;
    }
#ifdef IMGSET_HAVE_CUDA
    if (gpu_require_device("cuda") == 0) {
        run->device = MODEL_CUDA;
        gpu_describe(run->device_info, sizeof run->device_info);
        return 0;
    }
    if (c->device == MODEL_CUDA)
        return -1;
    snprintf(run->device_info, sizeof run->device_info, "%s", imgset_error());
    return 0;
#else
    if (c->device == MODEL_CUDA)
        return imgset_fail("train: no CUDA device (this build has no CUDA: nvcc was not found, "
                           "or NO_CUDA=1)");
    snprintf(run->device_info, sizeof run->device_info,
             "no CUDA device (this build has no CUDA: nvcc was not found, or NO_CUDA=1)");
    return 0;
#endif
}

/* The batch's float input where m computes. */
static const float *batch_input(const Model *m, const Batch *b)
{
    return m->device == MODEL_CUDA ? b->device_data : b->data;
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
        const float *logits = model_forward(m, batch_input(m, b), b->count, 0);
        if (!logits) {
            rc = -1;
            break;
        }
        confusion_add_logits(confusion, logits, b->labels, b->count, K);
    }
    *accuracy = confusion_accuracy(confusion, K);
    *f1 = confusion_macro_f1(confusion, K);
    free(confusion);
    return rc < 0 ? -1 : 0;
}

/* One training pass over the epoch from start_batch; fills r; sets *stop when asked to. */
static int train_epoch(const TrainConfig *c, const TrainCallbacks *cb, TrainRun *run, Model *m,
                       Loader *train, const LrSchedule *schedule, const SgdConfig *sgd,
                       int epoch, int64_t start_batch, EpochReport *r, int64_t *batch_no)
{
    int K = m->graph.spec.classes;
    double loss_sum = 0;
    int64_t correct = 0;
    *batch_no = start_batch;
    if (loader_start_epoch(train, (uint64_t)epoch, start_batch) < 0)
        return -1;
    double t0 = monotonic_seconds(), device0 = model_device_seconds(m);
    size_t image_bytes = image_shape_bytes(loader_shape(train));
    const Batch *b;
    int got;
    while ((got = loader_next(train, &b)) == 1) {
        r->wait += b->wait_seconds;
        r->copy += b->copy_seconds;
        if (m->device == MODEL_CUDA)
            r->copy_bytes += (double)image_bytes * b->count;
        double c0 = monotonic_seconds();
        const float *logits = model_forward(m, batch_input(m, b), b->count, 1);
        float loss;
        if (!logits || model_loss(m, b->labels, &loss) < 0)
            return -1;
        if (!isfinite(loss))
            return imgset_fail("epoch %d batch %lld: the loss is %f; stopping (the last good "
                               "checkpoint%s%s is kept)", epoch, (long long)*batch_no, loss,
                               c->save ? " " : "", c->save ? c->save : "");
        for (int i = 0; i < b->count; i++)
            correct += metrics_argmax(logits + (size_t)i * K, K) == b->labels[i];
        model_zero_grad(m);
        if (model_backward(m) < 0)
            return -1;
        model_sgd_step(m, lr_at(schedule, m->step), sgd);
        r->compute += monotonic_seconds() - c0;
        loss_sum += (double)loss * b->count;
        r->images += b->count;
        ++*batch_no;
        run->batches_done++;
        if ((cb && cb->progress && cb->progress(cb->ctx, *batch_no, run->batches_per_epoch)) ||
            (c->stop_after && run->batches_done >= c->stop_after)) {
            run->stopped = 1;
            break;
        }
    }
    if (m->device == MODEL_CUDA)   /* the GPU's own time; waits for the last step */
        r->compute = model_device_seconds(m) - device0;
    r->wall = monotonic_seconds() - t0;
    if (got < 0)
        return -1;
    r->loss = r->images ? loss_sum / (double)r->images : 0;
    r->accuracy = r->images ? (double)correct / (double)r->images : 0;
    return 0;
}

int train_run(const TrainConfig *c, const TrainCallbacks *cb, TrainRun *run)
{
    memset(run, 0, sizeof *run);
    if (c->batch < 1 || c->threads < 1 || c->epochs < 1)
        return imgset_fail("train: batch, threads and epochs must be at least 1");
    if (choose_device(c, run) < 0)
        return -1;
    LoaderOptions to, eo;
    loader_options_for(c, run->device, &to, SPLIT_TRAIN);
    loader_options_for(c, run->device, &eo, SPLIT_TEST);
    Loader *train = loader_open(c->uri, &to);
    Loader *test = NULL;
    Model *m = NULL;
    int rc = -1;
    if (!train)
        return -1;
    if (c->evaluate && !(test = loader_open(c->test_uri ? c->test_uri : c->uri, &eo)))
        goto done;
    const DatasetInfo *info = loader_info(train);
    run->input = loader_shape(train);
    run->classes = info->num_classes;
    run->batches_per_epoch = loader_batches(train);
    if (test && !image_shape_equal(run->input, loader_shape(test))) {
        imgset_fail("train and test images differ in shape (resize both with a size)");
        goto done;
    }
    m = model_create(c->arch, run->input.channels, run->input.height, run->input.width,
                     run->classes, c->batch, c->seed);
    if (!m || model_set_threads(m, c->threads) < 0)
        goto done;
    run->parameters = model_num_parameters(m);
    TrainState state = {.sampler_seed = c->seed};
    if (c->resume) {
        CheckpointInfo ci;
        if (checkpoint_restore(c->resume, m, &ci) < 0)
            goto done;
        state = ci.state;
        checkpoint_info_free(&ci);
        if (state.sampler_seed != c->seed) {
            imgset_fail("%s was trained with seed %llu, not %llu", c->resume,
                        (unsigned long long)state.sampler_seed, (unsigned long long)c->seed);
            goto done;
        }
    }
    if (run->device == MODEL_CUDA && model_use_device(m, MODEL_CUDA) < 0)
        goto done;
    int64_t per_epoch = run->batches_per_epoch, total = (int64_t)c->epochs * per_epoch;
    LrSchedule schedule = {
        .kind = c->schedule, .base_lr = c->lr,
        .warmup_steps = (int64_t)c->warmup_epochs * per_epoch, .total_steps = total,
        .step_size = total >= 3 ? (total + 2) / 3 : 1, .gamma = 0.1f, .min_lr = 0,
    };
    SgdConfig sgd = {c->momentum, c->weight_decay, c->nesterov};
    if (cb && cb->started)
        cb->started(cb->ctx, run);

    for (int epoch = (int)state.sampler_epoch; epoch < c->epochs; epoch++) {
        int64_t start = epoch == state.sampler_epoch ? state.sampler_position / c->batch : 0;
        EpochReport r = {.epoch = epoch, .test_accuracy = -1, .test_f1 = -1};
        int64_t batch_no;
        if (train_epoch(c, cb, run, m, train, &schedule, &sgd, epoch, start, &r, &batch_no) < 0)
            goto done;
        int partial = run->stopped && batch_no < per_epoch;
        state.step = m->step;
        state.sampler_epoch = partial ? epoch : epoch + 1;
        state.sampler_position = partial ? batch_no * c->batch : 0;
        if (c->save && (model_sync_host(m) < 0 || checkpoint_save(c->save, m, &state,
                                       (const char *const *)info->class_names, 1) < 0))
            goto done;
        if (run->stopped) {
            run->stop_epoch = epoch;
            run->stop_batch = batch_no;
            break;
        }
        if (test) {
            double e0 = monotonic_seconds();
            if (evaluate(m, test, &r.test_accuracy, &r.test_f1) < 0)
                goto done;
            r.eval_seconds = monotonic_seconds() - e0;
        }
        if (cb && cb->epoch_done)
            cb->epoch_done(cb->ctx, &r);
    }
    rc = 0;

done:
    model_free(m);
    loader_close(train);
    loader_close(test);
    return rc;
}
