/* report.c — what `imgset train` and `imgset predict` say about a classifier: the summary
 * and the worst classes on the terminal, per-class scores, the confusion matrix and the
 * model's activation, loss and normalisation in JSON. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "graph.h"
#include "json.h"
#include "metrics.h"
#include "nn.h"

/* A class's name, or its number when the data set has no names. */
static void class_name(char *out, size_t cap, char *const *names, int c)
{
    if (names && names[c] && names[c][0])
        snprintf(out, cap, "%s", names[c]);
    else
        snprintf(out, cap, "%d", c);
}

/* Classes ordered by F1, lowest first (ties: the lower class number), for the worst list. */
typedef struct Ranked {
    int c;
    double f1;
} Ranked;

static int by_f1(const void *a, const void *b)
{
    const Ranked *x = a, *y = b;
    if (x->f1 != y->f1)
        return x->f1 < y->f1 ? -1 : 1;
    return x->c - y->c;
}

void cli_print_class_summary(FILE *out, const char *what, const int64_t *confusion, int K,
                             char *const *class_names, double top5, int worst)
{
    fprintf(out, "%s: accuracy %.4f", what, confusion_accuracy(confusion, K));
    if (top5 >= 0)
        fprintf(out, ", top-5 %.4f", top5);
    fprintf(out, ", macro-F1 %.4f\n", confusion_macro_f1(confusion, K));
    Ranked *ranked = malloc(sizeof *ranked * (size_t)K);
    int n = 0;
    for (int c = 0; ranked && c < K; c++) {
        ClassScores s = confusion_class_scores(confusion, K, c);
        if (s.support > 0)
            ranked[n++] = (Ranked){c, s.f1};
    }
    if (n > 0) {
        qsort(ranked, (size_t)n, sizeof *ranked, by_f1);
        fprintf(out, "  worst classes by F1:");
        for (int i = 0; i < n && i < worst; i++) {
            ClassScores s = confusion_class_scores(confusion, K, ranked[i].c);
            char name[80];
            class_name(name, sizeof name, class_names, ranked[i].c);
            fprintf(out, "%s %s %.3f (precision %.3f, recall %.3f, %lld images)", i ? ";" : "",
                    name, s.f1, s.precision, s.recall, (long long)s.support);
        }
        fprintf(out, "\n");
    }
    free(ranked);
}

void cli_json_class_metrics(Json *j, const int64_t *confusion, int K, char *const *class_names)
{
    json_array_begin(j, "per_class");
    for (int c = 0; c < K; c++) {
        ClassScores s = confusion_class_scores(confusion, K, c);
        char name[80];
        class_name(name, sizeof name, class_names, c);
        json_raw(j, "\n    ");
        json_object_begin(j, NULL);
        json_int(j, "class", c);
        json_string(j, "name", class_names && class_names[c] ? class_names[c] : name);
        json_number(j, "precision", "%.6f", s.precision);
        json_number(j, "recall", "%.6f", s.recall);
        json_number(j, "f1", "%.6f", s.f1);
        json_int(j, "support", (long long)s.support);
        json_int(j, "predicted", (long long)s.predicted);
        json_object_end(j);
    }
    json_array_end(j);
    json_array_begin(j, "confusion");   /* rows: labels, columns: predictions */
    for (int r = 0; r < K; r++) {
        json_raw(j, "\n    ");
        json_array_begin(j, NULL);
        for (int c = 0; c < K; c++)
            json_int(j, NULL, (long long)confusion[(int64_t)r * K + c]);
        json_array_end(j);
    }
    json_array_end(j);
}

void cli_json_recipe(Json *j, const ModelSpec *spec)
{
    json_string(j, "activation", model_activation_name(spec->activation));
    json_number(j, "leaky_slope", "%.9g", spec->leaky_slope);
    json_string(j, "loss", nn_loss_name(spec->loss));
    json_string(j, "normalize", model_normalize_name(spec->normalize));
    int n = spec->channels < MODEL_NORM_CHANNELS ? spec->channels : MODEL_NORM_CHANNELS;
    json_array_begin(j, "mean");
    for (int c = 0; c < n; c++)
        json_number(j, NULL, "%.9g", spec->mean[c]);
    json_array_end(j);
    json_array_begin(j, "std");
    for (int c = 0; c < n; c++)
        json_number(j, NULL, "%.9g", spec->std[c]);
    json_array_end(j);
}

void cli_print_recipe(FILE *out, const ModelSpec *spec)
{
    fprintf(out, "activation %s", model_activation_name(spec->activation));
    if (spec->activation == ACT_LEAKY_RELU)
        fprintf(out, " (slope %g)", (double)spec->leaky_slope);
    fprintf(out, "  loss %s  normalize %s: mean", nn_loss_name(spec->loss),
            model_normalize_name(spec->normalize));
    int n = spec->channels < MODEL_NORM_CHANNELS ? spec->channels : MODEL_NORM_CHANNELS;
    for (int c = 0; c < n; c++)
        fprintf(out, "%s%.4f", c ? "," : " ", (double)spec->mean[c]);
    fprintf(out, " std");
    for (int c = 0; c < n; c++)
        fprintf(out, "%s%.4f", c ? "," : " ", (double)spec->std[c]);
    fprintf(out, " (of x/255)\n");
}
