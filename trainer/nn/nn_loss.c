/* nn_loss.c — the nn core's losses: softmax cross-entropy, binary cross-entropy, MSE, MAE. */
#include "nn.h"

#include <math.h>

float softmax_cross_entropy_forward(float *probs, const float *logits, const int32_t *labels,
                                    int N, int K)
{
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * K;
        float *p = probs + (size_t)n * K;
        float m = x[0];
        for (int k = 1; k < K; k++)
            m = x[k] > m ? x[k] : m;
        double sum = 0.0;
        for (int k = 0; k < K; k++) {
            p[k] = expf(x[k] - m);
            sum += p[k];
        }
        for (int k = 0; k < K; k++)
            p[k] = (float)(p[k] / sum);
        /* -log softmax[label] = log(sum exp(x - m)) + m - x[label], never log(0) */
        total += log(sum) + m - x[labels[n]];
    }
    return N > 0 ? (float)(total / N) : 0.0f;
}

void softmax_cross_entropy_backward(float *dlogits, const float *probs, const int32_t *labels,
                                    int N, int K, float scale)
{
    float s = scale / (float)N;
    for (int n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * K;
        float *d = dlogits + (size_t)n * K;
        for (int k = 0; k < K; k++)
            d[k] += s * (p[k] - (k == labels[n] ? 1.0f : 0.0f));
    }
}

/* log(x) clamped below at -100, as torch.nn.BCELoss. */
static double clamped_log(double x)
{
    double l = log(x);
    return l < -100.0 ? -100.0 : l;
}

float bce_forward(const float *pred, const float *target, size_t n)
{
    double total = 0.0;
    for (size_t i = 0; i < n; i++)
        total -= target[i] * clamped_log(pred[i]) + (1.0 - target[i]) * clamped_log(1.0 - pred[i]);
    return n ? (float)(total / (double)n) : 0.0f;
}

void bce_backward(float *dpred, const float *pred, const float *target, size_t n, float scale)
{
    /* PyTorch's gradient: (p - t) / max(p (1 - p), 1e-12) */
    for (size_t i = 0; i < n; i++) {
        double p = pred[i], denom = p * (1.0 - p);
        if (denom < 1e-12)
            denom = 1e-12;
        dpred[i] += (float)(scale * (p - target[i]) / denom / (double)n);
    }
}

float bce_logits_forward(const float *logits, const float *target, size_t n)
{
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        double x = logits[i];
        /* max(x, 0) - x t + log(1 + exp(-|x|)): no overflow for any x */
        total += (x > 0 ? x : 0) - x * target[i] + log1p(exp(-fabs(x)));
    }
    return n ? (float)(total / (double)n) : 0.0f;
}

void bce_logits_backward(float *dlogits, const float *logits, const float *target, size_t n,
                         float scale)
{
    for (size_t i = 0; i < n; i++) {
        double sig = 1.0 / (1.0 + exp(-(double)logits[i]));
        dlogits[i] += (float)(scale * (sig - target[i]) / (double)n);
    }
}

float mse_forward(const float *pred, const float *target, size_t n)
{
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)pred[i] - target[i];
        total += d * d;
    }
    return n ? (float)(total / (double)n) : 0.0f;
}

void mse_backward(float *dpred, const float *pred, const float *target, size_t n, float scale)
{
    float s = 2.0f * scale / (float)n;
    for (size_t i = 0; i < n; i++)
        dpred[i] += s * (pred[i] - target[i]);
}

float mae_forward(const float *pred, const float *target, size_t n)
{
    double total = 0.0;
    for (size_t i = 0; i < n; i++)
        total += fabs((double)pred[i] - target[i]);
    return n ? (float)(total / (double)n) : 0.0f;
}

void mae_backward(float *dpred, const float *pred, const float *target, size_t n, float scale)
{
    float s = scale / (float)n;
    for (size_t i = 0; i < n; i++) {
        float d = pred[i] - target[i];
        dpred[i] += d > 0.0f ? s : d < 0.0f ? -s : 0.0f;
    }
}
