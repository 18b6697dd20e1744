/* model.c — a model for training: its memory, and forward / backward / SGD run as passes of
 * the nn core (pass.h) on a small thread pool, or handed to the GPU executor. */
#include "model.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "error.h"
#include "gpu.h"
#include "model_cuda.h"
#include "nn.h"
#include "rng.h"

#ifdef IMGSET_HAVE_OPENBLAS
#include <cblas.h>
#endif

typedef struct WorkerStart {
    struct ModelRuntime *rt;
    int t;
} WorkerStart;

struct ModelRuntime {
    int threads;
    int started;                   /* worker threads running (threads - 1 when all went well) */
    pthread_t workers[MODEL_MAX_THREADS];
    pthread_mutex_t mutex;
    pthread_cond_t wake, done;
    uint64_t generation;           /* bumped for every phase */
    int pending;                   /* workers still busy with the current phase */
    int quit;
    void (*job)(void *arg, int t);
    void *arg;
    float *memory;                 /* one allocation: per-thread scratch, then grads for t >= 1 */
    float *scratch[MODEL_MAX_THREADS];
    float *grads[MODEL_MAX_THREADS];
    WorkerStart starts[MODEL_MAX_THREADS];   /* each worker's argument */
};

static void *worker_main(void *arg)
{
    WorkerStart *start = arg;
    ModelRuntime *rt = start->rt;
    int t = start->t;
    uint64_t seen = 0;
    pthread_mutex_lock(&rt->mutex);
    for (;;) {
        while (!rt->quit && rt->generation == seen)
            pthread_cond_wait(&rt->wake, &rt->mutex);
        if (rt->quit)
            break;
        seen = rt->generation;
        pthread_mutex_unlock(&rt->mutex);
        rt->job(rt->arg, t);
        pthread_mutex_lock(&rt->mutex);
        if (--rt->pending == 0)
            pthread_cond_signal(&rt->done);
    }
    pthread_mutex_unlock(&rt->mutex);
    return NULL;
}

/* Run job(arg, t) for t = 0..threads-1 (t = 0 on the calling thread) and wait for all: the
 * PassRunner of the runtime ctx. */
static void run_phase(void *ctx, int threads, void (*job)(void *, int), void *arg)
{
    ModelRuntime *rt = ctx;
    if (!rt || threads <= 1) {
        job(arg, 0);
        return;
    }
    pthread_mutex_lock(&rt->mutex);
    rt->job = job, rt->arg = arg;
    rt->pending = threads - 1;
    rt->generation++;
    pthread_cond_broadcast(&rt->wake);
    pthread_mutex_unlock(&rt->mutex);
    job(arg, 0);
    pthread_mutex_lock(&rt->mutex);
    while (rt->pending > 0)
        pthread_cond_wait(&rt->done, &rt->mutex);
    pthread_mutex_unlock(&rt->mutex);
}

static void runtime_free(ModelRuntime *rt)
{
    if (!rt)
        return;
    pthread_mutex_lock(&rt->mutex);
    rt->quit = 1;
    pthread_cond_broadcast(&rt->wake);
    pthread_mutex_unlock(&rt->mutex);
    for (int i = 0; i < rt->started; i++)
        pthread_join(rt->workers[i], NULL);
    pthread_mutex_destroy(&rt->mutex);
    pthread_cond_destroy(&rt->wake);
    pthread_cond_destroy(&rt->done);
    free(rt->memory);
    free(rt);
}

/* A runtime with `threads` threads and their buffers for graph g; NULL with imgset_fail(). */
static ModelRuntime *runtime_create(const ModelGraph *g, int threads, float *grads0)
{
    ModelRuntime *rt = calloc(1, sizeof *rt);
    if (!rt)
        return imgset_fail("model: out of memory"), NULL;
    rt->threads = threads;
    pthread_mutex_init(&rt->mutex, NULL);
    pthread_cond_init(&rt->wake, NULL);
    pthread_cond_init(&rt->done, NULL);
    size_t scratch = pass_scratch_floats(g);
    size_t per_thread, total;
    if (!scratch || size_mul(scratch, (size_t)threads, &per_thread) ||
        size_mul(g->param_floats, (size_t)threads - 1, &total) ||
        size_add(total, per_thread, &total) || total > SIZE_MAX / sizeof(float) ||
        !(rt->memory = malloc(total * sizeof(float) + 1))) {
        runtime_free(rt);
        return imgset_fail("model %s: cannot allocate buffers for %d threads", g->spec.arch,
                           threads), NULL;
    }
    for (int t = 0; t < threads; t++) {
        rt->scratch[t] = rt->memory + (size_t)t * scratch;
        rt->grads[t] = t == 0 ? grads0
                              : rt->memory + per_thread + (size_t)(t - 1) * g->param_floats;
    }
    for (int t = 1; t < threads; t++) {
        rt->starts[t] = (WorkerStart){rt, t};
        if (pthread_create(&rt->workers[rt->started], NULL, worker_main, &rt->starts[t])) {
            runtime_free(rt);
            return imgset_fail("model: cannot start thread %d of %d", t + 1, threads), NULL;
        }
        rt->started++;
    }
    return rt;
}

