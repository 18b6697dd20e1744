/* allreduce.c — the gradient exchange of `mpirun -np N imgset train` alone: one in-place
 * MPI_Allreduce (float sum) of a model's whole gradient memory, the ranks started together (a
 * barrier first), timed on rank 0; median and min-max over the repetitions, per model. A
 * benchmark that prints numbers; it never fails on a time. Built when mpicc is found.
 *
 * usage: mpirun -np N build/bench/allreduce [--reps 200] [MODEL...]   (default: cnn-small
 *        resnet8, on CIFAR-10's 3x32x32 input and 10 classes)
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model.h"

static int compare_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Time reps allreduces of model arch's gradient memory; rank 0 prints one line. */
static int time_model(const char *arch, int reps, int rank, int world)
{
    Model *m = model_create(arch, 3, 32, 32, 10, 1, 1);
    if (!m) {
        fprintf(stderr, "allreduce: %s\n", imgset_error());
        return -1;
    }
    size_t n = m->graph.param_floats;
    double *t = malloc(sizeof *t * (size_t)reps);
    for (size_t i = 0; i < n; i++)
        m->grads[i] = (float)(rank + 1) * 1e-3f;
    for (int r = -5; r < reps; r++) {   /* 5 untimed: connections and buffers set up */
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        MPI_Allreduce(MPI_IN_PLACE, m->grads, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        if (r >= 0)
            t[r] = MPI_Wtime() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, compare_double);
    if (rank == 0)
        printf("| %s | %zu | %.1f | %.3f | %.3f-%.3f |\n", arch, n, n * 4.0 / 1e6,
               t[reps / 2] * 1e3, t[0] * 1e3, t[reps - 1] * 1e3);
    free(t);
    model_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, world, reps = 200, first = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    if (argc > 2 && strcmp(argv[1], "--reps") == 0) {
        reps = atoi(argv[2]);
        first = 3;
    }
    if (reps < 1)
        reps = 1;
    if (rank == 0)
        printf("%d ranks, %d repetitions each, rank 0's clock\n\n"
               "| model | floats | MB | allreduce ms (median) | min-max ms |\n"
               "|---|---|---|---|---|\n", world, reps);
    static const char *const defaults[] = {"cnn-small", "resnet8"};
    int rc = 0;
    if (first < argc)
        for (int i = first; i < argc && rc == 0; i++)
            rc = time_model(argv[i], reps, rank, world);
    else
        for (int i = 0; i < 2 && rc == 0; i++)
            rc = time_model(defaults[i], reps, rank, world);
    MPI_Finalize();
    return rc < 0;
}
