/* cli.h — the imgset subcommands and the small helpers they share. */
#ifndef IMGSET_CLI_H
#define IMGSET_CLI_H

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

#endif
