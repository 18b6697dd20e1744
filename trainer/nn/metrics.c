/* metrics.c — accuracy, macro-F1 and the confusion matrix. */
#include "metrics.h"

int metrics_argmax(const float *x, int K)
{
    int best = 0;
    for (int k = 1; k < K; k++)
        if (x[k] > x[best])
            best = k;
    return best;
}

void confusion_add_logits(int64_t *confusion, const float *logits, const int32_t *labels, int N,
                          int K)
{
    for (int n = 0; n < N; n++)
        if (labels[n] >= 0 && labels[n] < K)
            confusion[(int64_t)labels[n] * K + metrics_argmax(logits + (int64_t)n * K, K)]++;
}

void confusion_add(int64_t *confusion, const int32_t *predicted, const int32_t *labels, int N,
                   int K)
{
    for (int n = 0; n < N; n++)
        if (labels[n] >= 0 && labels[n] < K && predicted[n] >= 0 && predicted[n] < K)
            confusion[(int64_t)labels[n] * K + predicted[n]]++;
}

double confusion_accuracy(const int64_t *confusion, int K)
{
    int64_t total = 0, right = 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++) {
            total += confusion[(int64_t)i * K + j];
            if (i == j)
                right += confusion[(int64_t)i * K + j];
        }
    return total ? (double)right / (double)total : 0.0;
}

double confusion_macro_f1(const int64_t *confusion, int K)
{
    double sum = 0.0;
    int classes = 0;
    for (int c = 0; c < K; c++) {
        int64_t tp = confusion[(int64_t)c * K + c], fp = 0, fn = 0;
        for (int o = 0; o < K; o++)
            if (o != c) {
                fn += confusion[(int64_t)c * K + o];
                fp += confusion[(int64_t)o * K + c];
            }
        if (tp + fp + fn == 0)
            continue;   /* neither a label nor a prediction: not counted */
        sum += 2.0 * (double)tp / (double)(2 * tp + fp + fn);
        classes++;
    }
    return classes ? sum / classes : 0.0;
}
