/* comm.c — the agreed stop on error between the ranks of a run (see comm.h). */
#include "comm.h"

#include <stdio.h>
#include <stdlib.h>

#include "error.h"

int comm_agree(const Comm *c, int rc, int *stop)
{
    if (!c)
        return rc;
    double flags[2] = {rc < 0, stop && *stop};
    if (c->sum_doubles(c, flags, 2) < 0)
        return -1;
    if (flags[0] == 0) {
        if (stop)
            *stop = flags[1] > 0;
        return 0;
    }
    /* Someone failed (rare): find the lowest failing rank, then hear its message. */
    double *failed = calloc((size_t)c->world, sizeof *failed);
    if (!failed)
        return imgset_fail("out of memory");   /* fatal anyway: the job stops */
    failed[c->rank] = rc < 0;
    int first = 0;
    if (c->sum_doubles(c, failed, (size_t)c->world) == 0)
        while (first < c->world - 1 && failed[first] == 0)
            first++;
    free(failed);
    char message[1024];
    snprintf(message, sizeof message, "%s", c->rank == first ? imgset_error() : "");
    if (c->broadcast(c, message, sizeof message, first) < 0)
        return -1;
    return imgset_fail("rank %d: %s", first, message);
}
