/* comm.h — what the ranks of a data-parallel run say to each other: a table of collective
 * operations (MPI's is trainer/cli/comm_mpi.c) that the training loop calls, and the agreed
 * stop on error built on it. */
#ifndef IMGSET_COMM_H
#define IMGSET_COMM_H

#include <stddef.h>

/*
 * One rank's view of a group of `world` processes that run the same program. Every operation
 * is collective: every rank calls it, in the same order, with the same n / bytes / root. A
 * failure inside one (a rank that died) is fatal to the whole group — MPI aborts the job —
 * so they return 0, or -1 with imgset_fail() where the transport can report it.
 */
typedef struct Comm Comm;
struct Comm {
    int rank, world;   /* 0 <= rank < world */
    /* Sum values[0..n-1] over the ranks, in place: every rank gets the same sums. */
    int (*sum_floats)(const Comm *c, float *values, size_t n);
    int (*sum_doubles)(const Comm *c, double *values, size_t n);
    /* Copy bytes at data on rank root into data on every other rank. */
    int (*broadcast)(const Comm *c, void *data, size_t bytes, int root);
    void *impl;        /* the transport's own state */
};

/*
 * Collective: every rank passes its outcome rc (0, or -1 with imgset_fail() set) and a stop
 * request (*stop, 0 or 1; stop may be NULL). When any rank failed, every rank returns -1
 * with the error "rank R: <R's message>" of the lowest failing rank R, so that all stop
 * together with that rank's reason; else 0 and *stop = 1 when any rank asked to stop.
 * With c NULL (one process) it returns rc and leaves *stop alone.
 */
int comm_agree(const Comm *c, int rc, int *stop);

#endif
