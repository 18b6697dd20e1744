/* checkpoint.h — model checkpoints (weights, optimiser state, sampler position, class names)
 * in the safetensors format of safetensors.h, written atomically and read back. */
#ifndef IMGSET_CHECKPOINT_H
#define IMGSET_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "safetensors.h"

/* What a checkpoint says besides its tensors. Owns class_names. */
typedef struct CheckpointInfo {
    ModelSpec spec;
    uint64_t seed;             /* the initialisation seed */
    TrainState state;
    char **class_names;        /* spec.classes names, or NULL when the file has none */
} CheckpointInfo;

/*
 * Write m (weights, momentum, m->step) with state and class_names (m->graph.spec.classes
 * strings, or NULL) to path: written to "<path>.tmp-<pid>", fsync'ed, then renamed over
 * path; with overwrite = 0 an existing path is an error ("... already exists") and is left
 * alone. A failure removes the temporary file and leaves any old checkpoint untouched.
 * 0, or -1 with imgset_fail().
 */
int checkpoint_save(const char *path, const Model *m, const TrainState *state,
                    const char *const *class_names, int overwrite);

/* Read path and build its model for batches up to max_batch, with weights, momentum and
 * step restored. info (may be NULL) receives the metadata; free it with
 * checkpoint_info_free(). NULL with imgset_fail() naming the file and the problem. */
Model *checkpoint_load(const char *path, int max_batch, CheckpointInfo *info);

/* Restore path into an existing model (to resume): the checkpoint's spec (arch, input
 * shape, classes, activation, loss, normalisation) must equal m's. 0, or -1 with
 * imgset_fail() naming both; on failure m may be half-restored. */
int checkpoint_restore(const char *path, Model *m, CheckpointInfo *info);

void checkpoint_info_free(CheckpointInfo *info);

#endif