/* Floats of Model.acts: activations and gradients for max_batch, BN statistics, the softmax
 * probabilities of the loss, then the fused conv blocks' argmax bytes. 0 on overflow. */
static size_t acts_floats(const ModelGraph *g, int max_batch)
{
    size_t per, total, probs;
    if (size_mul(g->act_floats, 2, &per) || size_add(per, g->aux_floats, &per) ||
        size_mul(per, (size_t)max_batch, &total) ||
        size_mul((size_t)g->spec.classes, (size_t)max_batch, &probs) ||
        size_add(total, probs, &total) || size_add(total, g->stat_floats, &total) ||
        total > SIZE_MAX / sizeof(float))
        return 0;
    return total;
}

static float *probs_of(const Model *m)
{
    return m->acts + 2 * m->graph.act_floats * m->max_batch + m->graph.stat_floats;
}

/* The pass over m's memory for its last forward (N images). */
static void model_pass(const Model *m, Pass *p, int N, int training)
{
    memset(p, 0, sizeof *p);
    p->g = &m->graph;
    p->params = m->params;
    p->N = N, p->threads = m->threads, p->training = training, p->capacity = m->max_batch;
    pass_point_acts(p, m->acts, m->max_batch, 1);
    p->stats = m->acts + 2 * m->graph.act_floats * m->max_batch;
    p->aux = training ? probs_of(m) + (size_t)m->graph.spec.classes * m->max_batch : NULL;
    for (int t = 0; t < m->threads; t++) {
        p->scratch[t] = m->runtime->scratch[t];
        p->grads[t] = m->runtime->grads[t];
    }
}

/* Initialise every tensor as PyTorch's defaults, each from its own stream of seed. */
static void init_params(Model *m)
{
    const ModelGraph *g = &m->graph;
    for (int i = 0; i < g->num_ops; i++) {
        const ModelOp *op = &g->ops[i];
        if (op->kind == OP_BATCHNORM) {
            const int ones[2] = {op->weight, op->running_var};
            const int zeros[2] = {op->bias, op->running_mean};
            for (int k = 0; k < 2; k++) {
                const ModelTensor *t1 = &g->tensors[ones[k]], *t0 = &g->tensors[zeros[k]];
                for (size_t j = 0; j < t1->count; j++)
                    m->params[t1->offset + j] = 1.0f;
                memset(m->params + t0->offset, 0, sizeof(float) * t0->count);
            }
        } else if (op->kind == OP_CONV || op->kind == OP_LINEAR ||
                   op->kind == OP_CONV_RELU_POOL) {
            const ModelTensor *w = &g->tensors[op->weight];
            /* kaiming_uniform_(a=sqrt(5)) and the bias rule both give 1/sqrt(fan_in) */
            double fan_in = (double)(w->count / (size_t)w->shape[0]);
            float bound = (float)(1.0 / sqrt(fan_in));
            const int ids[2] = {op->weight, op->bias};
            for (int k = 0; k < 2; k++) {
                if (ids[k] < 0)
                    continue;
                const ModelTensor *t = &g->tensors[ids[k]];
                Rng rng = rng_make(m->seed, (uint64_t)ids[k]);
                for (size_t j = 0; j < t->count; j++)
                    m->params[t->offset + j] = (2.0f * rng_uniform(&rng) - 1.0f) * bound;
            }
        }
    }
}

Model *model_create(const char *arch, int C, int H, int W, int K, int max_batch, uint64_t seed)
{
    ModelSpec spec;
    model_spec_default(&spec, arch, C, H, W, K);
    return model_create_spec(&spec, max_batch, seed);
}

Model *model_create_spec(const ModelSpec *spec, int max_batch, uint64_t seed)
{
    const char *arch = spec->arch;
    Model *m = calloc(1, sizeof *m);
    if (!m)
        return imgset_fail("model: out of memory"), NULL;
    if (model_graph_build(&m->graph, spec) < 0) {
        free(m);
        return NULL;
    }
    const ModelGraph *g = &m->graph;
    size_t acts = max_batch >= 1 ? acts_floats(g, max_batch) : 0;
    if (!acts) {
        free(m);
        return imgset_fail("model %s: bad batch size %d for input %dx%dx%d", arch, max_batch,
                           spec->channels, spec->height, spec->width), NULL;
    }
    m->max_batch = max_batch;
    m->seed = seed;
    m->threads = 1;
    m->params = malloc(sizeof(float) * g->param_floats);
    m->grads = calloc(g->param_floats, sizeof(float));
    m->velocity = calloc(g->param_floats, sizeof(float));
    m->acts = malloc(sizeof(float) * acts);
    if (!m->params || !m->grads || !m->velocity || !m->acts ||
        !(m->runtime = runtime_create(g, 1, m->grads))) {
        model_free(m);
        return imgset_fail("model %s: cannot allocate %zu MB for batch %d", arch,
                           (acts + 3 * g->param_floats) * sizeof(float) >> 20, max_batch), NULL;
    }
    init_params(m);
#ifdef IMGSET_HAVE_OPENBLAS
    openblas_set_num_threads(1);
#endif
    return m;
}

