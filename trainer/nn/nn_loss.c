/* nn_loss.c — the nn core's losses: the classification losses a model trains with (cross-
 * entropy, BCE, MSE, MAE on class labels), and BCE, MSE, MAE on any targets. */
#include "nn.h"

#include <math.h>
#include <string.h>

static const char *const loss_names[LOSS_COUNT] = {"cce", "bce", "mse", "mae"};

const char *nn_loss_name(int loss)
{
    return loss >= 0 && loss < LOSS_COUNT ? loss_names[loss] : "?";
}

int nn_loss_from_name(const char *name)
{
    for (int i = 0; i < LOSS_COUNT; i++)
        if (strcmp(name, loss_names[i]) == 0)
            return i;
    return -1;
}

float class_loss_forward(int loss, float *probs, const float *logits, const int32_t *labels,
                         int N, int K)
{
    double total = 0.0;
    for (int n = 0; n < N; n++)
        total += nn_class_loss_row(loss, probs + (size_t)n * K, logits + (size_t)n * K,
                                   labels[n], K);
    return N > 0 ? (float)(total / nn_class_loss_count(loss, N, K)) : 0.0f;
}

void class_loss_backward(int loss, float *dlogits, const float *probs, const int32_t *labels,
                         int N, int K, float scale)
{
    float s = scale / (float)nn_class_loss_count(loss, N, K);
    for (int n = 0; n < N; n++)
        nn_class_loss_grad_row(loss, dlogits + (size_t)n * K, probs + (size_t)n * K, labels[n],
                               K, s);
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
