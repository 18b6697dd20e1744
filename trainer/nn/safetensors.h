/* safetensors.h — safetensors files: a strict, allocation-free parser for untrusted bytes,
 * and the readers of the checkpoint format (train/checkpoint.h writes it) that the extension
 * uses over a parsed file. */
#ifndef IMGSET_SAFETENSORS_H
#define IMGSET_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "graph.h"

/*
 * safetensors (https://github.com/huggingface/safetensors): 8-byte little-endian header
 * length L, L bytes of JSON header, then the data section. The header is one object: each
 * member is a tensor {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} (offsets
 * into the data section), except "__metadata__", an object of string values. The parser
 * accepts exactly that: UTF-8 checked, no duplicate names, non-negative integers only, known
 * dtypes, end - begin == product(shape) * dtype size, and the tensors cover the data section
 * without holes or overlaps, ending exactly at the end of the file. Trailing spaces after
 * the header object are allowed (padding). Nothing is trusted before it is checked.
 */

#define SAFETENSORS_MAX_DIMS 8
#define SAFETENSORS_MAX_HEADER ((size_t)16 << 20)   /* larger headers are refused */

typedef struct SafetensorsTensor {
    const char *name;        /* NUL-terminated, in the arena */
    char dtype[8];           /* "F32", "F16", "BF16", "I64", ... */
    size_t dtype_size;       /* bytes per element */
    int ndim;
    int64_t shape[SAFETENSORS_MAX_DIMS];
    uint64_t begin, end;     /* byte offsets into data */
} SafetensorsTensor;

typedef struct SafetensorsMeta {
    const char *key, *value; /* NUL-terminated (decoded JSON strings), in the arena */
} SafetensorsMeta;

/* A parsed file. Pointers go into the caller's file bytes and the caller's arena, which must
 * outlive it. Tensors are sorted by name. */
typedef struct Safetensors {
    const uint8_t *data;     /* the data section */
    size_t data_len;
    int num_tensors;
    SafetensorsTensor *tensors;
    int num_meta;
    SafetensorsMeta *meta;
} Safetensors;

/* Bytes of arena safetensors_parse() needs for this file (a bound computed from the header
 * length alone); a small positive number when the file is too short to say, so that parse
 * reports the error. */
size_t safetensors_arena_size(const uint8_t *file, size_t len);

/* Parse file (len bytes); `what` names it in messages (a path). 0, or -1 with imgset_fail()
 * naming the file and, where there is one, the tensor. No allocation: arena holds the
 * tables and decoded strings (arena_len >= safetensors_arena_size()). */
int safetensors_parse(Safetensors *st, const uint8_t *file, size_t len, void *arena,
                      size_t arena_len, const char *what);

/* The tensor called name, or NULL. */
const SafetensorsTensor *safetensors_find(const Safetensors *st, const char *name);

/* The metadata value of key, or NULL. */
const char *safetensors_meta(const Safetensors *st, const char *key);

/* Copy a tensor's float32 little-endian data into dst (count floats), in host order. The
 * tensor must have dtype F32 and exactly `count` elements (checked, -1 with imgset_fail()). */
int safetensors_read_f32(const Safetensors *st, const SafetensorsTensor *t, float *dst,
                         size_t count, const char *what);

/* ---- The checkpoint format ------------------------------------------------------------ */

/*
 * A checkpoint holds every tensor of the model under its state_dict name (F32), the SGD
 * momentum of each trainable one as "momentum.<name>", and string metadata:
 * format = "pg_imgset-checkpoint", version = "2", arch, channels, height, width, classes,
 * class_names (a JSON array of strings, itself stored as a string), step (optimiser steps),
 * seed (initialisation), sampler_seed, sampler_epoch, sampler_position (decimal integers),
 * and how the model computes and was trained (graph.h's ModelSpec): activation ("relu",
 * "leaky-relu", "tanh", "sigmoid"), leaky_slope (a decimal), loss ("cce", "bce", "mse",
 * "mae"), normalize ("meanstd", "minmax"), mean and std (JSON arrays of one number per
 * input channel, at most 4: x enters as (x / 255 - mean) / std). Version "1" files have no
 * such keys and mean ReLU, cross-entropy and mean = std = 0.5; they are still read.
 */
#define CHECKPOINT_FORMAT "pg_imgset-checkpoint"
#define CHECKPOINT_VERSION "2"
#define CHECKPOINT_VERSION_1 "1"

/* Where training stands, saved with the weights so that a resumed run continues exactly. */
typedef struct TrainState {
    int64_t step;              /* optimiser steps taken (Model.step) */
    uint64_t sampler_seed;     /* the shuffle's seed */
    int64_t sampler_epoch;     /* the epoch in progress */
    int64_t sampler_position;  /* images of that epoch already trained on */
} TrainState;

/* Allocation-free readers of a parsed checkpoint (the extension loads models with these): */

/* The model spec (the recipe keys' defaults for version 1), seed and train state from the
 * metadata; checks format and version, and the recipe keys' syntax (graph.h's
 * model_graph_build checks their ranges). */
int checkpoint_read_info(const Safetensors *st, ModelSpec *spec, uint64_t *seed,
                         TrainState *state, const char *what);

/* Copy every tensor of graph into params (graph->param_floats) and, when velocity is not
 * NULL, the momentum buffers into velocity; any tensor missing, of the wrong dtype or shape,
 * or not belonging to the graph is an error. */
int checkpoint_read_tensors(const Safetensors *st, const ModelGraph *graph, float *params,
                            float *velocity, const char *what);

/* Decode the class_names JSON array `json` into buf (cap >= strlen(json) + 1 suffices) and
 * names[0..K-1] pointing into it; exactly K strings required. */
int checkpoint_decode_class_names(const char *json, char *buf, size_t cap, const char **names,
                                  int K, const char *what);

#endif
