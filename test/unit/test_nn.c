/* test_nn.c — the nn core: every layer's backward against central finite differences, forward
 * values against direct formulas, losses, SGD, learning-rate schedules and metrics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "nn.h"
#include "optim.h"
#include "rng.h"
#include "tap.h"

/*
 * Finite differences: the objective is L = sum_i out_i * r_i for a fixed random r, so
 * dout = r. Each input element x is perturbed by +-h and dL/dx ~ (L(x+h) - L(x-h)) / 2h,
 * with L summed in double from the float32 forward. An analytic gradient g passes when
 * |numeric - g| <= FD_ATOL + FD_RTOL * |g| for every checked element (up to FD_MAX_CHECKS
 * elements per tensor, spread evenly). Inputs are kept away from kinks (ReLU at 0, max-pool
 * ties, |x| at 0) by more than h.
 */
#define FD_ATOL 5e-4
#define FD_RTOL 5e-3
#define FD_MAX_CHECKS 60

typedef double (*ObjectiveFn)(void *ctx);

static Rng test_rng;

static void fill_uniform(float *x, size_t n, float lo, float hi)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * rng_uniform(&test_rng);
}

/* Values at least `gap` apart in a random order, centred on 0: no ties, no kinks near 0. */
static void fill_distinct(float *x, size_t n, float gap)
{
    for (size_t i = 0; i < n; i++)
        x[i] = ((float)i - (float)n / 2.0f + 0.5f) * gap;
    for (size_t i = n; i > 1; i--) {
        size_t j = rng_below(&test_rng, i);
        float t = x[i - 1];
        x[i - 1] = x[j];
        x[j] = t;
    }
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

static float *zeros(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p)
        abort();
    return p;
}

/* Compare the analytic gradient of x (n) with central differences of objective; one ok(). */
static void check_grad(const char *what, float *x, size_t n, const float *analytic,
                       ObjectiveFn objective, void *ctx, float h)
{
    size_t step = n > FD_MAX_CHECKS ? n / FD_MAX_CHECKS : 1;
    double worst = 0.0;
    size_t worst_at = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i += step) {
        float saved = x[i];
        x[i] = saved + h;
        double up = objective(ctx);
        x[i] = saved - h;
        double down = objective(ctx);
        x[i] = saved;
        double numeric = (up - down) / (2.0 * (double)h);
        double err = fabs(numeric - analytic[i]);
        double excess = err - (FD_ATOL + FD_RTOL * fabs(analytic[i]));
        if (excess > 0)
            bad++;
        if (err > worst) {
            worst = err;
            worst_at = i;
        }
    }
    ok(!bad, "%s: backward matches finite differences (%d bad; max |err| %.2g at %zu)", what,
       bad, worst, worst_at);
}

/* ---- conv2d ------------------------------------------------------------------------- */

typedef struct ConvCase {
    int N, C, H, W, OC, K, stride, pad, has_bias;
    float *x, *w, *b, *y, *r, *col;
    float *dx, *dw, *db;
} ConvCase;

static double conv_objective(void *p)
{
    ConvCase *c = p;
    conv2d_forward(c->y, c->x, c->w, c->has_bias ? c->b : NULL, c->col, c->N, c->C, c->H, c->W,
                   c->OC, c->K, c->K, c->stride, c->pad);
    int OH = nn_out_size(c->H, c->K, c->stride, c->pad);
    int OW = nn_out_size(c->W, c->K, c->stride, c->pad);
    return dot(c->y, c->r, (size_t)c->N * c->OC * OH * OW);
}

/* Direct convolution for the forward check. */
static float conv_direct(const ConvCase *c, int n, int oc, int oh, int ow)
{
    double s = c->has_bias ? c->b[oc] : 0.0;
    for (int ch = 0; ch < c->C; ch++)
        for (int kh = 0; kh < c->K; kh++)
            for (int kw = 0; kw < c->K; kw++) {
                int ih = oh * c->stride - c->pad + kh, iw = ow * c->stride - c->pad + kw;
                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W)
                    continue;
                s += (double)c->x[((size_t)(n * c->C + ch) * c->H + ih) * c->W + iw] *
                     c->w[((size_t)(oc * c->C + ch) * c->K + kh) * c->K + kw];
            }
    return (float)s;
}

