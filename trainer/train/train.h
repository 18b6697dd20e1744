/* train.h — the training loop: a model trained through any loader, one report per epoch,
 * checkpoints and exact resume. Used by `imgset train` and `imgset bench`. */
#ifndef IMGSET_TRAIN_H
#define IMGSET_TRAIN_H

#include <stdint.h>

#include "comm.h"
#include "dataset.h"
#include "graph.h"
#include "optim.h"
#include "store.h"

typedef struct TrainConfig {
    const char *uri;          /* the train split of this store */
    const char *test_uri;     /* the test split of this store (NULL: the same store) */
    const char *arch;         /* model name (model.h) */
    const char *save;         /* checkpoint after each epoch and when stopped, or NULL */
    const char *resume;       /* continue from this checkpoint, or NULL */
    int epochs, batch, threads, workers;
    int augment;              /* random crop + flip */
    int size;                 /* resize + center-crop to size x size; 0 = as stored */
    uint64_t seed;            /* weights and shuffle */
    float lr, momentum, weight_decay;
    int nesterov;
    LrKind schedule;
    int warmup_epochs;
    int64_t stop_after;       /* stop after this many batches (0: never) */
    int evaluate;             /* 1: test accuracy and macro-F1 after every epoch */
    int device;               /* TRAIN_AUTO, MODEL_CPU or MODEL_CUDA (model.h) */
    const Comm *comm;         /* the ranks of a data-parallel run, or NULL: one process */
    int activation;           /* hidden activation (graph.h), for mlp and cnn-small */
    float leaky_slope;
    int loss;                 /* enum NnLoss (nn.h) */
    int normalize;            /* NORM_MEANSTD or NORM_MINMAX (graph.h) */
    float mean[IMGSET_MAX_CHANNELS], std[IMGSET_MAX_CHANNELS];   /* NORM_MEANSTD, on x / 255 */
    int mean_values, std_values;   /* how many of mean / std are given: 1 (for every channel)
                                    * or one per channel; 0: 0.5; TRAIN_MEASURE: measured */
} TrainConfig;

/*
 * Data-parallel training (comm with world N > 1), as PyTorch's DDP does it: `batch` is the
 * global batch B and each rank trains on B / N images of it — its shard of the sampler's
 * permutation (loaders/sampler.h), so the ranks' batch b together is the one-process batch
 * b. Every rank starts from rank 0's weights (and rank 0's checkpoint with resume), computes
 * its gradients, and the gradients are averaged over the ranks (one sum of the whole
 * gradient memory) before every SGD step, so all ranks take the same steps. Batch-norm
 * statistics are each rank's own (not synchronised); rank 0 evaluates, writes checkpoints
 * and gets the callbacks' epoch reports (every rank's progress callback may ask to stop:
 * all stop at the same batch). Any rank's failure stops every rank with that rank's error
 * (comm_agree). Runs on the CPU: gradients are exchanged in host memory.
 */

/* TrainConfig.device: CUDA when this build has it and a device is there, else the CPU. */
#define TRAIN_AUTO (-1)
/* TrainConfig.mean_values / std_values: the train split's own mean / std ("auto"). */
#define TRAIN_MEASURE (-1)

/* cnn-small, 5 epochs, batch 128, 2 threads, 1 worker, seed 1, SGD lr 0.05 momentum 0.9
 * weight decay 5e-4, cosine schedule, evaluate on, device TRAIN_AUTO, ReLU, cross-entropy,
 * mean = std = 0.5. */
void train_config_default(TrainConfig *c);

/* The normalisation c asks for, for the train split of s, into spec->normalize, mean and
 * std: given values, the defaults (0.5), or from split_stats() of the split (NORM_MINMAX:
 * mean = (min + max) / 2, std = (max - min) / 2, a constant channel taking std = 0.5 / 255;
 * TRAIN_MEASURE: the split's mean and std). A count of given values other than 1 or the
 * images' channels is an error naming --mean or --std. 0, or -1 with imgset_fail(). */
int train_normalization(const TrainConfig *c, Store *s, ModelSpec *spec);

/* One epoch. Seconds: wall = the epoch's training pass; wait = time spent in loader_next;
 * compute = forward + backward + step (on a GPU: the GPU's time for them, from CUDA events);
 * copy = the batches' host-to-device transfers (on a GPU; done by the loader's threads,
 * overlapped with compute), copy_bytes = the pixel bytes moved; allreduce = averaging the
 * gradients over the ranks (waiting for the slowest included). AU = compute / wall. With
 * several ranks, images, loss and accuracy are over all ranks' images; wait, compute and
 * allreduce are the ranks' means; wall is rank 0's. */
typedef struct EpochReport {
    int epoch;
    int64_t images;
    double wall, wait, compute, eval_seconds;
    double copy, copy_bytes;
    double allreduce;
    double loss, accuracy;               /* over the epoch's training batches */
    double test_accuracy, test_f1;       /* -1 when not evaluated */
    double test_top5;                    /* -1 when not evaluated or for 10 classes or fewer */
    const int64_t *test_confusion;       /* (K, K) rows = labels, columns = predictions, valid
                                          * during the epoch_done callback; NULL when not
                                          * evaluated */
} EpochReport;

/* Facts about a run, for its caller's report. */
typedef struct TrainRun {
    ModelSpec spec;          /* the model: architecture, activation, loss, normalisation */
    ImageShape input;        /* the model's input, channels-last */
    int32_t classes;
    char *const *class_names;   /* the data set's (classes), valid until train_run returns */
    size_t parameters;
    int64_t batches_per_epoch;   /* per rank */
    int world;               /* ranks (1 without a comm) */
    int stopped;             /* 1 when --stop-after or the progress callback stopped it */
    int stop_epoch;
    int64_t stop_batch, batches_done;
    int device;              /* MODEL_CPU or MODEL_CUDA: where it trained */
    char device_info[256];   /* the GPU's description, or why the CPU was used */
} TrainRun;

typedef struct TrainCallbacks {
    void (*started)(void *ctx, const TrainRun *run);       /* before the first epoch (rank 0) */
    void (*epoch_done)(void *ctx, const EpochReport *r);   /* after each full epoch (rank 0) */
    ProgressFn progress;     /* (done, total) batches of the epoch; non-zero stops */
    void *ctx;
} TrainCallbacks;

/* Train as configured. 0 when the run ended or was stopped (run->stopped; the checkpoint
 * is written), -1 with imgset_fail() on error — a NaN or infinite loss included, which names
 * the epoch and batch and leaves the last good checkpoint in place. With a comm, every rank
 * calls it with the same numbers (URIs may differ: a copy of the data set per machine) and
 * every rank returns the same outcome. */
int train_run(const TrainConfig *c, const TrainCallbacks *cb, TrainRun *run);

#endif
