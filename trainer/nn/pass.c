/* pass.c — the CPU code of every op, forward and backward, and how a pass runs them: the graph
 * cut into segments, each thread on its fixed share of the images (or channels). */
#include "pass.h"

#include <stdint.h>
#include <string.h>

#include "nn.h"
#include "sizes.h"

/* Per-image bytes a chunk of a convolutional segment may touch: about half an L2 cache. */
#define CHUNK_BYTES (768u * 1024u)
/* Images whose pre-pool gradients a fused conv block's backward holds at once, so that one
 * conv2d_backward call (one weight-gradient reduction) serves them all. */
#define FUSED_GROUP 4

static int op_segment_kind(const ModelGraph *g, const ModelOp *op, int training)
{
    if (op->kind == OP_BATCHNORM && training)
        return SEG_BATCH;
    const ModelAct *out = &g->acts[op->out];
    if (op->kind == OP_LINEAR || (out->h == 1 && out->w == 1))
        return SEG_DENSE;
    return SEG_SAMPLE;
}

/* The end of the segment starting at op `begin`. Each training BN is a segment of its own. */
static int segment_end(const Pass *p, int begin, int *kind)
{
    const ModelGraph *g = p->g;
    *kind = op_segment_kind(g, &g->ops[begin], p->training);
    int end = begin + 1;
    if (*kind == SEG_BATCH)
        return end;
    while (end < g->num_ops && op_segment_kind(g, &g->ops[end], p->training) == *kind)
        end++;
    return end;
}

/* Images per chunk for a convolutional segment: its activations (and, for training, their
 * gradients) for one chunk stay within CHUNK_BYTES. */
static int segment_chunk(const Pass *p)
{
    size_t bytes = 0;
    for (int i = p->seg_begin; i < p->seg_end; i++)
        bytes += p->g->acts[p->g->ops[i].out].size * sizeof(float) * (p->training ? 2 : 1);
    size_t chunk = bytes ? CHUNK_BYTES / bytes : 1;
    return chunk < 1 ? 1 : chunk > 64 ? 64 : (int)chunk;
}

void pass_share(int count, int t, int T, int *begin, int *end)
{
    *begin = (int)((int64_t)count * t / T);
    *end = (int)((int64_t)count * (t + 1) / T);
}

static float *at(float *base, int n, size_t size)
{
    return base ? base + (size_t)n * size : NULL;
}

/* The argmax bytes of fused conv block op for image n, or NULL when not kept (inference). */
static uint8_t *argmax_of(const Pass *p, const ModelOp *op, int n)
{
    if (!p->aux)
        return NULL;
    return (uint8_t *)(p->aux + op->aux_offset * (size_t)p->capacity + (size_t)n * op->aux_size);
}