static void test_conv(int N, int C, int H, int W, int OC, int K, int stride, int pad,
                      int has_bias)
{
    ConvCase c = {.N = N, .C = C, .H = H, .W = W, .OC = OC, .K = K, .stride = stride,
                  .pad = pad, .has_bias = has_bias};
    int OH = nn_out_size(H, K, stride, pad), OW = nn_out_size(W, K, stride, pad);
    size_t nx = (size_t)N * C * H * W, nw = (size_t)OC * C * K * K, ny = (size_t)N * OC * OH * OW;
    c.x = zeros(nx), c.w = zeros(nw), c.b = zeros(OC), c.y = zeros(ny), c.r = zeros(ny);
    c.col = zeros(conv2d_scratch_floats(C, H, W, OC, K, K, stride, pad));
    c.dx = zeros(nx), c.dw = zeros(nw), c.db = zeros(OC);
    fill_uniform(c.x, nx, -1, 1);
    fill_uniform(c.w, nw, -0.5f, 0.5f);
    fill_uniform(c.b, OC, -0.5f, 0.5f);
    fill_uniform(c.r, ny, -1, 1);
    char what[128];
    snprintf(what, sizeof what, "conv2d N%d C%d %dx%d OC%d k%d s%d p%d%s", N, C, H, W, OC, K,
             stride, pad, has_bias ? " bias" : "");

    conv_objective(&c);
    double worst = 0.0;
    for (int n = 0; n < N; n++)
        for (int oc = 0; oc < OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    float want = conv_direct(&c, n, oc, oh, ow);
                    float got = c.y[((size_t)(n * OC + oc) * OH + oh) * OW + ow];
                    worst = fmax(worst, fabs(want - got));
                }
    ok(worst < 1e-5, "%s: forward equals direct convolution (max |err| %.2g)", what, worst);

    conv2d_backward(c.dx, c.dw, has_bias ? c.db : NULL, c.col, c.r, c.x, c.w, N, C, H, W, OC, K,
                    K, stride, pad);
    char sub[160];
    snprintf(sub, sizeof sub, "%s dinp", what);
    check_grad(sub, c.x, nx, c.dx, conv_objective, &c, 1e-2f);
    snprintf(sub, sizeof sub, "%s dweight", what);
    check_grad(sub, c.w, nw, c.dw, conv_objective, &c, 1e-2f);
    if (has_bias) {
        snprintf(sub, sizeof sub, "%s dbias", what);
        check_grad(sub, c.b, OC, c.db, conv_objective, &c, 1e-2f);
    }
    /* gradients accumulate: a second backward doubles them */
    float *dw2 = zeros(nw), *dx2 = zeros(nx);
    memcpy(dw2, c.dw, nw * sizeof(float));
    memcpy(dx2, c.dx, nx * sizeof(float));
    conv2d_backward(dx2, dw2, NULL, c.col, c.r, c.x, c.w, N, C, H, W, OC, K, K, stride, pad);
    double dev = 0.0;
    for (size_t i = 0; i < nw; i++)
        dev = fmax(dev, fabs(dw2[i] - 2.0f * c.dw[i]));
    for (size_t i = 0; i < nx; i++)
        dev = fmax(dev, fabs(dx2[i] - 2.0f * c.dx[i]));
    ok(dev < 1e-4, "%s: backward accumulates into dweight and dinp (+=)", what);
    free(dw2);
    free(dx2);
    free(c.x), free(c.w), free(c.b), free(c.y), free(c.r), free(c.col);
    free(c.dx), free(c.dw), free(c.db);
}

/* ---- pooling ------------------------------------------------------------------------ */

typedef struct PoolCase {
    int N, C, H, W, k, s, is_max;
    float *x, *y, *r, *dx;
} PoolCase;

static double pool_objective(void *p)
{
    PoolCase *c = p;
    if (c->is_max)
        maxpool2d_forward(c->y, c->x, c->N, c->C, c->H, c->W, c->k, c->s);
    else
        avgpool2d_forward(c->y, c->x, c->N, c->C, c->H, c->W, c->k, c->s);
    int OH = nn_out_size(c->H, c->k, c->s, 0), OW = nn_out_size(c->W, c->k, c->s, 0);
    return dot(c->y, c->r, (size_t)c->N * c->C * OH * OW);
}

static void test_pool(int is_max, int N, int C, int H, int W, int k, int s)
{
    PoolCase c = {.N = N, .C = C, .H = H, .W = W, .k = k, .s = s, .is_max = is_max};
    int OH = nn_out_size(H, k, s, 0), OW = nn_out_size(W, k, s, 0);
    size_t nx = (size_t)N * C * H * W, ny = (size_t)N * C * OH * OW;
    c.x = zeros(nx), c.y = zeros(ny), c.r = zeros(ny), c.dx = zeros(nx);
    fill_distinct(c.x, nx, 0.01f);
    fill_uniform(c.r, ny, -1, 1);
    pool_objective(&c);
    /* forward against the definition */
    double worst = 0.0;
    for (int p = 0; p < N * C; p++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                double m = is_max ? -INFINITY : 0.0;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) {
                        double v = c.x[(size_t)p * H * W + (size_t)(oh * s + i) * W + ow * s + j];
                        m = is_max ? fmax(m, v) : m + v / (k * k);
                    }
                worst = fmax(worst, fabs(m - c.y[((size_t)p * OH + oh) * OW + ow]));
            }
    char what[96];
    snprintf(what, sizeof what, "%s N%d C%d %dx%d k%d s%d", is_max ? "maxpool" : "avgpool", N, C,
             H, W, k, s);
    ok(worst < 1e-6, "%s: forward matches the definition", what);
    if (is_max)
        maxpool2d_backward(c.dx, c.r, c.x, N, C, H, W, k, s);
    else
        avgpool2d_backward(c.dx, c.r, N, C, H, W, k, s);
    /* piecewise linear: a small h has no curvature error */
    check_grad(what, c.x, nx, c.dx, pool_objective, &c, 1e-3f);
    free(c.x), free(c.y), free(c.r), free(c.dx);
}

/* relu_maxpool2x2 against relu_forward + maxpool2d_forward, and its backward by finite
 * differences (values kept apart so no window has a tie or a kink within h). */
