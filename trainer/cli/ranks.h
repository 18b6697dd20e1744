/* ranks.h — `imgset train` started by an MPI launcher (mpirun -np N): this process's rank,
 * and the MPI Comm of the run in builds that have MPI (trainer/cli/ranks_mpi.c). */
#ifndef IMGSET_RANKS_H
#define IMGSET_RANKS_H

#include "comm.h"

/* The rank and world an MPI launcher gave this process, read from the environment it sets
 * (Open MPI's OMPI_COMM_WORLD_RANK / _SIZE, MPICH's PMI_RANK / PMI_SIZE): *world = 1 and
 * *rank = 0 when no launcher started it. Needs no MPI. */
void ranks_launched(int *rank, int *world);

/* Start MPI and return this process's Comm, valid until ranks_finish(). NULL with
 * imgset_fail() when this build has no MPI (mpicc was not found, or NO_MPI=1) or MPI does not
 * start. Call from the main thread before any other thread starts; MPI is then called from
 * the main thread only. */
const Comm *ranks_start(void);

/* End MPI after the last collective (every rank calls it); nothing when it was not started. */
void ranks_finish(void);

/* Print notices (imgset_notice) as "imgset: rank R: <line>" on stderr, so that a line from
 * one of many processes says which. */
void ranks_label_notices(int rank);

#endif
