/* metrics.c — accuracy, top-k accuracy, per-class scores, macro-F1 and the confusion matrix. */
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

int64_t metrics_topk_hits(const float *logits, const int32_t *labels, int N, int K, int k)
{
    int64_t hits = 0;
    for (int n = 0; n < N; n++) {
        int label = labels[n];
        if (label < 0 || label >= K)
            continue;
        const float *x = logits + (int64_t)n * K;
        int ahead = 0;   /* classes ranked before the label */
        for (int j = 0; j < K && ahead < k; j++)
            ahead += x[j] > x[label] || (x[j] == x[label] && j < label);
        hits += ahead < k;
    }
    return hits;
}

ClassScores confusion_class_scores(const int64_t *confusion, int K, int c)
{
    ClassScores s = {0};
    int64_t tp = confusion[(int64_t)c * K + c];
    for (int o = 0; o < K; o++) {
        s.support += confusion[(int64_t)c * K + o];
        s.predicted += confusion[(int64_t)o * K + c];
    }
    int64_t fp = s.predicted - tp, fn = s.support - tp;
    s.precision = s.predicted ? (double)tp / (double)s.predicted : 0.0;
    s.recall = s.support ? (double)tp / (double)s.support : 0.0;
    s.f1 = tp + fp + fn ? 2.0 * (double)tp / (double)(2 * tp + fp + fn) : 0.0;
    return s;
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
        ClassScores s = confusion_class_scores(confusion, K, c);
        if (s.support == 0 && s.predicted == 0)
            continue;   /* neither a label nor a prediction: not counted */
        sum += s.f1;
        classes++;
    }
    return classes ? sum / classes : 0.0;
}
