/* pass.c — the CPU code of every op, forward and backward, and how a pass runs them: the graph
 * cut into segments, each thread on its fixed share of the images (or channels). */
#include "pass.h"

#include <stdint.h>
#include <string.h>

#include "error.h"
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

/* What the CPU code of one op sees for images [n0, n0 + n) on thread t. */
typedef struct OpCall {
    const Pass *p;
    const ModelOp *op;
    const ModelAct *a, *o;      /* its input and output activations */
    const float *x;             /* (n, a->size) */
    float *y;                   /* (n, o->size) */
    const float *w, *bias;      /* its weight and bias, NULL when it has none */
    int n0, n, t;
    const float *dy;            /* backward: (n, o->size) */
    float *dx;                  /* backward: (n, a->size), NULL for the network's input */
    float *dw, *db;             /* backward: thread t's parameter gradients, or NULL */
} OpCall;

/* The parameters of tensor id `tensor` in memory laid out as the graph's tensors, or NULL. */
static float *tensor_at(const Pass *p, float *base, int tensor)
{
    return tensor >= 0 ? base + p->g->tensors[tensor].offset : NULL;
}

/* The gradient of op input `which` (op->in or op->in2) for images [n0, n0 + n), zeroed first
 * when this op is its first writer; NULL when not needed (the network input). */
static float *input_grad(const Pass *p, int which, int zero, int n0, int n)
{
    size_t size = p->g->acts[which].size;
    float *d = at(p->dact[which], n0, size);
    if (d && zero)
        memset(d, 0, sizeof(float) * size * n);
    return d;
}

/* The second input of add / concat, and its gradient (zeroed by its first writer). */
static const float *second_input(const OpCall *c)
{
    return at(c->p->act[c->op->in2], c->n0, c->p->g->acts[c->op->in2].size);
}

static float *second_input_grad(const OpCall *c)
{
    return input_grad(c->p, c->op->in2, c->op->zero_din2, c->n0, c->n);
}

static void conv_forward_op(const OpCall *c)
{
    const ModelOp *op = c->op;
    conv2d_forward(c->y, c->x, c->w, c->bias, c->p->scratch[c->t], c->n, c->a->c, c->a->h,
                   c->a->w, c->o->c, op->kernel, op->kernel, op->stride, op->pad);
}

static void conv_backward_op(const OpCall *c)
{
    const ModelOp *op = c->op;
    conv2d_backward(c->dx, c->dw, c->db, c->p->scratch[c->t], c->dy, c->x, c->w, c->n, c->a->c,
                    c->a->h, c->a->w, c->o->c, op->kernel, op->kernel, op->stride, op->pad);
}

/* Evaluation mode; training BN runs in batchnorm_phase() (a segment of its own). */
static void batchnorm_forward_op(const OpCall *c)
{
    batchnorm_forward_eval(c->y, c->x, c->w, c->bias,
                           tensor_at(c->p, c->p->params, c->op->running_mean),
                           tensor_at(c->p, c->p->params, c->op->running_var), c->n, c->a->c,
                           c->a->h * c->a->w, MODEL_BN_EPS);
}

static void batchnorm_backward_op(const OpCall *c)
{
    batchnorm_backward_eval(c->dx, c->dw, c->db, c->dy, c->x, c->w,
                            tensor_at(c->p, c->p->params, c->op->running_mean),
                            tensor_at(c->p, c->p->params, c->op->running_var), c->n, c->a->c,
                            c->a->h * c->a->w, MODEL_BN_EPS);
}

static void relu_forward_op(const OpCall *c)
{
    relu_forward(c->y, c->x, (size_t)c->n * c->a->size);
}

static void relu_backward_op(const OpCall *c)
{
    relu_backward(c->dx, c->dy, c->y, (size_t)c->n * c->a->size);
}

