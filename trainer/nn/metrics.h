/* metrics.h — classification metrics from a confusion matrix: accuracy, macro-F1. */
#ifndef IMGSET_METRICS_H
#define IMGSET_METRICS_H

#include <stdint.h>

/* Index of the largest of x[0..K-1] (the first on ties). */
int metrics_argmax(const float *x, int K);

/* Add N predictions to confusion (K, K): row = true label, column = predicted class (the
 * argmax of each row of logits (N, K)). Labels outside [0, K) are ignored. */
void confusion_add_logits(int64_t *confusion, const float *logits, const int32_t *labels, int N,
                          int K);

/* Add N predicted classes (N) against labels (N); out-of-range entries are ignored. */
void confusion_add(int64_t *confusion, const int32_t *predicted, const int32_t *labels, int N,
                   int K);

/* Fraction of correct predictions (trace / total); 0 when empty. */
double confusion_accuracy(const int64_t *confusion, int K);

/* Mean over classes of F1 = 2 TP / (2 TP + FP + FN), over the classes that occur as a label or
 * a prediction (as scikit-learn's f1_score(average="macro") without explicit labels); 0 when
 * empty. */
double confusion_macro_f1(const int64_t *confusion, int K);

#endif
