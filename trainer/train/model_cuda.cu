/* model_cuda.cu — the model executor on the GPU (see model_cuda.h): the graph's ops in order
 * over the whole batch, each one nn_cuda.cu call, on the model's own stream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "error.h"
#include "model_cuda.h"
#include "nn.h"
}
#include "nn_cuda.h"

/* Most floats of im2col workspace a convolution may use: bigger batches go in chunks.
 * IMGSET_CUDA_WORKSPACE_MB (1..4096) overrides it (the tests make it small to check the
 * chunking). */
#define WORK_CAP_FLOATS ((size_t)1 << 25)   /* 128 MiB */

static size_t work_cap_floats(void)
{
    const char *mb = getenv("IMGSET_CUDA_WORKSPACE_MB");
    long v = mb ? strtol(mb, NULL, 10) : 0;
    v = v > 4096 ? 4096 : v;
    return v > 0 ? (size_t)v * (1024 * 1024 / sizeof(float)) : WORK_CAP_FLOATS;
}

/* The events of one training step. */
typedef struct StepEvents {
    cudaEvent_t start, forward_stop, backward_start, stop;
    int forward;    /* a training forward recorded start and forward_stop */
    int backward;   /* and a backward recorded backward_start */
    int pending;    /* stop recorded, the time not yet added to busy */
} StepEvents;

struct ModelCuda {
    const ModelGraph *g;       /* the host Model's graph, which outlives this */
    int max_batch;
    NnCuda nn;
    float *params, *grads, *velocity;   /* (g->param_floats) each */
    float *acts;               /* activations then their gradients, as graph.h lays them out */
    float *stats;              /* (g->stat_floats) BN saved mean / invstd */
    float *aux;                /* fused conv blocks' argmax bytes, as on the CPU (model.c) */
    float *work;               /* im2col workspace */
    float *conv_tmp;           /* (max_batch, g->conv_tmp_floats): a fused block's pre-pool
                                * output, then its gradient */
    float *loss_memory;        /* one allocation for the loss: */
    double *loss_rows;         /* (max_batch) each row's summed loss */
    float *loss_probs;         /* (max_batch, K) the rows' softmax or sigmoids */
    int32_t *loss_labels;      /* (max_batch) */
    double *host_rows;         /* (max_batch) the rows' losses on the host */
    float *act[MODEL_MAX_ACTS], *dact[MODEL_MAX_ACTS];
    int chunk[MODEL_MAX_OPS];  /* images per im2col GEMM, per conv op */
    /* A training step's GPU time: forward (start to forward_stop) plus loss, backward and SGD
     * (backward_start to stop); the gap while the host has the logits is not in it. Two
     * sets, used in turn, so that a step's time is read once the next forward has waited for
     * the stream anyway — never a wait of its own between steps. */
    StepEvents steps[2];
    int current;               /* the set of the step in progress */
    double busy;               /* seconds */
    char error[512];           /* a failure of a call that cannot report it (zero_grad, step),
                                * reported by the next forward or backward */
    int batch, training;       /* of the last forward */
};

static int cuda_failed(const char *what, cudaError_t err)
{
    cudaGetLastError();
    return imgset_fail("cuda: %s failed: %s (%s)", what, cudaGetErrorString(err),
                       cudaGetErrorName(err));
}

#define CHECK(call, what)                                          \
    do {                                                           \
        cudaError_t err_ = (call);                                 \
        if (err_ != cudaSuccess)                                   \
            return cuda_failed(what, err_);                        \
    } while (0)

static int device_alloc(float **p, size_t floats, const char *what)
{
    cudaError_t err = cudaMalloc((void **)p, (floats ? floats : 1) * sizeof(float));
    if (err == cudaSuccess)
        return 0;
    *p = NULL;
    cudaGetLastError();
    return imgset_fail("cuda: cannot allocate %zu MB of device memory for %s: %s",
                       floats * sizeof(float) >> 20, what, cudaGetErrorString(err));
}

static int is_conv(const ModelOp *op)
{
    return op->kind == OP_CONV || op->kind == OP_CONV_RELU_POOL;
}

