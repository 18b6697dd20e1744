/* pass.h — one forward or backward pass of a graph over caller-owned memory: the CPU code of
 * every op, run segment by segment, each thread on a fixed share of the batch; and the
 * single-threaded, allocation-free inference built on it (the extension's entry point). */
#ifndef IMGSET_PASS_H
#define IMGSET_PASS_H

#include <stddef.h>

#include "graph.h"

/* How a run of ops (a segment) is split over threads. */
enum {
    SEG_SAMPLE,   /* per image, in small chunks of images (convolutional part) */
    SEG_DENSE,    /* per image, each thread's images at once (GEMMs over many rows) */
    SEG_BATCH,    /* batch norm in training mode: split by channel over the whole batch */
};

/* Everything one forward or backward needs; built on the stack by its caller, which owns
 * every buffer it points to. */
typedef struct Pass {
    const ModelGraph *g;
    float *params;                        /* written only by training BN (running stats) */
    float *act[MODEL_MAX_ACTS];           /* (N, act size) each */
    float *dact[MODEL_MAX_ACTS];          /* gradients, NULL for the input */
    float *stats;                         /* BN saved mean / invstd */
    float *aux;                           /* argmax bytes of fused conv blocks, NULL: none */
    int capacity;                         /* images the activation memory is laid out for */
    float *scratch[MODEL_MAX_THREADS];    /* pass_scratch_floats() each, per thread */
    float *grads[MODEL_MAX_THREADS];      /* parameter gradients, per thread (backward) */
    int N, threads, training;
    int seg_begin, seg_end, seg_kind;     /* the ops [begin, end) of the current segment */
    int chunk;                            /* images per chunk for SEG_SAMPLE */
} Pass;

/* Floats of scratch one thread of a pass over g needs (im2col, a fused conv block's
 * pre-pool output and the pre-pool gradients of a group of images); 0 on overflow. */
size_t pass_scratch_floats(const ModelGraph *g);

/* Point every activation of p into memory laid out for `capacity` images (see graph.h's
 * ModelAct.offset): activations first, then, with with_grads, their gradients. */
void pass_point_acts(Pass *p, float *memory, int capacity, int with_grads);

/* How a pass runs job(arg, t) for t = 0..threads-1 and waits for all (the trainer's thread
 * pool). A NULL runner runs job(arg, 0) on the caller's thread: p->threads must then be 1. */
typedef void (*PassRunner)(void *ctx, int threads, void (*job)(void *arg, int t), void *arg);

/* Every segment of the graph forwards, in order. */
void pass_forward(Pass *p, PassRunner run, void *ctx);

/* Every segment backwards, in reverse, from the gradients of the outputs in p->dact:
 * input gradients into p->dact, parameter gradients added into p->grads[t]. */
void pass_backward(Pass *p, PassRunner run, void *ctx);

/* [*begin, *end) of `count` items for thread t of T: fixed, contiguous shares, so results
 * depend on the thread count but not on timing. */
void pass_share(int count, int t, int T, int *begin, int *end);

/* Floats of workspace model_inference() needs for N images; 0 on overflow. */
size_t model_inference_workspace_floats(const ModelGraph *graph, int N);

/* Evaluation-mode forward (BN uses running statistics), single-threaded, no allocation:
 * logits (N, K) from x (N, C, H, W) with params laid out as graph->tensors.
 * workspace: model_inference_workspace_floats(graph, N) floats. */
void model_inference(const ModelGraph *graph, const float *params, const float *x, int N,
                     float *workspace, float *logits);

#endif