static void leaky_relu_forward_op(const OpCall *c)
{
    leaky_relu_forward(c->y, c->x, (size_t)c->n * c->a->size, c->op->slope);
}

static void leaky_relu_backward_op(const OpCall *c)
{
    leaky_relu_backward(c->dx, c->dy, c->x, (size_t)c->n * c->a->size, c->op->slope);
}

static void tanh_forward_op(const OpCall *c)
{
    tanh_forward(c->y, c->x, (size_t)c->n * c->a->size);
}

static void tanh_backward_op(const OpCall *c)
{
    tanh_backward(c->dx, c->dy, c->y, (size_t)c->n * c->a->size);
}

static void sigmoid_forward_op(const OpCall *c)
{
    sigmoid_forward(c->y, c->x, (size_t)c->n * c->a->size);
}

static void sigmoid_backward_op(const OpCall *c)
{
    sigmoid_backward(c->dx, c->dy, c->y, (size_t)c->n * c->a->size);
}

static void maxpool_forward_op(const OpCall *c)
{
    maxpool2d_forward(c->y, c->x, c->n, c->a->c, c->a->h, c->a->w, c->op->kernel, c->op->stride);
}

static void maxpool_backward_op(const OpCall *c)
{
    maxpool2d_backward(c->dx, c->dy, c->x, c->n, c->a->c, c->a->h, c->a->w, c->op->kernel,
                       c->op->stride);
}

static void avgpool_forward_op(const OpCall *c)
{
    avgpool2d_forward(c->y, c->x, c->n, c->a->c, c->a->h, c->a->w, c->op->kernel, c->op->stride);
}

static void avgpool_backward_op(const OpCall *c)
{
    avgpool2d_backward(c->dx, c->dy, c->n, c->a->c, c->a->h, c->a->w, c->op->kernel,
                       c->op->stride);
}

static void gap_forward_op(const OpCall *c)
{
    global_avgpool_forward(c->y, c->x, c->n, c->a->c, c->a->h * c->a->w);
}

static void gap_backward_op(const OpCall *c)
{
    global_avgpool_backward(c->dx, c->dy, c->n, c->a->c, c->a->h * c->a->w);
}

static void linear_forward_op(const OpCall *c)
{
    linear_forward(c->y, c->x, c->w, c->bias, c->n, (int)c->a->size, c->o->c);
}

static void linear_backward_op(const OpCall *c)
{
    linear_backward(c->dx, c->dw, c->db, c->dy, c->x, c->w, c->n, (int)c->a->size, c->o->c);
}

static void add_forward_op(const OpCall *c)
{
    add_forward(c->y, c->x, second_input(c), (size_t)c->n * c->a->size);
}

static void add_backward_op(const OpCall *c)
{
    add_backward(c->dx, second_input_grad(c), c->dy, (size_t)c->n * c->a->size);
}

static void concat_forward_op(const OpCall *c)
{
    concat_forward(c->y, c->x, second_input(c), c->n, c->a->c, c->p->g->acts[c->op->in2].c,
                   c->a->h * c->a->w);
}

static void concat_backward_op(const OpCall *c)
{
    concat_backward(c->dx, second_input_grad(c), c->dy, c->n, c->a->c,
                    c->p->g->acts[c->op->in2].c, c->a->h * c->a->w);
}

/* One image at a time: the pre-pool output lives in thread scratch, never in the activations. */
static void conv_relu_pool_forward_op(const OpCall *c)
{
    const ModelOp *op = c->op;
    const ModelAct *a = c->a, *o = c->o;
    int ch = nn_out_size(a->h, op->kernel, op->stride, op->pad);
    int cw = nn_out_size(a->w, op->kernel, op->stride, op->pad);
    float *scratch = c->p->scratch[c->t];
    float *tmp = scratch + c->p->g->scratch_floats;   /* (OC, ch, cw), one image */
    for (int i = 0; i < c->n; i++) {
        conv2d_forward(tmp, c->x + (size_t)i * a->size, c->w, c->bias, scratch, 1, a->c, a->h,
                       a->w, o->c, op->kernel, op->kernel, op->stride, op->pad);
        relu_maxpool2x2_forward(c->y + (size_t)i * o->size, argmax_of(c->p, op, c->n0 + i), tmp,
                                1, o->c, ch, cw);
    }
}