static size_t conv_workspace(const ModelGraph *g, const ModelOp *op, int chunk)
{
    const ModelAct *a = &g->acts[op->in];
    int oc = (int)g->tensors[op->weight].shape[0];
    return cuda_conv2d_workspace_floats(a->c, a->h, a->w, oc, op->kernel, op->kernel, op->stride,
                                        op->pad, chunk);
}

void model_cuda_free(ModelCuda *mc)
{
    if (!mc)
        return;
    if (mc->nn.stream)
        cudaStreamSynchronize(mc->nn.stream);
    float *buffers[] = {mc->params, mc->grads, mc->velocity, mc->acts, mc->stats, mc->aux,
                        mc->work, mc->conv_tmp, mc->loss_memory};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++)
        if (buffers[i])
            cudaFree(buffers[i]);
    if (mc->nn.blas)
        cublasDestroy(mc->nn.blas);
    for (int k = 0; k < 2; k++) {
        StepEvents *e = &mc->steps[k];
        cudaEvent_t events[] = {e->start, e->forward_stop, e->backward_start, e->stop};
        for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
            if (events[i])
                cudaEventDestroy(events[i]);
    }
    if (mc->nn.stream)
        cudaStreamDestroy(mc->nn.stream);
    cudaGetLastError();
    free(mc->host_rows);
    free(mc);
}

/* Everything model_cuda_create does after the struct exists; -1 leaves mc for the caller to
 * free. */