typedef struct ReluPoolCase {
    int N, C, H, W;
    float *x, *y, *r;
    uint8_t *argmax;
} ReluPoolCase;

static double relu_pool_objective(void *p)
{
    ReluPoolCase *c = p;
    relu_maxpool2x2_forward(c->y, c->argmax, c->x, c->N, c->C, c->H, c->W);
    return dot(c->y, c->r, (size_t)c->N * c->C * (c->H / 2) * (c->W / 2));
}

static void test_relu_pool(int N, int C, int H, int W)
{
    ReluPoolCase c = {.N = N, .C = C, .H = H, .W = W};
    size_t nx = (size_t)N * C * H * W, ny = (size_t)N * C * (H / 2) * (W / 2);
    c.x = zeros(nx), c.y = zeros(ny), c.r = zeros(ny);
    c.argmax = calloc(ny, 1);
    float *relu = zeros(nx), *want = zeros(ny), *dx = zeros(nx);
    fill_distinct(c.x, nx, 0.01f);
    fill_uniform(c.r, ny, -1, 1);
    relu_pool_objective(&c);
    relu_forward(relu, c.x, nx);
    maxpool2d_forward(want, relu, N, C, H, W, 2, 2);
    ok(memcmp(want, c.y, ny * sizeof(float)) == 0, "relu_maxpool2x2 N%d C%d %dx%d equals relu "
       "then maxpool", N, C, H, W);
    relu_pool_objective(&c);
    float *out = zeros(ny);
    relu_maxpool2x2_forward(out, NULL, c.x, N, C, H, W);
    ok(memcmp(out, c.y, ny * sizeof(float)) == 0, "relu_maxpool2x2 without argmax gives the "
       "same output");
    relu_maxpool2x2_backward(dx, c.r, c.y, c.argmax, N, C, H, W);
    char what[64];
    snprintf(what, sizeof what, "relu_maxpool2x2 N%d C%d %dx%d", N, C, H, W);
    check_grad(what, c.x, nx, dx, relu_pool_objective, &c, 1e-3f);
    /* ties: all-equal windows send the gradient to the first element, as PyTorch */
    float tie[4] = {1, 1, 1, 1}, ty[1], g[1] = {1}, dt[4] = {0};
    uint8_t k[1];
    relu_maxpool2x2_forward(ty, k, tie, 1, 1, 2, 2);
    relu_maxpool2x2_backward(dt, g, ty, k, 1, 1, 2, 2);
    ok(dt[0] == 1 && dt[1] == 0 && dt[2] == 0 && dt[3] == 0, "relu_maxpool2x2: a tie goes to "
       "the first element");
    free(c.x), free(c.y), free(c.r), free(c.argmax), free(relu), free(want), free(dx), free(out);
}

/* ---- the generic element-wise / small layers ---------------------------------------- */

/* One layer under test: forward(ctx) writes y from the variables; n_y floats of output. */
typedef struct LayerCase {
    int kind;
    int N, C, HW, D;
    float slope, p;
    float *x, *x2, *gamma, *beta, *rm, *rv, *mean, *invstd, *y, *r, *mask;
    size_t n_y;
} LayerCase;

enum { L_RELU, L_LEAKY, L_SIGMOID, L_TANH, L_SOFTMAX, L_GAP, L_LINEAR, L_BN_TRAIN, L_BN_EVAL,
       L_ADD, L_CONCAT, L_DROPOUT };

static double layer_objective(void *p)
{
    LayerCase *c = p;
    size_t n = (size_t)c->N * c->C * c->HW;
    switch (c->kind) {
    case L_RELU: relu_forward(c->y, c->x, n); break;
    case L_LEAKY: leaky_relu_forward(c->y, c->x, n, c->slope); break;
    case L_SIGMOID: sigmoid_forward(c->y, c->x, n); break;
    case L_TANH: tanh_forward(c->y, c->x, n); break;
    case L_SOFTMAX: softmax_forward(c->y, c->x, c->N, c->C); break;
    case L_GAP: global_avgpool_forward(c->y, c->x, c->N, c->C, c->HW); break;
    case L_LINEAR: linear_forward(c->y, c->x, c->gamma, c->beta, c->N, c->C * c->HW, c->D); break;
    case L_BN_TRAIN:
        batchnorm_forward_train(c->y, c->mean, c->invstd, c->rm, c->rv, c->x, c->gamma, c->beta,
                                c->N, c->C, c->HW, 0, c->C, 0.1f, 1e-5f);
        break;
    case L_BN_EVAL:
        batchnorm_forward_eval(c->y, c->x, c->gamma, c->beta, c->rm, c->rv, c->N, c->C, c->HW,
                               1e-5f);
        break;
    case L_ADD: add_forward(c->y, c->x, c->x2, n); break;
    case L_CONCAT: concat_forward(c->y, c->x, c->x2, c->N, c->C, c->D, c->HW); break;
    case L_DROPOUT: dropout_forward(c->y, c->mask, c->x, c->N, c->C * c->HW, c->p, 42, 7); break;
    }
    return dot(c->y, c->r, c->n_y);
}

