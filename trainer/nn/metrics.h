/* metrics.h — classification metrics: accuracy, top-k accuracy, per-class precision, recall
 * and F1, macro-F1, from logits and a confusion matrix. */
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

/* Rows of logits (N, K) whose label is among the k largest logits; on ties the lower class
 * ranks first (as metrics_argmax, so k = 1 counts the argmax hits). Labels outside [0, K)
 * are misses. */
int64_t metrics_topk_hits(const float *logits, const int32_t *labels, int N, int K, int k);

/* Fraction of correct predictions (trace / total); 0 when empty. */
double confusion_accuracy(const int64_t *confusion, int K);

/* Mean over classes of F1 = 2 TP / (2 TP + FP + FN), over the classes that occur as a label or
 * a prediction (as scikit-learn's f1_score(average="macro") without explicit labels); 0 when
 * empty. */
double confusion_macro_f1(const int64_t *confusion, int K);

/* One class's scores from confusion (K, K), as scikit-learn's precision_recall_fscore_support
 * with zero_division=0: precision = TP / predicted, recall = TP / support, F1 = 2 TP / (2 TP
 * + FP + FN), each 0 where its denominator is 0. */
typedef struct ClassScores {
    double precision, recall, f1;
    int64_t support;     /* images of the class (its row's sum) */
    int64_t predicted;   /* images predicted as the class (its column's sum) */
} ClassScores;

ClassScores confusion_class_scores(const int64_t *confusion, int K, int c);

#endif