/* Forward of one per-image op on images [n0, n0 + n). */
static void op_forward(const Pass *p, const ModelOp *op, int n0, int n, int t)
{
    const ModelGraph *g = p->g;
    const ModelAct *a = &g->acts[op->in], *o = &g->acts[op->out];
    const float *x = at(p->act[op->in], n0, a->size);
    float *y = at(p->act[op->out], n0, o->size);
    const float *w = op->weight >= 0 ? p->params + g->tensors[op->weight].offset : NULL;
    const float *bias = op->bias >= 0 ? p->params + g->tensors[op->bias].offset : NULL;
    switch (op->kind) {
    case OP_CONV:
        conv2d_forward(y, x, w, bias, p->scratch[t], n, a->c, a->h, a->w, o->c, op->kernel,
                       op->kernel, op->stride, op->pad);
        break;
    case OP_BATCHNORM:   /* evaluation mode; training BN runs in batchnorm_phase() */
        batchnorm_forward_eval(y, x, w, bias, p->params + g->tensors[op->running_mean].offset,
                               p->params + g->tensors[op->running_var].offset, n, a->c,
                               a->h * a->w, MODEL_BN_EPS);
        break;
    case OP_RELU:
        relu_forward(y, x, (size_t)n * a->size);
        break;
    case OP_MAXPOOL:
        maxpool2d_forward(y, x, n, a->c, a->h, a->w, op->kernel, op->stride);
        break;
    case OP_AVGPOOL:
        avgpool2d_forward(y, x, n, a->c, a->h, a->w, op->kernel, op->stride);
        break;
    case OP_GAP:
        global_avgpool_forward(y, x, n, a->c, a->h * a->w);
        break;
    case OP_LINEAR:
        linear_forward(y, x, w, bias, n, (int)a->size, o->c);
        break;
    case OP_ADD:
        add_forward(y, x, at(p->act[op->in2], n0, a->size), (size_t)n * a->size);
        break;
    case OP_CONCAT:
        concat_forward(y, x, at(p->act[op->in2], n0, g->acts[op->in2].size), n, a->c,
                       g->acts[op->in2].c, a->h * a->w);
        break;
    case OP_CONV_RELU_POOL: {
        int ch = nn_out_size(a->h, op->kernel, op->stride, op->pad);
        int cw = nn_out_size(a->w, op->kernel, op->stride, op->pad);
        float *tmp = p->scratch[t] + g->scratch_floats;   /* (OC, ch, cw), one image */
        for (int i = 0; i < n; i++) {
            conv2d_forward(tmp, x + (size_t)i * a->size, w, bias, p->scratch[t], 1, a->c, a->h,
                           a->w, o->c, op->kernel, op->kernel, op->stride, op->pad);
            relu_maxpool2x2_forward(y + (size_t)i * o->size, argmax_of(p, op, n0 + i), tmp, 1,
                                    o->c, ch, cw);
        }
        break;
    }
    }
}

/* The gradient of op input `which` (op->in or op->in2) for images [n0, n0 + n), zeroed first
 * when this op is its first writer; NULL when not needed (the network input). */
static float *input_grad(const Pass *p, const ModelOp *op, int which, int zero, int n0, int n)
{
    size_t size = p->g->acts[which].size;
    float *d = at(p->dact[which], n0, size);
    if (d && zero)
        memset(d, 0, sizeof(float) * size * n);
    return d;
}