static void test_layer(const char *what, int kind, int N, int C, int HW, int D)
{
    LayerCase c = {.kind = kind, .N = N, .C = C, .HW = HW, .D = D, .slope = 0.1f, .p = 0.3f};
    size_t n = (size_t)N * C * HW, n2 = kind == L_CONCAT ? (size_t)N * D * HW : n;
    c.n_y = kind == L_GAP ? (size_t)N * C : kind == L_LINEAR ? (size_t)N * D
          : kind == L_CONCAT ? n + n2 : n;
    c.x = zeros(n), c.x2 = zeros(n2), c.y = zeros(c.n_y), c.r = zeros(c.n_y), c.mask = zeros(n);
    size_t np = kind == L_LINEAR ? (size_t)D * C * HW : (size_t)C;
    size_t nb = kind == L_LINEAR ? (size_t)D : (size_t)C;
    c.gamma = zeros(np), c.beta = zeros(nb), c.rm = zeros(C), c.rv = zeros(C);
    c.mean = zeros(C), c.invstd = zeros(C);
    if (kind == L_RELU || kind == L_LEAKY)
        fill_distinct(c.x, n, 0.05f);   /* |x| >= 0.025 > h: away from the kink */
    else
        fill_uniform(c.x, n, -2, 2);
    fill_uniform(c.x2, n2, -2, 2);
    fill_uniform(c.gamma, np, 0.5f, 1.5f);
    fill_uniform(c.beta, nb, -0.5f, 0.5f);
    fill_uniform(c.rm, C, -0.5f, 0.5f);
    fill_uniform(c.rv, C, 0.5f, 2.0f);
    fill_uniform(c.r, c.n_y, -1, 1);
    float *dx = zeros(n), *dx2 = zeros(n2), *dgamma = zeros(np), *dbeta = zeros(nb);
    layer_objective(&c);
    switch (kind) {
    case L_RELU: relu_backward(dx, c.r, c.y, n); break;
    case L_LEAKY: leaky_relu_backward(dx, c.r, c.x, n, c.slope); break;
    case L_SIGMOID: sigmoid_backward(dx, c.r, c.y, n); break;
    case L_TANH: tanh_backward(dx, c.r, c.y, n); break;
    case L_SOFTMAX: softmax_backward(dx, c.r, c.y, N, C); break;
    case L_GAP: global_avgpool_backward(dx, c.r, N, C, HW); break;
    case L_LINEAR: linear_backward(dx, dgamma, dbeta, c.r, c.x, c.gamma, N, C * HW, D); break;
    case L_BN_TRAIN:
        batchnorm_backward_train(dx, dgamma, dbeta, c.r, c.x, c.gamma, c.mean, c.invstd, N, C,
                                 HW, 0, C);
        break;
    case L_BN_EVAL:
        batchnorm_backward_eval(dx, dgamma, dbeta, c.r, c.x, c.gamma, c.rm, c.rv, N, C, HW,
                                1e-5f);
        break;
    case L_ADD: add_backward(dx, dx2, c.r, n); break;
    case L_CONCAT: concat_backward(dx, dx2, c.r, N, C, D, HW); break;
    case L_DROPOUT: dropout_backward(dx, c.r, c.mask, n); break;
    }
    char sub[128];
    snprintf(sub, sizeof sub, "%s dinp", what);
    check_grad(sub, c.x, n, dx, layer_objective, &c, 1e-2f);
    if (kind == L_ADD || kind == L_CONCAT) {
        snprintf(sub, sizeof sub, "%s dinp2", what);
        check_grad(sub, c.x2, n2, dx2, layer_objective, &c, 1e-2f);
    }
    if (kind == L_LINEAR || kind == L_BN_TRAIN || kind == L_BN_EVAL) {
        snprintf(sub, sizeof sub, "%s %s", what, kind == L_LINEAR ? "dweight" : "dgamma");
        check_grad(sub, c.gamma, np, dgamma, layer_objective, &c, 1e-2f);
        snprintf(sub, sizeof sub, "%s %s", what, kind == L_LINEAR ? "dbias" : "dbeta");
        check_grad(sub, c.beta, nb, dbeta, layer_objective, &c, 1e-2f);
    }
    free(c.x), free(c.x2), free(c.y), free(c.r), free(c.mask), free(c.gamma), free(c.beta);
    free(c.rm), free(c.rv), free(c.mean), free(c.invstd);
    free(dx), free(dx2), free(dgamma), free(dbeta);
}