static int setup(ModelCuda *mc, const float *params, const float *velocity)
{
    const ModelGraph *g = mc->g;
    size_t B = (size_t)mc->max_batch, work = 1, cap = work_cap_floats();
    for (int i = 0; i < g->num_ops; i++) {
        const ModelOp *op = &g->ops[i];
        if (!is_conv(op))
            continue;
        size_t per_image = conv_workspace(g, op, 1);
        size_t chunk = per_image ? cap / per_image : B;
        chunk = chunk < 1 ? 1 : chunk > B ? B : chunk;
        mc->chunk[i] = (int)chunk;
        if (per_image * chunk > work)
            work = per_image * chunk;
    }
    CHECK(cudaStreamCreateWithFlags(&mc->nn.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    for (int k = 0; k < 2; k++) {
        StepEvents *e = &mc->steps[k];
        cudaEvent_t *events[] = {&e->start, &e->forward_stop, &e->backward_start, &e->stop};
        for (size_t i = 0; i < sizeof events / sizeof events[0]; i++)
            CHECK(cudaEventCreate(events[i]), "cudaEventCreate");
    }
    cublasStatus_t st = cublasCreate(&mc->nn.blas);
    if (st != CUBLAS_STATUS_SUCCESS) {
        mc->nn.blas = NULL;   /* nothing for model_cuda_free to destroy */
        return imgset_fail("cublas: cublasCreate failed: %s", cublasGetStatusString(st));
    }
    if ((st = cublasSetStream(mc->nn.blas, mc->nn.stream)) != CUBLAS_STATUS_SUCCESS)
        return imgset_fail("cublas: cublasSetStream failed: %s", cublasGetStatusString(st));
    if (device_alloc(&mc->params, g->param_floats, "parameters") < 0 ||
        device_alloc(&mc->grads, g->param_floats, "gradients") < 0 ||
        device_alloc(&mc->velocity, g->param_floats, "momentum buffers") < 0 ||
        device_alloc(&mc->acts, 2 * g->act_floats * B, "activations") < 0 ||
        device_alloc(&mc->stats, g->stat_floats, "batch-norm statistics") < 0 ||
        device_alloc(&mc->aux, g->aux_floats * B, "max-pool argmax bytes") < 0 ||
        device_alloc(&mc->work, work, "im2col workspace") < 0 ||
        device_alloc(&mc->conv_tmp, g->conv_tmp_floats * B, "pre-pool outputs") < 0 ||
        device_alloc(&mc->loss_memory, B * (3 + (size_t)g->spec.classes), "the loss") < 0)
        return -1;
    mc->loss_rows = (double *)mc->loss_memory;   /* 2 floats each, cudaMalloc's alignment */
    mc->loss_probs = mc->loss_memory + 2 * B;
    mc->loss_labels = (int32_t *)(mc->loss_probs + B * g->spec.classes);
    if (!(mc->host_rows = (double *)malloc(B * sizeof(double))))
        return imgset_fail("out of memory");
    for (int a = 0; a < g->num_acts; a++) {
        mc->act[a] = mc->acts + g->acts[a].offset * B;
        mc->dact[a] = a > 0 ? mc->acts + (g->act_floats + g->acts[a].offset) * B : NULL;
    }
    /* on the model's stream (which does not wait for the legacy default stream), then waited
     * for, so that the first forward reads the uploaded weights */
    size_t bytes = g->param_floats * sizeof(float);
    cudaStream_t s = mc->nn.stream;
    CHECK(cudaMemcpyAsync(mc->params, params, bytes, cudaMemcpyHostToDevice, s),
          "uploading parameters");
    CHECK(cudaMemcpyAsync(mc->velocity, velocity, bytes, cudaMemcpyHostToDevice, s),
          "uploading momentum buffers");
    CHECK(cudaMemsetAsync(mc->grads, 0, bytes, s), "zeroing gradients");
    CHECK(cudaStreamSynchronize(s), "uploading the model");
    return 0;
}

ModelCuda *model_cuda_create(const ModelGraph *g, int max_batch, const float *params,
                             const float *velocity)
{
    ModelCuda *mc = (ModelCuda *)calloc(1, sizeof *mc);
    if (!mc)
        return imgset_fail("model: out of memory"), (ModelCuda *)NULL;
    mc->g = g;
    mc->max_batch = max_batch;
    if (setup(mc, params, velocity) < 0) {
        imgset_fail_prefix("model %s on the GPU: ", g->spec.arch);
        model_cuda_free(mc);
        return NULL;
    }
    return mc;
}

static const float *param_of(const ModelCuda *mc, int tensor)
{
    return tensor >= 0 ? mc->params + mc->g->tensors[tensor].offset : NULL;
}

static float *grad_of(const ModelCuda *mc, int tensor)
{
    return tensor >= 0 ? mc->grads + mc->g->tensors[tensor].offset : NULL;
}

static uint8_t *argmax_of(const ModelCuda *mc, const ModelOp *op)
{
    return (uint8_t *)(mc->aux + op->aux_offset * (size_t)mc->max_batch);
}

/* What the GPU code of one op sees: the whole batch of N images. */
typedef struct GpuCall {
    const ModelCuda *mc;
    const NnCuda *nn;
    const ModelOp *op;
    const ModelAct *a, *o;      /* its input and output activations */
    const float *x;             /* (N, a->size) */
    float *y;                   /* (N, o->size) */
    const float *w, *b;         /* its weight and bias, NULL when it has none */
    int N, training;
    const float *dy;            /* backward: (N, o->size) */
    float *dx;                  /* backward: (N, a->size), NULL for the network's input */
    float *dw, *db;             /* backward: parameter gradients, or NULL */
} GpuCall;

/* *d = the gradient of activation `which` for N images, zeroed first when this op is its
 * first writer; NULL for the network's input. */
static int input_grad(const ModelCuda *mc, int which, int zero, int N, float **d)
{
    *d = mc->dact[which];
    if (*d && zero)
        CHECK(cudaMemsetAsync(*d, 0, sizeof(float) * mc->g->acts[which].size * N,
                              mc->nn.stream), "zeroing an activation's gradient");
    return 0;
}

/* Elements of the op's input for the whole batch. */
static size_t input_count(const GpuCall *c)
{
    return (size_t)c->N * c->a->size;
}

static int conv_forward_gpu(const GpuCall *c)
{
    const ModelOp *op = c->op;
    return cuda_conv2d_forward(c->nn, c->y, c->x, c->w, c->b, c->mc->work,
                               c->mc->chunk[op - c->mc->g->ops], c->N, c->a->c, c->a->h, c->a->w,
                               c->o->c, op->kernel, op->kernel, op->stride, op->pad);
}

static int conv_backward_gpu(const GpuCall *c)
{
    const ModelOp *op = c->op;
    return cuda_conv2d_backward(c->nn, c->dx, c->dw, c->db, c->dy, c->x, c->w, c->mc->work,
                                c->mc->chunk[op - c->mc->g->ops], c->N, c->a->c, c->a->h,
                                c->a->w, c->o->c, op->kernel, op->kernel, op->stride, op->pad);
}

static int batchnorm_forward_gpu(const GpuCall *c)
{
    const ModelGraph *g = c->mc->g;
    const ModelOp *op = c->op;
    float *rm = c->mc->params + g->tensors[op->running_mean].offset;
    float *rv = c->mc->params + g->tensors[op->running_var].offset;
    if (!c->training)
        return cuda_batchnorm_forward_eval(c->nn, c->y, c->x, c->w, c->b, rm, rv, c->N, c->a->c,
                                           c->a->h * c->a->w, MODEL_BN_EPS);
    float *mean = c->mc->stats + op->stat_offset;
    return cuda_batchnorm_forward_train(c->nn, c->y, mean, mean + c->a->c, rm, rv, c->x, c->w,
                                        c->b, c->N, c->a->c, c->a->h * c->a->w,
                                        MODEL_BN_MOMENTUM, MODEL_BN_EPS);
}

static int batchnorm_backward_gpu(const GpuCall *c)
{
    const float *mean = c->mc->stats + c->op->stat_offset;
    return cuda_batchnorm_backward_train(c->nn, c->dx, c->dw, c->db, c->dy, c->x, c->w, mean,
                                         mean + c->a->c, c->N, c->a->c, c->a->h * c->a->w);
}

static int relu_forward_gpu(const GpuCall *c)
{
    return cuda_relu_forward(c->nn, c->y, c->x, input_count(c));
}

static int relu_backward_gpu(const GpuCall *c)
{
    return cuda_relu_backward(c->nn, c->dx, c->dy, c->y, input_count(c));
}

static int leaky_relu_forward_gpu(const GpuCall *c)
{
    return cuda_leaky_relu_forward(c->nn, c->y, c->x, input_count(c), c->op->slope);
}

static int leaky_relu_backward_gpu(const GpuCall *c)
{
    return cuda_leaky_relu_backward(c->nn, c->dx, c->dy, c->x, input_count(c), c->op->slope);
}

static int tanh_forward_gpu(const GpuCall *c)
{
    return cuda_tanh_forward(c->nn, c->y, c->x, input_count(c));
}

static int tanh_backward_gpu(const GpuCall *c)
{
    return cuda_tanh_backward(c->nn, c->dx, c->dy, c->y, input_count(c));
}

static int sigmoid_forward_gpu(const GpuCall *c)
{
    return cuda_sigmoid_forward(c->nn, c->y, c->x, input_count(c));
}

static int sigmoid_backward_gpu(const GpuCall *c)
{
    return cuda_sigmoid_backward(c->nn, c->dx, c->dy, c->y, input_count(c));
}

static int maxpool_forward_gpu(const GpuCall *c)
{
    return cuda_maxpool2d_forward(c->nn, c->y, c->x, c->N, c->a->c, c->a->h, c->a->w,
                                  c->op->kernel, c->op->stride);
}

static int maxpool_backward_gpu(const GpuCall *c)
{
    return cuda_maxpool2d_backward(c->nn, c->dx, c->dy, c->x, c->N, c->a->c, c->a->h, c->a->w,
                                   c->op->kernel, c->op->stride);
}

static int avgpool_forward_gpu(const GpuCall *c)
{
    return cuda_avgpool2d_forward(c->nn, c->y, c->x, c->N, c->a->c, c->a->h, c->a->w,
                                  c->op->kernel, c->op->stride);
}

static int avgpool_backward_gpu(const GpuCall *c)
{
    return cuda_avgpool2d_backward(c->nn, c->dx, c->dy, c->N, c->a->c, c->a->h, c->a->w,
                                   c->op->kernel, c->op->stride);
}

static int gap_forward_gpu(const GpuCall *c)
{
    return cuda_global_avgpool_forward(c->nn, c->y, c->x, c->N, c->a->c, c->a->h * c->a->w);
}

static int gap_backward_gpu(const GpuCall *c)
{
    return cuda_global_avgpool_backward(c->nn, c->dx, c->dy, c->N, c->a->c, c->a->h * c->a->w);
}

static int linear_forward_gpu(const GpuCall *c)
{
    return cuda_linear_forward(c->nn, c->y, c->x, c->w, c->b, c->N, (int)c->a->size, c->o->c);
}

static int linear_backward_gpu(const GpuCall *c)
{
    return cuda_linear_backward(c->nn, c->dx, c->dw, c->db, c->dy, c->x, c->w, c->N,
                                (int)c->a->size, c->o->c);
}

static int add_forward_gpu(const GpuCall *c)
{
    return cuda_add_forward(c->nn, c->y, c->x, c->mc->act[c->op->in2], input_count(c));
}

static int add_backward_gpu(const GpuCall *c)
{
    float *dx2;
    if (input_grad(c->mc, c->op->in2, c->op->zero_din2, c->N, &dx2) < 0)
        return -1;
    return cuda_add_backward(c->nn, c->dx, dx2, c->dy, input_count(c));
}

static int concat_forward_gpu(const GpuCall *c)
{
    return cuda_concat_forward(c->nn, c->y, c->x, c->mc->act[c->op->in2], c->N, c->a->c,
                               c->mc->g->acts[c->op->in2].c, c->a->h * c->a->w);
}

static int concat_backward_gpu(const GpuCall *c)
{
    float *dx2;
    if (input_grad(c->mc, c->op->in2, c->op->zero_din2, c->N, &dx2) < 0)
        return -1;
    return cuda_concat_backward(c->nn, c->dx, dx2, c->dy, c->N, c->a->c,
                                c->mc->g->acts[c->op->in2].c, c->a->h * c->a->w);
}

/* The whole batch's pre-pool output goes through conv_tmp; training keeps the argmax bytes. */
static int conv_relu_pool_forward_gpu(const GpuCall *c)
{
    const ModelOp *op = c->op;
    const ModelCuda *mc = c->mc;
    int ch = nn_out_size(c->a->h, op->kernel, op->stride, op->pad);
    int cw = nn_out_size(c->a->w, op->kernel, op->stride, op->pad);
    if (cuda_conv2d_forward(c->nn, mc->conv_tmp, c->x, c->w, c->b, mc->work,
                            mc->chunk[op - mc->g->ops], c->N, c->a->c, c->a->h, c->a->w, c->o->c,
                            op->kernel, op->kernel, op->stride, op->pad) < 0)
        return -1;
    return cuda_relu_maxpool2x2_forward(c->nn, c->y, c->training ? argmax_of(mc, op) : NULL,
                                        mc->conv_tmp, c->N, c->o->c, ch, cw);
}

static int conv_relu_pool_backward_gpu(const GpuCall *c)
{
    const ModelOp *op = c->op;
    const ModelCuda *mc = c->mc;
    int ch = nn_out_size(c->a->h, op->kernel, op->stride, op->pad);
    int cw = nn_out_size(c->a->w, op->kernel, op->stride, op->pad);
    float *dtmp = mc->conv_tmp;   /* the pre-pool gradient (N, OC, ch, cw) */
    CHECK(cudaMemsetAsync(dtmp, 0, sizeof(float) * (size_t)c->N * c->o->c * ch * cw,
                          c->nn->stream), "zeroing a pre-pool gradient");
    if (cuda_relu_maxpool2x2_backward(c->nn, dtmp, c->dy, c->y, argmax_of(mc, op), c->N, c->o->c,
                                      ch, cw) < 0)
        return -1;
    return cuda_conv2d_backward(c->nn, c->dx, c->dw, c->db, dtmp, c->x, c->w, mc->work,
                                mc->chunk[op - mc->g->ops], c->N, c->a->c, c->a->h, c->a->w,
                                c->o->c, op->kernel, op->kernel, op->stride, op->pad);
}

/* The GPU code of every op kind, made from graph.h's list (in its order, as the enum). */
static const struct GpuOp {
    int (*forward)(const GpuCall *c);
    int (*backward)(const GpuCall *c);
} gpu_ops[OP_COUNT] = {
#define GPU_OP(KIND, name) {name##_forward_gpu, name##_backward_gpu},
    MODEL_OPS(GPU_OP)
#undef GPU_OP
};

/* The call of op on the whole batch (and, backward, its gradients); -1 when zeroing an input
 * gradient failed. */
static int gpu_call(const ModelCuda *mc, const ModelOp *op, int N, int training, int backward,
                    GpuCall *c)
{
    const ModelGraph *g = mc->g;
    memset(c, 0, sizeof *c);
    c->mc = mc, c->nn = &mc->nn, c->op = op, c->N = N, c->training = training;
    c->a = &g->acts[op->in], c->o = &g->acts[op->out];
    c->x = mc->act[op->in], c->y = mc->act[op->out];
    c->w = param_of(mc, op->weight), c->b = param_of(mc, op->bias);
    if (!backward)
        return 0;
    c->dy = mc->dact[op->out];
    c->dw = grad_of(mc, op->weight), c->db = grad_of(mc, op->bias);
    return input_grad(mc, op->in, op->zero_din, N, &c->dx);
}

static int op_forward(const ModelCuda *mc, const ModelOp *op, int N, int training)
{
    GpuCall c;
    gpu_call(mc, op, N, training, 0, &c);
    return gpu_ops[op->kind].forward(&c);
}

static int op_backward(const ModelCuda *mc, const ModelOp *op, int N)
{
    GpuCall c;
    if (gpu_call(mc, op, N, 1, 1, &c) < 0)
        return -1;
    return gpu_ops[op->kind].backward(&c);
}

/* Add the time of finished step e to busy (waits for it; called when it is done). */
static int settle_step(ModelCuda *mc, StepEvents *e)
{
    if (!e->pending)
        return 0;
    float forward_ms = 0, backward_ms = 0;
    CHECK(cudaEventSynchronize(e->stop), "waiting for a training step");
    CHECK(cudaEventElapsedTime(&forward_ms, e->start, e->forward_stop), "timing a training step");
    CHECK(cudaEventElapsedTime(&backward_ms, e->backward_start, e->stop),
          "timing a training step");
    mc->busy += (forward_ms + backward_ms) / 1000.0;
    e->pending = 0;
    return 0;
}

/* Keep the failure of a call whose caller cannot be told (model_zero_grad, model_sgd_step). */
static void keep_error(ModelCuda *mc)
{
    if (!mc->error[0])
        snprintf(mc->error, sizeof mc->error, "%s", imgset_error());
}

/* -1 with the kept failure, if there is one. */
static int kept_error(const ModelCuda *mc)
{
    return mc->error[0] ? imgset_fail("%s", mc->error) : 0;
}

int model_cuda_forward(ModelCuda *mc, const float *x_device, int N, int training,
                       float *logits_host)
{
    const ModelGraph *g = mc->g;
    cudaStream_t s = mc->nn.stream;
    StepEvents *e = &mc->steps[mc->current];
    if (kept_error(mc) < 0 || settle_step(mc, e) < 0)   /* two steps back: long done */
        return -1;
    e->forward = e->backward = 0;
    if (training)
        CHECK(cudaEventRecord(e->start, s), "cudaEventRecord");
    /* the input is copied so that the loader may reuse its batch slot at once */
    CHECK(cudaMemcpyAsync(mc->act[0], x_device, sizeof(float) * g->acts[0].size * N,
                          cudaMemcpyDeviceToDevice, s), "copying the input batch");
    for (int i = 0; i < g->num_ops; i++)
        if (op_forward(mc, &g->ops[i], N, training) < 0)
            return -1;
    if (training) {
        CHECK(cudaEventRecord(e->forward_stop, s), "cudaEventRecord");
        e->forward = 1;
    }
    CHECK(cudaMemcpyAsync(logits_host, mc->act[g->output],
                          sizeof(float) * (size_t)N * g->spec.classes, cudaMemcpyDeviceToHost, s),
          "copying the logits to the host");
    CHECK(cudaStreamSynchronize(s), "the forward pass");
    if (settle_step(mc, &mc->steps[mc->current ^ 1]) < 0)   /* the last step: done by now */
        return -1;
    mc->batch = N;
    mc->training = training;
    return 0;
}

/* The loss and backward of the step in progress are GPU time from here on. */
static int start_backward_time(ModelCuda *mc)
{
    StepEvents *e = &mc->steps[mc->current];
    if (e->forward && !e->backward) {
        CHECK(cudaEventRecord(e->backward_start, mc->nn.stream), "cudaEventRecord");
        e->backward = 1;
    }
    return 0;
}

int model_cuda_loss(ModelCuda *mc, int loss, const int32_t *labels_host, int N, float *value)
{
    const ModelGraph *g = mc->g;
    int K = g->spec.classes;
    cudaStream_t s = mc->nn.stream;
    if (kept_error(mc) < 0)
        return -1;
    if (N != mc->batch)
        return imgset_fail("model: a loss of %d labels for a forward of %d images", N, mc->batch);
    if (mc->training && start_backward_time(mc) < 0)
        return -1;
    CHECK(cudaMemcpyAsync(mc->loss_labels, labels_host, sizeof(int32_t) * N,
                          cudaMemcpyHostToDevice, s), "copying the labels to the GPU");
    if (cuda_class_loss(&mc->nn, mc->dact[g->output], mc->loss_rows, mc->loss_probs,
                        mc->act[g->output], mc->loss_labels, N, K, loss,
                        1.0f / (float)nn_class_loss_count(loss, N, K)) < 0)
        return -1;
    CHECK(cudaMemcpyAsync(mc->host_rows, mc->loss_rows, sizeof(double) * N,
                          cudaMemcpyDeviceToHost, s), "copying the loss to the host");
    CHECK(cudaStreamSynchronize(s), "the loss");
    double total = 0.0;   /* in row order, as class_loss_forward on the CPU */
    for (int n = 0; n < N; n++)
        total += mc->host_rows[n];
    *value = (float)(total / nn_class_loss_count(loss, N, K));
    return 0;
}

int model_cuda_backward(ModelCuda *mc, int N)
{
    const ModelGraph *g = mc->g;
    if (kept_error(mc) < 0)
        return -1;
    if (!mc->training || N != mc->batch)
        return imgset_fail("model: backward needs a training forward of %d images first", N);
    if (start_backward_time(mc) < 0)
        return -1;
    for (int i = g->num_ops - 1; i >= 0; i--)
        if (op_backward(mc, &g->ops[i], N) < 0)
            return -1;
    return 0;
}

int model_cuda_zero_grad(ModelCuda *mc)
{
    cudaError_t err =
        cudaMemsetAsync(mc->grads, 0, sizeof(float) * mc->g->param_floats, mc->nn.stream);
    if (err == cudaSuccess)
        return 0;
    cuda_failed("zeroing gradients", err);
    keep_error(mc);
    return -1;
}

int model_cuda_sgd_step(ModelCuda *mc, float lr, const SgdConfig *config)
{
    const ModelGraph *g = mc->g;
    for (int i = 0; i < g->num_tensors; i++) {
        const ModelTensor *t = &g->tensors[i];
        if (t->trainable &&
            cuda_sgd_step(&mc->nn, mc->params + t->offset, mc->velocity + t->offset,
                          mc->grads + t->offset, t->count, lr, config->momentum,
                          config->weight_decay, config->nesterov) < 0) {
            keep_error(mc);
            return -1;
        }
    }
    StepEvents *e = &mc->steps[mc->current];
    if (e->forward && e->backward) {
        cudaError_t err = cudaEventRecord(e->stop, mc->nn.stream);
        if (err != cudaSuccess) {
            cuda_failed("cudaEventRecord", err);
            keep_error(mc);
            return -1;
        }
        e->pending = 1;
        mc->current ^= 1;   /* the next step times itself with the other set */
    }
    e->forward = e->backward = 0;
    return 0;
}

int model_cuda_download(ModelCuda *mc, float *params, float *grads, float *velocity)
{
    if (kept_error(mc) < 0)   /* a failed step: never save half-updated weights */
        return -1;
    size_t bytes = sizeof(float) * mc->g->param_floats;
    cudaStream_t s = mc->nn.stream;
    if (params)
        CHECK(cudaMemcpyAsync(params, mc->params, bytes, cudaMemcpyDeviceToHost, s),
              "copying parameters to the host");
    if (grads)
        CHECK(cudaMemcpyAsync(grads, mc->grads, bytes, cudaMemcpyDeviceToHost, s),
              "copying gradients to the host");
    if (velocity)
        CHECK(cudaMemcpyAsync(velocity, mc->velocity, bytes, cudaMemcpyDeviceToHost, s),
              "copying momentum buffers to the host");
    CHECK(cudaStreamSynchronize(s), "copying the model to the host");
    return 0;
}

double model_cuda_busy_seconds(ModelCuda *mc)
{
    settle_step(mc, &mc->steps[0]);
    settle_step(mc, &mc->steps[1]);
    return mc->busy;
}