/* Backward of one per-image op on images [n0, n0 + n), parameter gradients into thread t's. */
static void op_backward(const Pass *p, const ModelOp *op, int n0, int n, int t)
{
    const ModelGraph *g = p->g;
    const ModelAct *a = &g->acts[op->in], *o = &g->acts[op->out];
    const float *x = at(p->act[op->in], n0, a->size);
    const float *y = at(p->act[op->out], n0, o->size);
    const float *dy = at(p->dact[op->out], n0, o->size);
    float *dx = input_grad(p, op, op->in, op->zero_din, n0, n);
    const float *w = op->weight >= 0 ? p->params + g->tensors[op->weight].offset : NULL;
    float *dw = op->weight >= 0 ? p->grads[t] + g->tensors[op->weight].offset : NULL;
    float *db = op->bias >= 0 ? p->grads[t] + g->tensors[op->bias].offset : NULL;
    switch (op->kind) {
    case OP_CONV:
        conv2d_backward(dx, dw, db, p->scratch[t], dy, x, w, n, a->c, a->h, a->w, o->c,
                        op->kernel, op->kernel, op->stride, op->pad);
        break;
    case OP_BATCHNORM:
        batchnorm_backward_eval(dx, dw, db, dy, x, w,
                                p->params + g->tensors[op->running_mean].offset,
                                p->params + g->tensors[op->running_var].offset, n, a->c,
                                a->h * a->w, MODEL_BN_EPS);
        break;
    case OP_RELU:
        relu_backward(dx, dy, y, (size_t)n * a->size);
        break;
    case OP_MAXPOOL:
        maxpool2d_backward(dx, dy, x, n, a->c, a->h, a->w, op->kernel, op->stride);
        break;
    case OP_AVGPOOL:
        avgpool2d_backward(dx, dy, n, a->c, a->h, a->w, op->kernel, op->stride);
        break;
    case OP_GAP:
        global_avgpool_backward(dx, dy, n, a->c, a->h * a->w);
        break;
    case OP_LINEAR:
        linear_backward(dx, dw, db, dy, x, w, n, (int)a->size, o->c);
        break;
    case OP_ADD:
        add_backward(dx, input_grad(p, op, op->in2, op->zero_din2, n0, n), dy,
                     (size_t)n * a->size);
        break;
    case OP_CONCAT:
        concat_backward(dx, input_grad(p, op, op->in2, op->zero_din2, n0, n), dy, n, a->c,
                        g->acts[op->in2].c, a->h * a->w);
        break;
    case OP_CONV_RELU_POOL: {
        int ch = nn_out_size(a->h, op->kernel, op->stride, op->pad);
        int cw = nn_out_size(a->w, op->kernel, op->stride, op->pad);
        size_t conv_size = (size_t)o->c * ch * cw;
        /* (FUSED_GROUP, OC, ch, cw): the pre-pool gradients of a group of images */
        float *dtmp = p->scratch[t] + g->scratch_floats + g->conv_tmp_floats;
        for (int i = 0; i < n; i += FUSED_GROUP) {
            int group = n - i < FUSED_GROUP ? n - i : FUSED_GROUP;
            memset(dtmp, 0, sizeof(float) * conv_size * group);
            for (int j = 0; j < group; j++)
                relu_maxpool2x2_backward(dtmp + j * conv_size, dy + (size_t)(i + j) * o->size,
                                         y + (size_t)(i + j) * o->size,
                                         argmax_of(p, op, n0 + i + j), 1, o->c, ch, cw);
            conv2d_backward(dx ? dx + (size_t)i * a->size : NULL, dw, db, p->scratch[t], dtmp,
                            x + (size_t)i * a->size, w, group, a->c, a->h, a->w, o->c,
                            op->kernel, op->kernel, op->stride, op->pad);
        }
        break;
    }
    }
}

/* Training-mode batch norm, forward or backward, for thread t's share of the channels. */
static void batchnorm_phase(const Pass *p, const ModelOp *op, int t, int backward)
{
    const ModelGraph *g = p->g;
    const ModelAct *a = &g->acts[op->in];
    int c0, c1, HW = a->h * a->w, N = p->N;
    pass_share(a->c, t, p->threads, &c0, &c1);
    if (c0 == c1)
        return;
    float *gamma = p->params + g->tensors[op->weight].offset;
    float *mean = p->stats + op->stat_offset, *invstd = mean + a->c;
    if (!backward) {
        batchnorm_forward_train(p->act[op->out], mean, invstd,
                                p->params + g->tensors[op->running_mean].offset,
                                p->params + g->tensors[op->running_var].offset, p->act[op->in],
                                gamma, p->params + g->tensors[op->bias].offset, N, a->c, HW, c0,
                                c1, MODEL_BN_MOMENTUM, MODEL_BN_EPS);
        return;
    }
    float *dx = p->dact[op->in];
    if (dx && op->zero_din)
        for (int n = 0; n < N; n++)
            memset(dx + ((size_t)n * a->c + c0) * HW, 0, sizeof(float) * (size_t)(c1 - c0) * HW);
    batchnorm_backward_train(dx, p->grads[t] + g->tensors[op->weight].offset,
                             p->grads[t] + g->tensors[op->bias].offset, p->dact[op->out],
                             p->act[op->in], gamma, mean, invstd, N, a->c, HW, c0, c1);
}

/* Thread t's part of the current segment: its share of the batch in chunks, ops in order
 * (forward) or in reverse (backward); a batch-statistics segment is split by channels. */
