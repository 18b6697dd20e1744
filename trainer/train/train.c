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
#include "nn.h"
#include "stats.h"

void train_config_default(TrainConfig *c)
{
    *c = (TrainConfig){.arch = "cnn-small", .epochs = 5, .batch = 128, .threads = 2,
                       .workers = 1, .seed = 1, .lr = 0.05f, .momentum = 0.9f,
                       .weight_decay = 5e-4f, .schedule = LR_COSINE, .evaluate = 1,
                       .device = TRAIN_AUTO, .activation = ACT_RELU,
                       .leaky_slope = MODEL_LEAKY_SLOPE, .loss = LOSS_CCE,
                       .normalize = NORM_MEANSTD};
}

/* count given values for `channels` channels into out: one for all, or one each. */
static int given_values(float *out, const float *values, int count, int channels,
                        const char *flag)
{
    if (count != 1 && count != channels)
        return imgset_fail("%s has %d values; the images have %d channel%s (give 1 or %d)",
                           flag, count, channels, channels == 1 ? "" : "s", channels);
    for (int k = 0; k < IMGSET_MAX_CHANNELS; k++)
        out[k] = values[count == 1 ? 0 : k < count ? k : 0];
    return 0;
}

int train_normalization(const TrainConfig *c, Store *s, ModelSpec *spec)
{
    int channels = store_split_channels(s, SPLIT_TRAIN);
    if (channels < 0)
        return -1;
    spec->normalize = c->normalize;
    for (int k = 0; k < IMGSET_MAX_CHANNELS; k++)
        spec->mean[k] = spec->std[k] = 0.5f;
    int measure = c->normalize == NORM_MINMAX || c->mean_values == TRAIN_MEASURE ||
                  c->std_values == TRAIN_MEASURE;
    if (c->normalize == NORM_MEANSTD &&
        ((c->mean_values > 0 &&
          given_values(spec->mean, c->mean, c->mean_values, channels, "--mean") < 0) ||
         (c->std_values > 0 &&
          given_values(spec->std, c->std, c->std_values, channels, "--std") < 0)))
        return -1;
    if (!measure)
        return 0;
    SplitStats st;
    if (split_stats(s, SPLIT_TRAIN, &st, NULL, NULL) < 0)
        return -1;
    for (int k = 0; k < st.channels; k++) {
        const ChannelStats *ch = &st.channel[k];
        if (c->normalize == NORM_MINMAX) {
            spec->mean[k] = (float)((ch->min + ch->max) / 2.0 / 255.0);
            spec->std[k] = (float)(ch->max > ch->min ? (ch->max - ch->min) / 2.0 / 255.0
                                                     : 0.5 / 255.0);
            continue;
        }
        if (c->mean_values == TRAIN_MEASURE)
            spec->mean[k] = (float)ch->mean;
        if (c->std_values == TRAIN_MEASURE)
            spec->std[k] = (float)(ch->std > 0 ? ch->std : 0.5 / 255.0);
    }
    return 0;
}

/* Loader options shared by the train and test loaders, normalising with norm's mean and std:
 * the train loader takes this rank's shard of every global batch; the test loader (rank 0's)
 * the whole split. */