static void test_batchnorm_values(void)
{
    enum { N = 3, C = 2, HW = 4 };
    float x[N * C * HW], y[N * C * HW], gamma[C] = {1, 2}, beta[C] = {0, -1};
    float rm[C] = {0, 0}, rv[C] = {1, 1}, mean[C], invstd[C];
    fill_uniform(x, N * C * HW, -3, 3);
    batchnorm_forward_train(y, mean, invstd, rm, rv, x, gamma, beta, N, C, HW, 0, C, 0.1f, 1e-5f);
    double worst = 0.0;
    for (int c = 0; c < C; c++) {
        double s = 0, sq = 0, ys = 0, ysq = 0;
        for (int n = 0; n < N; n++)
            for (int i = 0; i < HW; i++) {
                double v = x[(n * C + c) * HW + i], o = y[(n * C + c) * HW + i];
                s += v, sq += v * v, ys += o, ysq += o * o;
            }
        int m = N * HW;
        double mu = s / m, var = sq / m - mu * mu;
        worst = fmax(worst, fabs(rm[c] - 0.1 * mu));
        worst = fmax(worst, fabs(rv[c] - (0.9 + 0.1 * var * m / (m - 1))));
        /* normalised output has mean beta and std |gamma| */
        worst = fmax(worst, fabs(ys / m - beta[c]));
        worst = fmax(worst, fabs(sqrt(ysq / m - (ys / m) * (ys / m)) - gamma[c]) * 0.1);
    }
    ok(worst < 1e-3, "batchnorm train: output mean/std and running stats (momentum 0.1, "
       "unbiased variance) as PyTorch (max err %.2g)", worst);
    /* a channel range touches only those channels */
    float y2[N * C * HW];
    memset(y2, 0, sizeof y2);
    batchnorm_forward_train(y2, mean, invstd, rm, rv, x, gamma, beta, N, C, HW, 1, 2, 0.1f, 1e-5f);
    ok(y2[0] == 0.0f && y2[HW] != 0.0f, "batchnorm train: [c_begin, c_end) limits the channels");
}

static void test_dropout(void)
{
    enum { N = 4, D = 1000 };
    static float x[N * D], y[N * D], mask[N * D], y2[N * D], mask2[N * D];
    for (int i = 0; i < N * D; i++)
        x[i] = 1.0f;
    dropout_forward(y, mask, x, N, D, 0.25f, 99, 10);
    int kept = 0, scaled = 1;
    for (int i = 0; i < N * D; i++) {
        kept += y[i] != 0.0f;
        if (y[i] != 0.0f && fabsf(y[i] - 1.0f / 0.75f) > 1e-6f)
            scaled = 0;
    }
    ok(kept > 2800 && kept < 3200 && scaled,
       "dropout p=0.25 keeps ~75%% (%d of 4000) and scales kept values by 1/(1-p)", kept);
    /* the same images processed as two halves give the same mask */
    dropout_forward(y2, mask2, x, 2, D, 0.25f, 99, 10);
    dropout_forward(y2 + 2 * D, mask2 + 2 * D, x, 2, D, 0.25f, 99, 12);
    ok(memcmp(mask, mask2, sizeof mask) == 0, "dropout mask depends on (seed, image index), not "
       "on the batch split");
    dropout_forward(y2, mask2, x, N, D, 0.25f, 100, 10);
    ok(memcmp(mask, mask2, sizeof mask) != 0, "dropout mask changes with the seed");
}

/* ---- losses ------------------------------------------------------------------------- */

typedef struct LossCase {
    int kind, N, K;
    float *x, *t, *probs;
    int32_t *labels;
} LossCase;

/* The losses on any targets (the classification losses are test_class_loss's). */
enum { T_BCE, T_BCE_LOGITS, T_MSE, T_MAE };

static double loss_objective(void *p)
{
    LossCase *c = p;
    size_t n = (size_t)c->N * c->K;
    switch (c->kind) {
    case T_BCE: return bce_forward(c->x, c->t, n);
    case T_BCE_LOGITS: return bce_logits_forward(c->x, c->t, n);
    case T_MSE: return mse_forward(c->x, c->t, n);
    default: return mae_forward(c->x, c->t, n);
    }
}

static void test_loss(const char *what, int kind)
{
    enum { N = 4, K = 5 };
    float x[N * K], t[N * K], probs[N * K], g[N * K];
    int32_t labels[N] = {0, 3, 4, 1};
    LossCase c = {kind, N, K, x, t, probs, labels};
    if (kind == T_BCE)
        fill_uniform(x, N * K, 0.1f, 0.9f);
    else
        fill_uniform(x, N * K, -2, 2);
    if (kind == T_MAE)   /* keep |x - t| > h: away from the kink */
        for (int i = 0; i < N * K; i++)
            t[i] = x[i] + (i % 2 ? 0.3f : -0.3f) * (1.0f + rng_uniform(&test_rng));
    else
        fill_uniform(t, N * K, 0, 1);
    memset(g, 0, sizeof g);
    loss_objective(&c);
    switch (kind) {
    case T_BCE: bce_backward(g, x, t, N * K, 1.0f); break;
    case T_BCE_LOGITS: bce_logits_backward(g, x, t, N * K, 1.0f); break;
    case T_MSE: mse_backward(g, x, t, N * K, 1.0f); break;
    case T_MAE: mae_backward(g, x, t, N * K, 1.0f); break;
    }
    check_grad(what, x, N * K, g, loss_objective, &c, 1e-3f);
}

static double class_loss_objective(void *p)
{
    LossCase *c = p;
    return class_loss_forward(c->kind, c->probs, c->x, c->labels, c->N, c->K);
}

/* A classification loss: its gradient against finite differences, with scale; its value
 * against the loss on any targets applied to the softmax (sigmoids for BCE) and one-hot
 * targets, computed here independently. */
