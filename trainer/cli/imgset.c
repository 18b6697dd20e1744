/* imgset.c — the `imgset` command: dispatches to one subcommand per verb. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "error.h"
#include "model.h"
#include "progress.h"

typedef struct Command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Command;

static const Command commands[] = {
    {"gen", cmd_gen, "make a synthetic data set (cifar10, tinyimagenet, hires, mixed shapes)"},
    {"import", cmd_import, "bring in a real data set (cifar10 binary, idx, imagefolder)"},
    {"convert", cmd_convert, "copy a data set from one store into another"},
    {"verify", cmd_verify, "digest every split of each store; exit 1 when they differ"},
    {"info", cmd_info, "counts, shapes, classes and bytes of a stored data set"},
    {"stats", cmd_stats, "per-channel min, max, mean and std of a split's pixels"},
    {"read", cmd_read, "loader-only throughput: images/s, MB/s, data-wait per batch"},
    {"train", cmd_train, "train a CNN through any store; per-epoch time, data-wait, accuracy"},
    {"bench", cmd_bench, "every store x every data-set shape: the table of epoch seconds"},
    {"predict", cmd_predict, "classify a split with a checkpoint (the in-database path's twin)"},
    {"model", cmd_model, "model push CKPT --db URI --name NAME: put a model into the database"},
};

static void usage(FILE *out)
{
    fprintf(out,
            "imgset — image data sets in files, mmap, HDF5 and PostgreSQL\n\n"
            "usage: imgset COMMAND [ARGS...]     (imgset COMMAND --help for each)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nstores (URI forms):\n");
    for (const StoreOps *const *b = store_backends(); *b; b++)
        fprintf(out, "  %-11s %s\n", (*b)->scheme, (*b)->summary);
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    /* Debian's OpenBLAS may not know this CPU and fall back to slow kernels (model.h). */
    if (model_blas_reexec(argv) < 0)
        fprintf(stderr, "imgset: %s (continuing with the slower BLAS kernels)\n", imgset_error());
    interrupt_install();
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "imgset: unknown command \"%s\" (see imgset --help)\n", argv[1]);
    return 2;
}
