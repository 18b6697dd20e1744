/* test_comm.c — data-parallel training without MPI: ranks as threads of this process behind
 * the Comm table (a barrier and shared pointers). comm_agree stops every rank with the lowest
 * failing rank's message; train_run with 2 ranks of batch B/2 gives one process's losses with
 * batch B; a failing rank stops the others instead of leaving them waiting. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"
#include "error.h"
#include "generate.h"
#include "model.h"
#include "store.h"
#include "tap.h"
#include "train.h"

#define MAX_RANKS 4

/* The ranks' meeting point: each posts a pointer to its buffer, all read them in rank
 * order (so every rank computes the same sums), then all write their own. */
typedef struct Group {
    int world;
    pthread_barrier_t barrier;
    void *slot[MAX_RANKS];
} Group;

/* Sum n floats (doubles = 0) or doubles over the group's ranks, in place. */
static int group_sum(const Comm *c, void *values, size_t n, int doubles)
{
    Group *g = c->impl;
    size_t size = doubles ? sizeof(double) : sizeof(float);
    g->slot[c->rank] = values;
    pthread_barrier_wait(&g->barrier);
    double *sum = calloc(n ? n : 1, sizeof *sum);
    for (int r = 0; r < g->world; r++)
        for (size_t i = 0; i < n; i++)
            sum[i] += doubles ? ((const double *)g->slot[r])[i] : ((const float *)g->slot[r])[i];
    pthread_barrier_wait(&g->barrier);
    for (size_t i = 0; i < n; i++) {
        float f = (float)sum[i];
        memcpy((char *)values + i * size, doubles ? (void *)&sum[i] : (void *)&f, size);
    }
    free(sum);
    return 0;
}

static int group_sum_floats(const Comm *c, float *values, size_t n)
{
    return group_sum(c, values, n, 0);
}

static int group_sum_doubles(const Comm *c, double *values, size_t n)
{
    return group_sum(c, values, n, 1);
}

static int group_broadcast(const Comm *c, void *data, size_t bytes, int root)
{
    Group *g = c->impl;
    g->slot[c->rank] = data;
    pthread_barrier_wait(&g->barrier);
    if (c->rank != root)
        memcpy(data, g->slot[root], bytes);
    pthread_barrier_wait(&g->barrier);
    return 0;
}

/* One rank's thread: what it runs and what it got back. */
typedef struct Rank {
    Comm comm;
    int (*body)(struct Rank *);
    TrainConfig config;      /* for train bodies */
    double losses[8];        /* rank 0's epoch losses */
    int epochs;
    int fail;                /* for agree bodies: fail with this rank's message */
    int rc;
    char error[512];
} Rank;

static void *rank_main(void *arg)
{
    Rank *r = arg;
    r->rc = r->body(r);
    snprintf(r->error, sizeof r->error, "%s", r->rc < 0 ? imgset_error() : "");
    return NULL;
}

/* Run body on `world` threads, one Comm each. */
static void run_ranks(Rank *ranks, int world, int (*body)(Rank *))
{
    Group g = {.world = world};
    pthread_barrier_init(&g.barrier, NULL, (unsigned)world);
    pthread_t t[MAX_RANKS];
    for (int i = 0; i < world; i++) {
        ranks[i].comm = (Comm){i, world, group_sum_floats, group_sum_doubles, group_broadcast,
                               &g};
        ranks[i].body = body;
        pthread_create(&t[i], NULL, rank_main, &ranks[i]);
    }
    for (int i = 0; i < world; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&g.barrier);
}

static int agree_body(Rank *r)
{
    int rc = r->fail ? imgset_fail("disk %d is full", r->comm.rank) : 0;
    int stop = r->comm.rank == 1;
    rc = comm_agree(&r->comm, rc, &stop);
    r->epochs = stop;   /* reused: what the rank heard about stopping */
    return rc;
}