static void test_class_loss(int kind)
{
    enum { N = 4, K = 5 };
    float x[N * K], t[N * K], probs[N * K], g[N * K], p[N * K];
    int32_t labels[N] = {0, 3, 4, 1};
    LossCase c = {kind, N, K, x, t, probs, labels};
    char what[64];
    fill_uniform(x, N * K, -3, 3);
    memset(g, 0, sizeof g);
    float value = class_loss_forward(kind, probs, x, labels, N, K);
    class_loss_backward(kind, g, probs, labels, N, K, 2.0f);
    for (int i = 0; i < N * K; i++)
        g[i] *= 0.5f;   /* scale 2 doubled the gradient */
    snprintf(what, sizeof what, "class loss %s", nn_loss_name(kind));
    check_grad(what, x, N * K, g, class_loss_objective, &c, 1e-3f);
    for (int i = 0; i < N * K; i++)
        t[i] = labels[i / K] == i % K ? 1.0f : 0.0f;
    double want = 0;
    if (kind == LOSS_CCE) {
        for (int n = 0; n < N; n++) {
            double z = 0;
            for (int k = 0; k < K; k++)
                z += exp(x[n * K + k]);
            want += (log(z) - x[n * K + labels[n]]) / N;
        }
    } else if (kind == LOSS_BCE) {
        for (int i = 0; i < N * K; i++)
            p[i] = (float)(1.0 / (1.0 + exp(-(double)x[i])));
        want = bce_forward(p, t, N * K);
    } else {
        softmax_forward(p, x, N, K);
        want = kind == LOSS_MSE ? mse_forward(p, t, N * K) : mae_forward(p, t, N * K);
    }
    ok(fabs(value - want) <= 1e-6 * fmax(1.0, fabs(want)),
       "class loss %s: %.7f = the loss of the %s against one-hot targets (%.7f)",
       nn_loss_name(kind), value, kind == LOSS_BCE ? "sigmoids" : "softmax", want);
}

/* The vectorised tanh and sigmoid against libm's, over a dense range and at the extremes. */
static void test_activation_accuracy(void)
{
    enum { N = 200001 };
    static float x[N + 8], y[N + 8];
    for (int i = 0; i < N; i++)
        x[i] = -25.0f + 50.0f * (float)i / (N - 1);
    const float extremes[8] = {-1000.0f, 1000.0f, -88.5f, 88.5f, 0.0f, -0.0f, 1e-30f, -3e-8f};
    memcpy(x + N, extremes, sizeof extremes);
    double worst_tanh = 0, worst_sigmoid = 0;
    tanh_forward(y, x, N + 8);
    for (int i = 0; i < N + 8; i++)
        worst_tanh = fmax(worst_tanh, fabs(y[i] - tanh((double)x[i])) /
                                          fmax(fabs(tanh((double)x[i])), 1e-30));
    int finite = 1;
    sigmoid_forward(y, x, N + 8);
    for (int i = 0; i < N + 8; i++) {
        double s = 1.0 / (1.0 + exp(-(double)x[i]));
        finite &= isfinite(y[i]) && y[i] >= 0.0f && y[i] <= 1.0f;
        if (s > 1e-30)   /* below, a float result is 0 or denormal either way */
            worst_sigmoid = fmax(worst_sigmoid, fabs(y[i] - s) / s);
    }
    ok(worst_tanh < 5e-7 && worst_sigmoid < 5e-7 && finite,
       "vectorised tanh and sigmoid: relative error %.2g and %.2g of the exact values (4 float "
       "ulp = 4.8e-7), finite in [0, 1] at +-1000", worst_tanh, worst_sigmoid);
}

static void test_loss_values(void)
{
    float logits[2 * 4] = {0, 0, 0, 0, 1000, 0, -1000, 0}, probs[8];
    int32_t labels[2] = {2, 0};
    float ce = class_loss_forward(LOSS_CCE, probs, logits, labels, 2, 4);
    ok(fabsf(ce - logf(4.0f) / 2.0f) < 1e-5f, "cross-entropy: uniform logits give log K, huge "
       "logits stay finite (%g)", ce);
    float p[2] = {0.0f, 1.0f}, t[2] = {1.0f, 1.0f};
    ok(fabsf(bce_forward(p, t, 2) - 50.0f) < 1e-4f, "bce: log(0) is clamped at -100 as PyTorch");
    float big[1] = {100.0f}, one[1] = {1.0f}, zero[1] = {0.0f};
    ok(bce_logits_forward(big, one, 1) < 1e-6f && fabsf(bce_logits_forward(big, zero, 1) - 100) < 1e-3f,
       "bce with logits: stable at |x| = 100");
    float a[3] = {1, 2, 3}, b[3] = {2, 2, 5};
    ok(fabsf(mse_forward(a, b, 3) - 5.0f / 3) < 1e-6f && fabsf(mae_forward(a, b, 3) - 1.0f) < 1e-6f,
       "mse and mae values");
    float g[3] = {0, 0, 0};
    mae_backward(g, a, b, 3, 1.0f);
    ok(g[1] == 0.0f && g[0] < 0 && g[2] < 0, "mae gradient is 0 where pred == target");
    for (int kind = 0; kind < LOSS_COUNT; kind++) {
        float dl[8] = {0};
        float v = class_loss_forward(kind, probs, logits, labels, 2, 4);
        class_loss_backward(kind, dl, probs, labels, 2, 4, 1.0f);
        int finite = isfinite(v);
        for (int i = 0; i < 8; i++)
            finite &= isfinite(dl[i]);
        ok(finite, "class loss %s: finite value %g and gradient at logits +-1000",
           nn_loss_name(kind), v);
    }
}