/* FUSED_GROUP images at a time: their pre-pool gradients from the pool's argmax bytes, then
 * one conv2d_backward for the group. */
static void conv_relu_pool_backward_op(const OpCall *c)
{
    const ModelOp *op = c->op;
    const ModelAct *a = c->a, *o = c->o;
    int ch = nn_out_size(a->h, op->kernel, op->stride, op->pad);
    int cw = nn_out_size(a->w, op->kernel, op->stride, op->pad);
    size_t conv_size = (size_t)o->c * ch * cw;
    float *scratch = c->p->scratch[c->t];
    /* (FUSED_GROUP, OC, ch, cw): the pre-pool gradients of a group of images */
    float *dtmp = scratch + c->p->g->scratch_floats + c->p->g->conv_tmp_floats;
    for (int i = 0; i < c->n; i += FUSED_GROUP) {
        int group = c->n - i < FUSED_GROUP ? c->n - i : FUSED_GROUP;
        memset(dtmp, 0, sizeof(float) * conv_size * group);
        for (int j = 0; j < group; j++)
            relu_maxpool2x2_backward(dtmp + j * conv_size, c->dy + (size_t)(i + j) * o->size,
                                     c->y + (size_t)(i + j) * o->size,
                                     argmax_of(c->p, op, c->n0 + i + j), 1, o->c, ch, cw);
        conv2d_backward(c->dx ? c->dx + (size_t)i * a->size : NULL, c->dw, c->db, scratch, dtmp,
                        c->x + (size_t)i * a->size, c->w, group, a->c, a->h, a->w, o->c,
                        op->kernel, op->kernel, op->stride, op->pad);
    }
}

/* The CPU code of every op kind, made from graph.h's list (in its order, as the enum). */
static const struct {
    void (*forward)(const OpCall *c);
    void (*backward)(const OpCall *c);
} cpu_ops[OP_COUNT] = {
#define CPU_OP(KIND, name) {name##_forward_op, name##_backward_op},
    MODEL_OPS(CPU_OP)
#undef CPU_OP
};

/* The call of op on images [n0, n0 + n) for thread t (and, backward, its gradients). */
static OpCall op_call(const Pass *p, const ModelOp *op, int n0, int n, int t, int backward)
{
    const ModelGraph *g = p->g;
    OpCall c = {p, op, &g->acts[op->in], &g->acts[op->out], NULL, NULL, NULL, NULL, n0, n, t,
                NULL, NULL, NULL, NULL};
    c.x = at(p->act[op->in], n0, c.a->size);
    c.y = at(p->act[op->out], n0, c.o->size);
    c.w = tensor_at(p, p->params, op->weight);
    c.bias = tensor_at(p, p->params, op->bias);
    if (backward) {
        c.dy = at(p->dact[op->out], n0, c.o->size);
        c.dx = input_grad(p, op->in, op->zero_din, n0, n);
        c.dw = tensor_at(p, p->grads[t], op->weight);
        c.db = tensor_at(p, p->grads[t], op->bias);
    }
    return c;
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
        /* between ops: a host's interrupt hook may end the pass here (error.h) */
        for (int k = 0; k < p->seg_end - p->seg_begin; k++) {
            const ModelOp *op = &g->ops[backward ? p->seg_end - 1 - k : p->seg_begin + k];
            OpCall c = op_call(p, op, n, count, t, backward);
            imgset_check_interrupt();
            (backward ? cpu_ops[op->kind].backward : cpu_ops[op->kind].forward)(&c);
        }
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