static void test_agree(void)
{
    Rank ranks[3] = {0};
    run_ranks(ranks, 3, agree_body);
    ok(ranks[0].rc == 0 && ranks[1].rc == 0 && ranks[2].rc == 0 && ranks[0].epochs == 1 &&
           ranks[2].epochs == 1,
       "no rank failed: every rank goes on, and rank 1's stop request reaches all");
    memset(ranks, 0, sizeof ranks);
    ranks[1].fail = ranks[2].fail = 1;
    run_ranks(ranks, 3, agree_body);
    int all = 1;
    for (int i = 0; i < 3; i++)
        all &= ranks[i].rc == -1 && strcmp(ranks[i].error, "rank 1: disk 1 is full") == 0;
    ok(all, "ranks 1 and 2 failed: every rank fails with rank 1's message (rank 0 got \"%s\")",
       ranks[0].error);
    ok(comm_agree(NULL, -1, NULL) == -1 && comm_agree(NULL, 0, NULL) == 0,
       "without a comm the outcome passes through");
}

static void keep_loss(void *ctx, const EpochReport *report)
{
    Rank *r = ctx;
    if (r->epochs < 8)
        r->losses[r->epochs++] = report->loss;
}

static int train_body(Rank *r)
{
    TrainCallbacks cb = {NULL, keep_loss, NULL, r};
    TrainRun run;
    r->config.comm = &r->comm;
    return train_run(&r->config, &cb, &run);
}

static char scratch[] = "/tmp/imgset-test-comm.XXXXXX";

static void test_train(void)
{
    char uri[300];
    snprintf(uri, sizeof uri, "mmap:%s/c", scratch);
    GenerateParams p = {"cifar10", 256, 32, 5};
    if (!ok(store_copy(generate_open(&p), uri, NULL, NULL) == 0, "make a test store: %s",
            imgset_error()))
        return;
    TrainConfig c;
    train_config_default(&c);
    c.uri = uri;
    c.epochs = 2;
    c.batch = 32;
    c.threads = 1;
    c.workers = 0;
    c.seed = 3;
    c.evaluate = 0;
    c.device = MODEL_CPU;
    Rank one = {.config = c};
    TrainCallbacks cb = {NULL, keep_loss, NULL, &one};
    TrainRun run;
    int rc1 = train_run(&c, &cb, &run);
    Rank two[2] = {{.config = c}, {.config = c}};
    run_ranks(two, 2, train_body);
    int same = rc1 == 0 && two[0].rc == 0 && two[1].rc == 0 && one.epochs == 2 &&
               two[0].epochs == 2 && two[1].epochs == 0;
    for (int e = 0; same && e < 2; e++) {
        double d = one.losses[e] - two[0].losses[e];
        same = (d < 0 ? -d : d) < 1e-4;
    }
    ok(same, "2 ranks of batch 16 give one process's losses with batch 32 (%.6f %.6f vs "
             "%.6f %.6f), reported by rank 0 only: %s %s", one.losses[0], one.losses[1],
       two[0].losses[0], two[0].losses[1], two[0].error, two[1].error);

    Rank three[3] = {{.config = c}, {.config = c}, {.config = c}};
    run_ranks(three, 3, train_body);
    ok(three[0].rc == -1 && three[1].rc == -1 && strstr(three[0].error, "not divisible by 3"),
       "batch 32 on 3 ranks is refused on every rank: %s", three[0].error);

    Rank bad[2] = {{.config = c}, {.config = c}};
    bad[1].config.uri = "mmap:/nonexistent-imgset-store";
    run_ranks(bad, 2, train_body);
    ok(bad[0].rc == -1 && bad[1].rc == -1 &&
           strncmp(bad[0].error, "rank 1: mmap:/nonexistent-imgset-store", 38) == 0,
       "rank 1 cannot open its store: both stop with its error (\"%s\")", bad[0].error);

    Rank other[2] = {{.config = c}, {.config = c}};
    other[1].config.epochs = 3;
    run_ranks(other, 2, train_body);
    ok(other[0].rc == -1 && other[1].rc == -1 && strstr(other[0].error, "rank 1: ") &&
           strstr(other[0].error, "other training options"),
       "a rank started with other options stops both: %s", other[0].error);
}

int main(void)
{
    test_agree();
    if (!mkdtemp(scratch))
        return perror("mkdtemp"), 1;
    test_train();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", scratch);
    return tap_done();
}