/* ---- optimiser, schedules, metrics -------------------------------------------------- */

static void test_sgd(void)
{
    /* two steps by hand, as torch.optim.SGD(lr=.1, momentum=.9, weight_decay=.01, nesterov) */
    float p[1] = {1.0f}, v[1] = {0.0f}, g[1] = {0.5f};
    SgdConfig cfg = {0.9f, 0.01f, 1};
    sgd_step(p, v, g, 1, 0.1f, &cfg);
    double gp = 0.5 + 0.01 * 1.0, vv = gp, pp = 1.0 - 0.1 * (gp + 0.9 * vv);
    sgd_step(p, v, g, 1, 0.1f, &cfg);
    gp = 0.5 + 0.01 * pp, vv = 0.9 * vv + gp, pp = pp - 0.1 * (gp + 0.9 * vv);
    ok(fabs(p[0] - pp) < 1e-6 && fabs(v[0] - vv) < 1e-6, "sgd nesterov + weight decay: two "
       "steps match PyTorch's formulas (%g vs %g)", p[0], pp);
    float q[1] = {1.0f}, w[1] = {0.0f};
    SgdConfig heavy = {0.9f, 0.0f, 0};
    sgd_step(q, w, g, 1, 0.1f, &heavy);
    sgd_step(q, w, g, 1, 0.1f, &heavy);
    ok(fabsf(q[0] - (1.0f - 0.05f - 0.1f * 0.95f)) < 1e-6f, "sgd heavy-ball momentum");
    float r[1] = {1.0f}, u[1] = {7.0f};
    SgdConfig plain = {.momentum = 0.0f};
    sgd_step(r, u, g, 1, 0.1f, &plain);
    ok(r[0] == 0.95f && u[0] == 7.0f, "plain sgd leaves the velocity alone");
}

static void test_schedules(void)
{
    LrSchedule step = {.kind = LR_STEP, .base_lr = 0.1f, .step_size = 10, .gamma = 0.5f};
    ok(lr_at(&step, 0) == 0.1f && lr_at(&step, 9) == 0.1f && lr_at(&step, 10) == 0.05f &&
       fabsf(lr_at(&step, 25) - 0.025f) < 1e-9f, "step schedule halves every 10 steps");
    LrSchedule cos_ = {.kind = LR_COSINE, .base_lr = 1.0f, .warmup_steps = 5, .total_steps = 105};
    ok(fabsf(lr_at(&cos_, 0) - 0.2f) < 1e-6f && fabsf(lr_at(&cos_, 4) - 1.0f) < 1e-6f,
       "warm-up rises linearly to the base rate over 5 steps");
    ok(fabsf(lr_at(&cos_, 5) - 1.0f) < 1e-6f && fabsf(lr_at(&cos_, 55) - 0.5f) < 1e-6f &&
       lr_at(&cos_, 105) == 0.0f && lr_at(&cos_, 1000) == 0.0f,
       "cosine schedule: 1 at the start, 0.5 half-way, min at the end");
    LrSchedule constant = {.kind = LR_CONSTANT, .base_lr = 0.3f};
    ok(lr_at(&constant, 12345) == 0.3f, "constant schedule");
}

static void test_metrics(void)
{
    /* labels 0 0 1 1 2, predictions 0 1 1 1 0 */
    int32_t labels[5] = {0, 0, 1, 1, 2}, pred[5] = {0, 1, 1, 1, 0};
    int64_t conf[9] = {0};
    confusion_add(conf, pred, labels, 5, 3);
    ok(conf[0] == 1 && conf[1] == 1 && conf[4] == 2 && conf[6] == 1, "confusion matrix counts");
    ok(fabs(confusion_accuracy(conf, 3) - 0.6) < 1e-12, "accuracy 3/5");
    /* F1: class0 2*1/(2+1+1)=0.5, class1 2*2/(4+1+0)=0.8, class2 0 -> mean 0.4333 */
    ok(fabs(confusion_macro_f1(conf, 3) - 1.3 / 3) < 1e-12, "macro-F1 %.4f (want 0.4333)",
       confusion_macro_f1(conf, 3));
    float logits[2 * 3] = {0, 5, 1, 9, 2, 3};
    int32_t l2[2] = {1, 7};
    int64_t c2[9] = {0};
    confusion_add_logits(c2, logits, l2, 2, 3);
    ok(c2[4] == 1 && confusion_accuracy(c2, 3) == 1.0, "argmax of logits; out-of-range label "
       "ignored");
    int64_t empty[4] = {0};
    ok(confusion_accuracy(empty, 2) == 0.0 && confusion_macro_f1(empty, 2) == 0.0,
       "empty confusion gives 0, not NaN");
    /* class 0: TP 1 FP 1 FN 1; class 1: TP 2 FP 1 FN 0; class 2: TP 0 FP 0 FN 1 */
    ClassScores s0 = confusion_class_scores(conf, 3, 0), s1 = confusion_class_scores(conf, 3, 1);
    ClassScores s2 = confusion_class_scores(conf, 3, 2);
    ok(s0.precision == 0.5 && s0.recall == 0.5 && s0.f1 == 0.5 && s0.support == 2 &&
       s0.predicted == 2, "class 0: precision, recall, F1 1/2, support 2, predicted 2");
    ok(fabs(s1.precision - 2.0 / 3) < 1e-15 && s1.recall == 1.0 && fabs(s1.f1 - 0.8) < 1e-15 &&
       s1.support == 2 && s1.predicted == 3, "class 1: precision 2/3, recall 1, F1 0.8");
    ok(s2.precision == 0.0 && s2.recall == 0.0 && s2.f1 == 0.0 && s2.support == 1 &&
       s2.predicted == 0, "class 2, never predicted: precision 0 (not NaN), recall 0, F1 0");
    /* row 0: label 2 ties with class 1 (which ranks first); row 1: label 3 is last; row 2's
     * label is out of range */
    float top[3 * 4] = {0.1f, 0.5f, 0.5f, 0.2f, 3, 2, 1, 0, 1, 2, 3, 4};
    int32_t top_labels[3] = {2, 3, 7};
    ok(metrics_topk_hits(top, top_labels, 3, 4, 1) == 0 &&
       metrics_topk_hits(top, top_labels, 3, 4, 2) == 1 &&
       metrics_topk_hits(top, top_labels, 3, 4, 3) == 1 &&
       metrics_topk_hits(top, top_labels, 3, 4, 4) == 2,
       "top-k hits: ties rank the lower class first, an out-of-range label never hits");
}

