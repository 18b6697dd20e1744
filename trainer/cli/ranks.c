/* ranks.c — the launcher's rank and world from the environment, rank-labelled notices, and
 * ranks_start()'s refusal in builds without MPI (ranks_mpi.c has the MPI one). */
#include "ranks.h"

#include <stdio.h>
#include <stdlib.h>

#include "error.h"
#include "notice.h"

/* A non-negative integer environment variable, or -1 when unset or not a number. */
static int env_count(const char *name)
{
    const char *v = getenv(name);
    char *end;
    long n = v ? strtol(v, &end, 10) : -1;
    return v && *v && !*end && n >= 0 && n < (1L << 30) ? (int)n : -1;
}

void ranks_launched(int *rank, int *world)
{
    static const char *const names[][2] = {{"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                           {"PMI_RANK", "PMI_SIZE"}};
    *rank = 0;
    *world = 1;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int r = env_count(names[i][0]), w = env_count(names[i][1]);
        if (r >= 0 && w > r) {
            *rank = r;
            *world = w;
            return;
        }
    }
}

static int notice_rank;

static void print_rank_notice(const char *line)
{
    fprintf(stderr, "imgset: rank %d: %s\n", notice_rank, line);
}

void ranks_label_notices(int rank)
{
    notice_rank = rank;
    imgset_set_notice_handler(print_rank_notice);
}

#ifndef IMGSET_HAVE_MPI
const Comm *ranks_start(void)
{
    imgset_fail("this imgset was built without MPI (mpicc was not found, or NO_MPI=1): "
                "it cannot train with several ranks");
    return NULL;
}

void ranks_finish(void)
{
}
#endif