int model_set_threads(Model *m, int threads)
{
    if (threads < 1 || threads > MODEL_MAX_THREADS)
        return imgset_fail("model: bad thread count %d (1..%d)", threads, MODEL_MAX_THREADS);
    if (threads == m->threads)
        return 0;
    ModelRuntime *rt = runtime_create(&m->graph, threads, m->grads);
    if (!rt)
        return -1;
    runtime_free(m->runtime);
    m->runtime = rt;
    m->threads = threads;
#ifdef IMGSET_HAVE_OPENBLAS
    openblas_set_num_threads(1);   /* the model splits the work itself */
#endif
    return 0;
}

const float *model_forward(Model *m, const float *x, int N, int training)
{
    if (N < 1 || N > m->max_batch)
        return imgset_fail("model: batch of %d images outside 1..%d", N, m->max_batch), NULL;
#ifdef IMGSET_HAVE_CUDA
    if (m->cuda) {
        float *logits = m->acts + m->graph.acts[m->graph.output].offset * m->max_batch;
        if (model_cuda_forward(m->cuda, x, N, training, logits) < 0)
            return NULL;
        m->batch = N;
        m->training = training;
        return logits;
    }
#endif
    Pass p;
    model_pass(m, &p, N, training);
    if (training)
        memcpy(p.act[0], x, sizeof(float) * m->graph.acts[0].size * N);
    else
        p.act[0] = (float *)x;   /* read only */
    pass_forward(&p, run_phase, m->runtime);
    m->batch = N;
    m->training = training;
    return p.act[m->graph.output];
}

/* The logits' gradient (N, K) of the last forward, set by model_loss. */
static float *model_dlogits(Model *m)
{
    return m->acts + (m->graph.act_floats + m->graph.acts[m->graph.output].offset) * m->max_batch;
}

int model_loss(Model *m, const int32_t *labels, float *loss)
{
    int N = m->batch, K = m->graph.spec.classes;
    if (N < 1)
        return imgset_fail("model: loss before any forward");
    for (int n = 0; n < N; n++)
        if (labels[n] < 0 || labels[n] >= K)
            return imgset_fail("model: label %d of image %d outside 0..%d", labels[n], n, K - 1);
    int kind = m->graph.spec.loss;
#ifdef IMGSET_HAVE_CUDA
    if (m->cuda)
        return model_cuda_loss(m->cuda, kind, labels, N, loss);
#endif
    const float *logits = m->acts + m->graph.acts[m->graph.output].offset * m->max_batch;
    float *dlogits = model_dlogits(m), *probs = probs_of(m);
    *loss = class_loss_forward(kind, probs, logits, labels, N, K);
    memset(dlogits, 0, sizeof(float) * (size_t)N * K);
    class_loss_backward(kind, dlogits, probs, labels, N, K, 1.0f);
    return 0;
}

void model_zero_grad(Model *m)
{
#ifdef IMGSET_HAVE_CUDA
    if (m->cuda) {
        model_cuda_zero_grad(m->cuda);
        return;
    }
#endif
    memset(m->grads, 0, sizeof(float) * m->graph.param_floats);
}

/* Zero thread t's private gradients (t >= 1; thread 0 adds straight into m->grads). */
static void zero_thread_grads(void *arg, int t)
{
    const Pass *p = arg;
    if (t > 0)
        memset(p->grads[t], 0, sizeof(float) * p->g->param_floats);
}

/* Add the other threads' gradients into thread 0's, thread t taking its share of the floats,
 * always in thread order so the sum is the same on every run. */
static void reduce_grads(void *arg, int t)
{
    const Pass *p = arg;
    int b, e;
    pass_share((int)((p->g->param_floats + 15) / 16), t, p->threads, &b, &e);
    size_t begin = (size_t)b * 16, end = (size_t)e * 16;
    if (end > p->g->param_floats)
        end = p->g->param_floats;
    for (int s = 1; s < p->threads; s++)
        for (size_t i = begin; i < end; i++)
            p->grads[0][i] += p->grads[s][i];
}