static void loader_options_for(const TrainConfig *c, const ModelSpec *norm, int device,
                               LoaderOptions *o, int split)
{
    int world = c->comm ? c->comm->world : 1;
    loader_options_default(o);
    memcpy(o->mean, norm->mean, sizeof o->mean);
    memcpy(o->std, norm->std, sizeof o->std);
    o->split = split;
    o->batch_size = c->batch / world;
    if (split == SPLIT_TRAIN && c->comm) {
        o->rank = c->comm->rank;
        o->world = world;
    }
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
    if (run->world > 1) {   /* the ranks' gradients are exchanged in host memory */
        if (c->device == MODEL_CUDA)
            return imgset_fail("train: --device cuda with %d ranks is not supported: the "
                               "ranks average their gradients on the CPU", run->world);
        snprintf(run->device_info, sizeof run->device_info,
                 "%d ranks: training with several ranks runs on the CPU", run->world);
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

/* m over the whole test loader: the confusion matrix (K, K), accuracy, macro-F1 and, for
 * more than 10 classes, top-5 accuracy, into r. */
static int evaluate(Model *m, Loader *test, int64_t *confusion, EpochReport *r)
{
    int K = m->graph.spec.classes;
    int64_t top5 = 0, images = 0;
    memset(confusion, 0, sizeof *confusion * (size_t)K * K);
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
        top5 += metrics_topk_hits(logits, b->labels, b->count, K, 5);
        images += b->count;
    }
    r->test_accuracy = confusion_accuracy(confusion, K);
    r->test_f1 = confusion_macro_f1(confusion, K);
    r->test_top5 = K > 10 && images ? (double)top5 / (double)images : -1;
    r->test_confusion = confusion;
    return rc < 0 ? -1 : 0;
}

/* Forward, loss and backward of one batch into m->grads; counts its correct answers and adds
 * its loss to *loss_sum. 0, or -1 with imgset_fail() (a non-finite loss named by batch). */
static int batch_gradients(const TrainConfig *c, Model *m, const Batch *b, int epoch,
                           int64_t batch_no, double *loss_sum, int64_t *correct)
{
    int K = m->graph.spec.classes;
    const float *logits = model_forward(m, batch_input(m, b), b->count, 1);
    float loss;
    if (!logits || model_loss(m, b->labels, &loss) < 0)
        return -1;
    if (!isfinite(loss))
        return imgset_fail("epoch %d batch %lld: the loss is %f; stopping (the last good "
                           "checkpoint%s%s is kept)", epoch, (long long)batch_no, loss,
                           c->save ? " " : "", c->save ? c->save : "");
    for (int i = 0; i < b->count; i++)
        *correct += metrics_argmax(logits + (size_t)i * K, K) == b->labels[i];
    *loss_sum += (double)loss * b->count;
    model_zero_grad(m);
    return model_backward(m);
}

/* Replace every rank's gradients by their mean over the ranks. */
static int average_gradients(const Comm *comm, Model *m)
{
    size_t n = m->graph.param_floats;
    if (comm->sum_floats(comm, m->grads, n) < 0)
        return -1;
    float scale = 1.0f / (float)comm->world;
    for (size_t i = 0; i < n; i++)
        m->grads[i] *= scale;
    return 0;
}

/* Sum the epoch's numbers over the ranks into rank 0's report: images, loss and accuracy
 * over every rank's images, the means of wait, compute and allreduce. */
static int reduce_report(const Comm *comm, EpochReport *r, double loss_sum, int64_t correct)
{
    double v[6] = {(double)r->images, loss_sum, (double)correct, r->wait, r->compute,
                   r->allreduce};
    if (comm && comm->sum_doubles(comm, v, 6) < 0)
        return -1;
    double world = comm ? comm->world : 1;
    r->images = (int64_t)v[0];
    r->loss = v[0] > 0 ? v[1] / v[0] : 0;
    r->accuracy = v[0] > 0 ? v[2] / v[0] : 0;
    r->wait = v[3] / world;
    r->compute = v[4] / world;
    r->allreduce = v[5] / world;
    return 0;
}

/*
 * One training pass over the epoch from start_batch; fills r; sets run->stopped when asked
 * to. With a comm, every step ends with the ranks agreeing (an error anywhere stops all,
 * a stop request anywhere stops all at this batch) and averaging their gradients; the
 * loader gives every rank the same number of batches.
 */
static int train_epoch(const TrainConfig *c, const TrainCallbacks *cb, TrainRun *run, Model *m,
                       Loader *train, const LrSchedule *schedule, const SgdConfig *sgd,
                       int epoch, int64_t start_batch, EpochReport *r, int64_t *batch_no)
{
    double loss_sum = 0;
    int64_t correct = 0;
    *batch_no = start_batch;
    int rc = loader_start_epoch(train, (uint64_t)epoch, start_batch);
    if (comm_agree(c->comm, rc, NULL) < 0)
        return -1;
    double t0 = monotonic_seconds(), device0 = model_device_seconds(m);
    size_t image_bytes = image_shape_bytes(loader_shape(train));
    const Batch *b;
    int got;
    while ((got = loader_next(train, &b)) != 0) {
        double c0 = monotonic_seconds();
        rc = got < 0 ? -1 : batch_gradients(c, m, b, epoch, *batch_no, &loss_sum, &correct);
        int stop = (cb && cb->progress && cb->progress(cb->ctx, *batch_no + 1,
                                                       run->batches_per_epoch)) ||
                   (c->stop_after && run->batches_done + 1 >= c->stop_after);
        double c1 = monotonic_seconds();
        if (comm_agree(c->comm, rc, &stop) < 0 || (c->comm && average_gradients(c->comm, m) < 0))
            return -1;
        double c2 = monotonic_seconds();
        model_sgd_step(m, lr_at(schedule, m->step), sgd);
        r->compute += (c1 - c0) + (monotonic_seconds() - c2);
        r->allreduce += c2 - c1;
        r->wait += b->wait_seconds;
        r->copy += b->copy_seconds;
        if (m->device == MODEL_CUDA)
            r->copy_bytes += (double)image_bytes * b->count;
        r->images += b->count;
        ++*batch_no;
        run->batches_done++;
        if (stop) {
            run->stopped = 1;
            break;
        }
    }
    if (m->device == MODEL_CUDA)   /* the GPU's own time; waits for the last step */
        r->compute = model_device_seconds(m) - device0;
    r->wall = monotonic_seconds() - t0;
    return reduce_report(c->comm, r, loss_sum, correct);
}

/* The numbers every rank must share, compared against rank 0's: a rank started with other
 * options would train something else. */
typedef struct RankPlan {
    int64_t batch, epochs, size, augment, stop_after, evaluate, batches_per_epoch;
    uint64_t seed;
    double lr, momentum, weight_decay;
    double spec[4 + 2 * MODEL_NORM_CHANNELS];   /* activation, slope, loss, normalisation */
    char arch[32];
} RankPlan;

/* Check that every rank has rank 0's plan; 0, or -1 on this rank naming what differs. */
static int check_plan(const TrainConfig *c, const TrainRun *run)
{
    const ModelSpec *s = &run->spec;
    RankPlan mine = {c->batch, c->epochs, c->size, c->augment, c->stop_after, c->evaluate,
                     run->batches_per_epoch, c->seed, c->lr, c->momentum, c->weight_decay,
                     {s->activation, s->leaky_slope, s->loss, s->normalize}, {0}};
    for (int k = 0; k < MODEL_NORM_CHANNELS; k++) {
        mine.spec[4 + k] = s->mean[k];
        mine.spec[4 + MODEL_NORM_CHANNELS + k] = s->std[k];
    }
    snprintf(mine.arch, sizeof mine.arch, "%s", c->arch);
    RankPlan first = mine;
    if (c->comm->broadcast(c->comm, &first, sizeof first, 0) < 0)
        return -1;
    if (mine.batches_per_epoch != first.batches_per_epoch)
        return imgset_fail("this rank has %lld batches per epoch, rank 0 has %lld (the data "
                           "sets differ?)", (long long)mine.batches_per_epoch,
                           (long long)first.batches_per_epoch);
    if (memcmp(&mine, &first, sizeof mine) != 0)
        return imgset_fail("this rank was started with other training options than rank 0 "
                           "(model, batch, epochs, seed, size, lr, activation, loss, "
                           "normalisation, ...)");
    return 0;
}

/* Give every rank rank 0's weights, momentum, step and sampler state. */
static int share_rank0_model(const Comm *comm, Model *m, TrainState *state)
{
    size_t bytes = sizeof(float) * m->graph.param_floats;
    if (comm->broadcast(comm, m->params, bytes, 0) < 0 ||
        comm->broadcast(comm, m->velocity, bytes, 0) < 0 ||
        comm->broadcast(comm, &m->step, sizeof m->step, 0) < 0 ||
        comm->broadcast(comm, state, sizeof *state, 0) < 0)
        return -1;
    return 0;
}

/* Open the loaders (the test loader on rank 0 only), normalising as c asks, build the model
 * of run->spec and, on rank 0, restore the checkpoint to resume from. 0, or -1 with
 * imgset_fail() on this rank. */
static int train_setup(const TrainConfig *c, TrainRun *run, Loader **train, Loader **test,
                       Model **m, TrainState *state)
{
    int rank = c->comm ? c->comm->rank : 0;
    if (choose_device(c, run) < 0)
        return -1;
    ModelSpec norm;   /* the normalisation first: the loaders apply it */
    Store *probe = store_open(c->uri);
    int rc_norm = probe ? train_normalization(c, probe, &norm) : -1;
    store_close(probe);
    if (rc_norm < 0)
        return -1;
    LoaderOptions to, eo;
    loader_options_for(c, &norm, run->device, &to, SPLIT_TRAIN);
    loader_options_for(c, &norm, run->device, &eo, SPLIT_TEST);
    if (!(*train = loader_open(c->uri, &to)))
        return -1;
    if (c->evaluate && rank == 0 && !(*test = loader_open(c->test_uri ? c->test_uri : c->uri, &eo)))
        return -1;
    const DatasetInfo *info = loader_info(*train);
    run->input = loader_shape(*train);
    run->classes = info->num_classes;
    run->class_names = info->class_names;
    run->batches_per_epoch = loader_batches(*train);
    if (*test && !image_shape_equal(run->input, loader_shape(*test)))
        return imgset_fail("train and test images differ in shape (resize both with a size)");
    ModelSpec *spec = &run->spec;
    model_spec_default(spec, c->arch, run->input.channels, run->input.height, run->input.width,
                       run->classes);
    spec->activation = c->activation;
    spec->leaky_slope = c->leaky_slope;
    spec->loss = c->loss;
    spec->normalize = norm.normalize;
    memcpy(spec->mean, norm.mean, sizeof spec->mean);
    memcpy(spec->std, norm.std, sizeof spec->std);
    *m = model_create_spec(spec, to.batch_size, c->seed);
    if (!*m || model_set_threads(*m, c->threads) < 0)
        return -1;
    run->parameters = model_num_parameters(*m);
    *state = (TrainState){.sampler_seed = c->seed};
    if (c->resume && rank == 0) {
        CheckpointInfo ci;
        if (checkpoint_restore(c->resume, *m, &ci) < 0)
            return -1;
        *state = ci.state;
        checkpoint_info_free(&ci);
        if (state->sampler_seed != c->seed)
            return imgset_fail("%s was trained with seed %llu, not %llu", c->resume,
                               (unsigned long long)state->sampler_seed,
                               (unsigned long long)c->seed);
    }
    return 0;
}

/* Rank 0's end of an epoch: the checkpoint, then the test set (its confusion matrix into
 * confusion). 0, or -1 with imgset_fail(). */
static int finish_epoch(const TrainConfig *c, Model *m, Loader *test, const DatasetInfo *info,
                        const TrainState *state, int stopped, int64_t *confusion,
                        EpochReport *r)
{
    if (c->save && (model_sync_host(m) < 0 ||
                    checkpoint_save(c->save, m, state,
                                    (const char *const *)info->class_names, 1) < 0))
        return -1;
    if (test && !stopped) {
        double e0 = monotonic_seconds();
        if (evaluate(m, test, confusion, r) < 0)
            return -1;
        r->eval_seconds = monotonic_seconds() - e0;
    }
    return 0;
}

int train_run(const TrainConfig *c, const TrainCallbacks *cb, TrainRun *run)
{
    memset(run, 0, sizeof *run);
    run->world = c->comm ? c->comm->world : 1;
    int rank = c->comm ? c->comm->rank : 0;
    if (c->batch < 1 || c->threads < 1 || c->epochs < 1)
        return imgset_fail("train: batch, threads and epochs must be at least 1");
    if (c->batch % run->world != 0)
        return imgset_fail("train: batch %d is not divisible by %d ranks", c->batch, run->world);
    Loader *train = NULL, *test = NULL;
    Model *m = NULL;
    int64_t *confusion = NULL;   /* rank 0's test evaluations */
    TrainState state;
    int rc = -1;
    if (comm_agree(c->comm, train_setup(c, run, &train, &test, &m, &state), NULL) < 0 ||
        (c->comm && (comm_agree(c->comm, check_plan(c, run), NULL) < 0 ||
                     share_rank0_model(c->comm, m, &state) < 0)))
        goto done;
    if (run->device == MODEL_CUDA && model_use_device(m, MODEL_CUDA) < 0)
        goto done;
    if (test && !(confusion = calloc((size_t)run->classes * run->classes, sizeof *confusion))) {
        imgset_fail("out of memory for a %dx%d confusion matrix", run->classes, run->classes);
        goto done;
    }
    const DatasetInfo *info = loader_info(train);
    int64_t per_epoch = run->batches_per_epoch, total = (int64_t)c->epochs * per_epoch;
    LrSchedule schedule = {
        .kind = c->schedule, .base_lr = c->lr,
        .warmup_steps = (int64_t)c->warmup_epochs * per_epoch, .total_steps = total,
        .step_size = total >= 3 ? (total + 2) / 3 : 1, .gamma = 0.1f, .min_lr = 0,
    };
    SgdConfig sgd = {c->momentum, c->weight_decay, c->nesterov};
    if (cb && cb->started && rank == 0)
        cb->started(cb->ctx, run);

    for (int epoch = (int)state.sampler_epoch; epoch < c->epochs; epoch++) {
        int64_t start = epoch == state.sampler_epoch ? state.sampler_position / c->batch : 0;
        EpochReport r = {.epoch = epoch, .test_accuracy = -1, .test_f1 = -1, .test_top5 = -1};
        int64_t batch_no;
        if (train_epoch(c, cb, run, m, train, &schedule, &sgd, epoch, start, &r, &batch_no) < 0)
            goto done;
        int partial = run->stopped && batch_no < per_epoch;
        state.step = m->step;
        state.sampler_epoch = partial ? epoch : epoch + 1;
        state.sampler_position = partial ? batch_no * c->batch : 0;
        int ended = rank == 0 ? finish_epoch(c, m, test, info, &state, run->stopped, confusion,
                                             &r) : 0;
        if (comm_agree(c->comm, ended, NULL) < 0)
            goto done;
        if (run->stopped) {
            run->stop_epoch = epoch;
            run->stop_batch = batch_no;
            break;
        }
        if (cb && cb->epoch_done && rank == 0)
            cb->epoch_done(cb->ctx, &r);
    }
    rc = 0;

done:
    free(confusion);
    model_free(m);
    loader_close(train);
    loader_close(test);
    return rc;
}