int main(void)
{
    test_rng = rng_make(1234, 0);
    test_conv(2, 3, 5, 6, 4, 3, 1, 1, 1);
    test_conv(2, 2, 7, 5, 3, 3, 2, 1, 0);
    test_conv(1, 3, 6, 6, 2, 3, 2, 0, 1);
    test_conv(2, 4, 4, 5, 3, 1, 1, 0, 1);   /* pointwise: no im2col */
    test_conv(2, 4, 5, 5, 3, 1, 2, 0, 0);   /* 1x1 stride 2 (ResNet shortcut) */
    test_conv(1, 2, 3, 3, 2, 5, 1, 2, 1);   /* kernel larger than the image */
    /* 3x3 "same" convolutions take the direct AVX-512 kernel where the CPU has it: full and
     * masked 16-column vectors, 8 + 4 + 1 output-channel blocks, an odd row count */
    test_conv(2, 5, 7, 20, 13, 3, 1, 1, 1);
    test_conv(1, 3, 16, 16, 8, 3, 1, 1, 0);
    test_pool(1, 2, 3, 6, 8, 2, 2);
    test_pool(1, 1, 2, 5, 7, 2, 2);         /* odd sizes: floor */
    test_pool(1, 2, 2, 4, 35, 2, 2);        /* 17 windows a row: 8-wide vector path + tail */
    test_pool(1, 2, 2, 7, 7, 3, 2);         /* overlapping windows, general path */
    test_relu_pool(2, 3, 6, 8);
    test_relu_pool(1, 2, 5, 7);             /* odd sizes: floor */
    test_relu_pool(2, 2, 4, 34);            /* 17 windows a row: 8-wide vector path + tail */
    test_pool(0, 2, 3, 6, 6, 2, 2);
    test_pool(0, 1, 2, 7, 5, 3, 2);
    test_layer("relu", L_RELU, 2, 3, 5, 0);
    test_layer("leaky_relu", L_LEAKY, 2, 3, 5, 0);
    test_layer("sigmoid", L_SIGMOID, 2, 3, 5, 0);
    test_layer("tanh", L_TANH, 2, 3, 5, 0);
    test_layer("softmax", L_SOFTMAX, 3, 6, 1, 0);
    test_layer("global_avgpool", L_GAP, 2, 3, 9, 0);
    test_layer("linear", L_LINEAR, 3, 4, 2, 5);
    test_layer("batchnorm train", L_BN_TRAIN, 3, 2, 5, 0);
    test_layer("batchnorm1d train (HW=1)", L_BN_TRAIN, 6, 3, 1, 0);
    test_layer("batchnorm eval", L_BN_EVAL, 2, 3, 4, 0);
    test_layer("add", L_ADD, 2, 3, 4, 0);
    test_layer("concat", L_CONCAT, 2, 3, 4, 2);
    test_layer("dropout", L_DROPOUT, 2, 3, 4, 0);
    test_batchnorm_values();
    test_dropout();
    test_loss("bce", T_BCE);
    test_loss("bce with logits", T_BCE_LOGITS);
    test_loss("mse", T_MSE);
    test_loss("mae", T_MAE);
    for (int kind = 0; kind < LOSS_COUNT; kind++)
        test_class_loss(kind);
    test_activation_accuracy();
    test_loss_values();
    test_sgd();
    test_schedules();
    test_metrics();
    ok(nn_out_size(32, 3, 1, 1) == 32 && nn_out_size(5, 2, 2, 0) == 2 && nn_out_size(1, 3, 1, 0) == 0,
       "nn_out_size: same padding, floor, window larger than the input");
    return tap_done();
}
