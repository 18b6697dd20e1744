/* cli.h — the imgset subcommands and the small helpers they share. */
#ifndef IMGSET_CLI_H
#define IMGSET_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "graph.h"
#include "json.h"
#include "store.h"

/* Each subcommand gets argv with argv[0] = its own name; returns the exit status:
 * 0 success, 1 failure (the error was printed), 2 bad usage. */
int cmd_gen(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_read(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_stats(int argc, char **argv);

/* Print "imgset CMD: <message>" on stderr and return 1. */
int cli_error(const char *cmd, const char *message);

/* Copy src into dst_uri with a progress bar; prints a one-line summary (images, MB, seconds,
 * img/s, MB/s) on stdout. Closes src. Returns the exit status. */
int cli_copy_and_report(const char *cmd, Store *src, const char *dst_uri);

/* Parse a non-negative integer option value; -1 on garbage (message printed). */
long long cli_parse_count(const char *cmd, const char *option, const char *value);

/* Parse --device: "cpu" (MODEL_CPU), "cuda" (MODEL_CUDA) or, when allow_auto, "auto"
 * (TRAIN_AUTO); -2 on anything else (message printed). */
int cli_parse_device(const char *cmd, const char *value, int allow_auto);

/* Drop the page cache for the store at uri: the whole cache through /proc/sys/vm/drop_caches
 * where allowed (root), else POSIX_FADV_DONTNEED on every file of a file store. Returns a
 * sentence saying what was done ("cold: ..."). PostgreSQL's shared buffers are not dropped. */
const char *cli_drop_cache(const char *uri);

/* Parse a comma list of non-negative numbers ("0.5,0.25") into values (at most max);
 * the count, or -1 on garbage (message naming option printed). */
int cli_parse_numbers(const char *cmd, const char *option, const char *value, float *values,
                      int max);

/* report.c — a classifier's scores. */

/* "WHAT: accuracy A, top-5 T, macro-F1 F" (top-5 when top5 >= 0) and the `worst` classes of
 * lowest F1 with their precision and recall, from confusion (K, K); class_names may be NULL. */
void cli_print_class_summary(FILE *out, const char *what, const int64_t *confusion, int K,
                             char *const *class_names, double top5, int worst);

/* The JSON members "per_class": [{class, name, precision, recall, f1, support, predicted}]
 * and "confusion": [[...]] (rows = labels, columns = predictions) into the open object of j. */
void cli_json_class_metrics(Json *j, const int64_t *confusion, int K, char *const *class_names);

/* The JSON members activation, leaky_slope, loss, normalize, mean, std of spec. */
void cli_json_recipe(Json *j, const ModelSpec *spec);

/* One line: activation, loss and normalisation of spec. */
void cli_print_recipe(FILE *out, const ModelSpec *spec);

#endif
