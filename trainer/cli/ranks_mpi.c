/* ranks_mpi.c — the Comm of a run under MPI (built when mpicc is found: IMGSET_HAVE_MPI). */
#include <limits.h>
#include <mpi.h>

#include "error.h"
#include "ranks.h"

/* MPI counts are int: larger buffers go in pieces of at most this many elements. */
#define PIECE (INT_MAX / 8)

static int mpi_sum_floats(const Comm *c, float *values, size_t n)
{
    for (size_t done = 0; done < n; done += PIECE) {
        int k = n - done < PIECE ? (int)(n - done) : PIECE;
        MPI_Allreduce(MPI_IN_PLACE, values + done, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    return 0;
}

static int mpi_sum_doubles(const Comm *c, double *values, size_t n)
{
    for (size_t done = 0; done < n; done += PIECE) {
        int k = n - done < PIECE ? (int)(n - done) : PIECE;
        MPI_Allreduce(MPI_IN_PLACE, values + done, k, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    }
    return 0;
}

static int mpi_broadcast(const Comm *c, void *data, size_t bytes, int root)
{
    for (size_t done = 0; done < bytes; done += PIECE) {
        int k = bytes - done < PIECE ? (int)(bytes - done) : PIECE;
        MPI_Bcast((char *)data + done, k, MPI_BYTE, root, MPI_COMM_WORLD);
    }
    return 0;
}

static Comm mpi_comm = {.sum_floats = mpi_sum_floats, .sum_doubles = mpi_sum_doubles,
                        .broadcast = mpi_broadcast};
static int started;

/* MPI's default error handler (MPI_ERRORS_ARE_FATAL) stays: a collective that fails (a rank
 * died) ends the whole job rather than leaving the other ranks waiting. */
const Comm *ranks_start(void)
{
    if (started)
        return &mpi_comm;
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        imgset_fail("MPI did not start");
        return NULL;
    }
    started = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi_comm.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mpi_comm.world);
    return &mpi_comm;
}

void ranks_finish(void)
{
    if (started)
        MPI_Finalize();
    started = 0;
}