static void segment_phase(const Pass *p, int t, int backward)
{
    const ModelGraph *g = p->g;
    if (p->seg_kind == SEG_BATCH) {
        batchnorm_phase(p, &g->ops[p->seg_begin], t, backward);
        return;
    }
    int n0, n1;
    pass_share(p->N, t, p->threads, &n0, &n1);
    int chunk = p->seg_kind == SEG_SAMPLE ? p->chunk : n1 - n0;
    for (int n = n0; n < n1; n += chunk) {
        int count = n1 - n < chunk ? n1 - n : chunk;
        if (backward)
            for (int i = p->seg_end - 1; i >= p->seg_begin; i--)
                op_backward(p, &g->ops[i], n, count, t);
        else
            for (int i = p->seg_begin; i < p->seg_end; i++)
                op_forward(p, &g->ops[i], n, count, t);
    }
}

static void forward_phase(void *arg, int t)
{
    segment_phase(arg, t, 0);
}

static void backward_phase(void *arg, int t)
{
    segment_phase(arg, t, 1);
}

/* Make ops [begin, segment_end) the current segment and run `phase` on every thread. */
static int run_segment(Pass *p, int begin, void (*phase)(void *, int), PassRunner run,
                       void *ctx)
{
    int kind, end = segment_end(p, begin, &kind);
    p->seg_begin = begin, p->seg_end = end, p->seg_kind = kind;
    p->chunk = segment_chunk(p);
    if (run)
        run(ctx, p->threads, phase, p);
    else
        phase(p, 0);
    return end;
}

void pass_forward(Pass *p, PassRunner run, void *ctx)
{
    for (int begin = 0; begin < p->g->num_ops;)
        begin = run_segment(p, begin, forward_phase, run, ctx);
}

void pass_backward(Pass *p, PassRunner run, void *ctx)
{
    /* segments in reverse: find them forwards, then walk back */
    int starts[MODEL_MAX_OPS], count = 0;
    for (int begin = 0; begin < p->g->num_ops;) {
        int kind;
        starts[count++] = begin;
        begin = segment_end(p, begin, &kind);
    }
    for (int s = count - 1; s >= 0; s--)
        run_segment(p, starts[s], backward_phase, run, ctx);
}

size_t pass_scratch_floats(const ModelGraph *g)
{
    size_t tmp, total;
    if (size_mul(g->conv_tmp_floats, 1 + FUSED_GROUP, &tmp) ||
        size_add(g->scratch_floats, tmp, &total) || size_add(total, 1, &total))
        return 0;
    return total;
}

void pass_point_acts(Pass *p, float *memory, int capacity, int with_grads)
{
    const ModelGraph *g = p->g;
    for (int a = 0; a < g->num_acts; a++) {
        p->act[a] = memory + g->acts[a].offset * capacity;
        p->dact[a] = with_grads && a > 0
                         ? memory + (g->act_floats + g->acts[a].offset) * capacity : NULL;
    }
}

size_t model_inference_workspace_floats(const ModelGraph *g, int N)
{
    size_t total;
    if (N < 1 || size_mul(g->act_floats, (size_t)N, &total) ||
        size_add(total, g->stat_floats, &total) || size_add(total, g->scratch_floats, &total) ||
        size_add(total, g->conv_tmp_floats, &total) || total > SIZE_MAX / sizeof(float))
        return 0;
    return total;
}

void model_inference(const ModelGraph *g, const float *params, const float *x, int N,
                     float *workspace, float *logits)
{
    Pass p;
    memset(&p, 0, sizeof p);
    p.g = g;
    p.params = (float *)params;   /* evaluation mode never writes parameters */
    p.N = N, p.threads = 1, p.training = 0, p.capacity = N;
    pass_point_acts(&p, workspace, N, 0);
    p.act[0] = (float *)x;        /* read only */
    p.stats = workspace + g->act_floats * N;
    p.scratch[0] = p.stats + g->stat_floats;
    pass_forward(&p, NULL, NULL);
    memcpy(logits, p.act[g->output], sizeof(float) * (size_t)N * g->spec.classes);
}