int model_backward(Model *m)
{
    if (m->batch < 1 || !m->training)
        return imgset_fail("model: backward needs a training forward first");
#ifdef IMGSET_HAVE_CUDA
    if (m->cuda)
        return model_cuda_backward(m->cuda, m->batch);
#endif
    Pass p;
    model_pass(m, &p, m->batch, 1);
    ModelRuntime *rt = m->runtime;
    run_phase(rt, p.threads, zero_thread_grads, &p);
    pass_backward(&p, run_phase, rt);
    run_phase(rt, p.threads, reduce_grads, &p);
    return 0;
}

typedef struct StepArgs {
    Model *m;
    float lr;
    const SgdConfig *config;
} StepArgs;

/* Thread t's share of every trainable tensor. */
static void sgd_phase(void *arg, int t)
{
    const StepArgs *s = arg;
    const ModelGraph *g = &s->m->graph;
    for (int i = 0; i < g->num_tensors; i++) {
        const ModelTensor *tensor = &g->tensors[i];
        if (!tensor->trainable)
            continue;
        int b, e;
        pass_share((int)tensor->count, t, s->m->threads, &b, &e);
        size_t o = tensor->offset + (size_t)b;
        sgd_step(s->m->params + o, s->m->velocity + o, s->m->grads + o, (size_t)(e - b), s->lr,
                 s->config);
    }
}

void model_sgd_step(Model *m, float lr, const SgdConfig *config)
{
#ifdef IMGSET_HAVE_CUDA
    if (m->cuda) {
        model_cuda_sgd_step(m->cuda, lr, config);
        m->step++;
        return;
    }
#endif
    StepArgs s = {m, lr, config};
    run_phase(m->runtime, m->threads, sgd_phase, &s);
    m->step++;
}

int model_use_device(Model *m, int device)
{
    if (device != MODEL_CPU && device != MODEL_CUDA)
        return imgset_fail("model: bad device number %d", device);
    if (device == m->device)
        return 0;
#ifdef IMGSET_HAVE_CUDA
    if (device == MODEL_CUDA) {
        if (gpu_require_device("model") < 0 ||
            !(m->cuda = model_cuda_create(&m->graph, m->max_batch, m->params, m->velocity)))
            return -1;
    } else {
        if (model_sync_host(m) < 0)
            return -1;
        model_cuda_free(m->cuda);
        m->cuda = NULL;
    }
    m->device = device;
    m->batch = 0;   /* the last forward's activations stay where they were computed */
    return 0;
#else
    return imgset_fail("model: no CUDA device (this build has no CUDA: nvcc was not found, or "
                       "NO_CUDA=1)");
#endif
}

int model_sync_host(Model *m)
{
#ifdef IMGSET_HAVE_CUDA
    if (m->cuda)
        return model_cuda_download(m->cuda, m->params, m->grads, m->velocity);
#endif
    return 0;
}

double model_device_seconds(Model *m)
{
#ifdef IMGSET_HAVE_CUDA
    if (m->cuda)
        return model_cuda_busy_seconds(m->cuda);
#endif
    return 0;
}

size_t model_num_parameters(const Model *m)
{
    return m->graph.trainable_floats;
}

void model_free(Model *m)
{
    if (!m)
        return;
#ifdef IMGSET_HAVE_CUDA
    model_cuda_free(m->cuda);
#endif
    runtime_free(m->runtime);
    free(m->params);
    free(m->grads);
    free(m->velocity);
    free(m->acts);
    free(m);
}

/* OpenBLAS's CPU kernel. */

const char *model_blas_core(void)
{
#ifdef IMGSET_HAVE_OPENBLAS
    return openblas_get_corename();
#else
    return "none";
#endif
}

/* 1 when OpenBLAS fell back to a kernel older than what this CPU can run. */
static int blas_core_is_fallback(const char *core)
{
    static const char *const old[] = {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem",
                                      "Atom", "Sandybridge"};
    for (size_t i = 0; core && i < sizeof old / sizeof old[0]; i++)
        if (strcmp(core, old[i]) == 0)
            return 1;
    return 0;
}

int model_blas_reexec(char **argv)
{
#if defined(IMGSET_HAVE_OPENBLAS) && defined(__x86_64__)
    if (getenv("OPENBLAS_CORETYPE") || !blas_core_is_fallback(openblas_get_corename()))
        return 0;
    const char *better = __builtin_cpu_supports("avx512f") ? "SkylakeX"
                       : __builtin_cpu_supports("avx2") ? "Haswell" : NULL;
    if (!better)
        return 0;
    setenv("OPENBLAS_CORETYPE", better, 1);   /* read by OpenBLAS when the new image loads */
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE");
    return imgset_fail("cannot re-execute with OPENBLAS_CORETYPE=%s: %m", better);
#else
    (void)argv;
    return 0;
#endif
}
