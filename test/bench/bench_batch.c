/* bench_batch.c — one epoch of a pg_imgset split read several ways, in images/s and MB/s:
 * COPY (SELECT img …) TO STDOUT (FORMAT binary) — the ceiling; shuffled imgset_batch() calls
 * (imgset_batch_packed) streamed by one statement per epoch, pipelined one statement per batch,
 * one at a time, and by ids computed on the client (as the store's read_batch does); the
 * composite imgset_batch streamed for comparison; and one SELECT per image.
 * Each figure is the median of RUNS epochs after one untimed warm-up epoch (warm cache).
 * A benchmark: it prints numbers, it never fails on a time.
 * Usage: bench_batch CONNINFO DATASET [BATCH_SIZE] [DEPTH] [SINGLE_LIMIT] [RUNS] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "../../loaders/permute.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void die(PGconn *conn, const char *what)
{
    fprintf(stderr, "bench_batch: %s: %s", what, PQerrorMessage(conn));
    exit(1);
}

static uint32_t be32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static void report(const char *what, long images, double bytes, double seconds)
{
    printf("%-44s %9ld images %8.3f s %10.0f images/s %8.1f MB/s\n", what, images, seconds,
           images / seconds, bytes / seconds / 1e6);
}

/* COPY (SELECT img FROM table) TO STDOUT (FORMAT binary): rows and payload bytes. */
static double copy_epoch(PGconn *conn, const char *table, long *rows)
{
    char sql[256];
    snprintf(sql, sizeof sql, "COPY (SELECT img FROM %s) TO STDOUT (FORMAT binary)", table);
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COPY_OUT)
        die(conn, "COPY");
    PQclear(res);
    char *buf;
    int n;
    double bytes = 0;
    *rows = 0;
    while ((n = PQgetCopyData(conn, &buf, 0)) > 0) {
        if (n > 19 + 2 + 4)   /* a row (the header rides on the first) */
            (*rows)++;
        bytes += n;
        PQfreemem(buf);
    }
    while ((res = PQgetResult(conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            die(conn, "COPY end");
        PQclear(res);
    }
    return bytes;
}

/* Every batch of one epoch through imgset_batch(split, seed, epoch, b, size), with `depth`
 * calls in flight (pipeline mode; depth 1 = one call at a time). Returns pixel bytes. */
static double batch_epoch(PGconn *conn, uint32_t oid, long batches, int batch_size, int depth,
                          int epoch, long *images)
{
    char oidbuf[4], seed[8] = {0, 0, 0, 0, 0, 0, 0, 42}, ep[4], bno[4], bs[4];
    const char *values[5] = {oidbuf, seed, ep, bno, bs};
    int lengths[5] = {4, 8, 4, 4, 4}, formats[5] = {1, 1, 1, 1, 1};
    for (int i = 0; i < 4; i++) {
        oidbuf[i] = (char)(oid >> (24 - 8 * i));
        ep[i] = (char)((uint32_t)epoch >> (24 - 8 * i));
        bs[i] = (char)((uint32_t)batch_size >> (24 - 8 * i));
    }
    if (!PQenterPipelineMode(conn))
        die(conn, "pipeline");
    long sent = 0, got = 0;
    double bytes = 0;
    *images = 0;
    while (got < batches) {
        while (sent < batches && sent - got < depth) {
            for (int i = 0; i < 4; i++)
                bno[i] = (char)((uint32_t)sent >> (24 - 8 * i));
            if (!PQsendQueryPrepared(conn, "epoch_batch", 5, values, lengths, formats, 1) ||
                !PQpipelineSync(conn))
                die(conn, "send");
            sent++;
        }
        PGresult *res = PQgetResult(conn);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            die(conn, "batch");
        bytes += PQgetlength(res, 0, 0);
        *images += be32(PQgetvalue(res, 0, 0) + 8);
        PQclear(res);
        if ((res = PQgetResult(conn)) != NULL)
            die(conn, "extra result");
        res = PQgetResult(conn);
        if (PQresultStatus(res) != PGRES_PIPELINE_SYNC)
            die(conn, "sync");
        PQclear(res);
        got++;
    }
    if (!PQexitPipelineMode(conn))
        die(conn, "exit pipeline");
    return bytes;
}

/* The whole epoch in one statement — LATERAL imgset_batch over generate_series — read in
 * single-row mode: the server computes batch b+1 while the client takes batch b. */
static double stream_epoch(PGconn *conn, uint32_t oid, long batches, int batch_size, int epoch,
                           int packed, long *images)
{
    char sql[512];
    if (packed)
        snprintf(sql, sizeof sql,
                 "SELECT NULL, imgset.imgset_batch_packed(%u, 42, %d, n, %d) "
                 "FROM generate_series(0, %ld) n", oid, epoch, batch_size, batches - 1);
    else
        snprintf(sql, sizeof sql,
                 "SELECT b.labels, b.pixels FROM generate_series(0, %ld) n, "
                 "LATERAL imgset.imgset_batch(%u, 42, %d, n, %d) b", batches - 1, oid, epoch,
                 batch_size);
    if (!PQsendQueryParams(conn, sql, 0, NULL, NULL, NULL, NULL, 1) || !PQsetSingleRowMode(conn))
        die(conn, "stream");
    double bytes = 0;
    PGresult *res;
    *images = 0;
    while ((res = PQgetResult(conn)) != NULL) {
        if (PQresultStatus(res) == PGRES_SINGLE_TUPLE) {
            bytes += PQgetlength(res, 0, 1);
            *images += packed ? be32(PQgetvalue(res, 0, 1) + 8) : be32(PQgetvalue(res, 0, 0) + 12);
        } else if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            die(conn, "stream row");
        }
        PQclear(res);
    }
    /* libpq 15 keeps single-row mode armed into a following pipeline; a plain query resets it. */
    PQclear(PQexec(conn, ""));
    return bytes;
}

/* The epoch split over `conns` connections (forked clients), connection k streaming batches
 * k, k+conns, …: several batches in flight on the server at once. Returns pixel bytes. */
static double multi_epoch(const char *conninfo, uint32_t oid, long batches, int batch_size,
                          int epoch, int conns, long n, long *images)
{
    for (int k = 0; k < conns; k++) {
        pid_t pid = fork();
        if (pid == 0) {
            PGconn *c = PQconnectdb(conninfo);
            char sql[512];
            snprintf(sql, sizeof sql,
                     "SELECT imgset.imgset_batch_packed(%u, 42, %d, n, %d) "
                     "FROM generate_series(%d, %ld, %d) n", oid, epoch, batch_size, k,
                     batches - 1, conns);
            if (PQstatus(c) != CONNECTION_OK || !PQsendQueryParams(c, sql, 0, NULL, NULL, NULL,
                                                                  NULL, 1) ||
                !PQsetSingleRowMode(c))
                _exit(1);
            PGresult *res;
            int bad = 0;
            while ((res = PQgetResult(c)) != NULL) {
                ExecStatusType st = PQresultStatus(res);
                bad |= st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK;
                PQclear(res);
            }
            PQfinish(c);
            _exit(bad);
        }
    }
    int failed = 0, status;
    while (wait(&status) > 0)
        failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    if (failed) {
        fprintf(stderr, "bench_batch: a client of the multi-connection run failed\n");
        exit(1);
    }
    *images = n;
    return 0;   /* the caller counts the pixel bytes */
}

/* Batches by ids: the client computes the permutation (loaders/permute.c) and asks
 * imgset_batch(split, ids) one batch at a time — what the store's read_batch does. */
static double ids_epoch(PGconn *conn, uint32_t oid, long n, int batch_size, int epoch,
                        long *images)
{
    Permutation perm;
    permutation_init(&perm, (uint64_t)n, 42, (uint64_t)epoch);
    char *arr = malloc(20 + 12 * (size_t)batch_size), oidbuf[4];
    double bytes = 0;
    *images = 0;
    for (int i = 0; i < 4; i++)
        oidbuf[i] = (char)(oid >> (24 - 8 * i));
    for (long first = 0; first < n; first += batch_size) {
        int m = (int)(n - first < batch_size ? n - first : batch_size);
        uint32_t head[5] = {1, 0, 20, (uint32_t)m, 1};
        for (int k = 0; k < 5; k++)
            for (int i = 0; i < 4; i++)
                arr[4 * k + i] = (char)(head[k] >> (24 - 8 * i));
        for (int j = 0; j < m; j++) {
            char *e = arr + 20 + 12 * j;
            uint64_t id = permutation_at(&perm, (uint64_t)(first + j));
            e[0] = e[1] = e[2] = 0;
            e[3] = 8;
            for (int i = 0; i < 8; i++)
                e[4 + i] = (char)(id >> (56 - 8 * i));
        }
        const char *values[2] = {oidbuf, arr};
        int lengths[2] = {4, 20 + 12 * m}, formats[2] = {1, 1};
        PGresult *res = PQexecPrepared(conn, "ids_batch", 2, values, lengths, formats, 1);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            die(conn, "ids batch");
        bytes += PQgetlength(res, 0, 0);
        *images += m;
        PQclear(res);
    }
    free(arr);
    return bytes;
}

/* One SELECT per image for the first `limit` images of a shuffled order. */
static double single_epoch(PGconn *conn, long n, long limit, long *images)
{
    double bytes = 0;
    *images = 0;
    for (long i = 0; i < limit && i < n; i++) {
        char id[8];
        uint64_t v = (uint64_t)((i * 7919) % n);
        for (int k = 0; k < 8; k++)
            id[k] = (char)(v >> (56 - 8 * k));
        const char *values[1] = {id};
        int lengths[1] = {8}, formats[1] = {1};
        PGresult *res = PQexecPrepared(conn, "one_image", 1, values, lengths, formats, 1);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
            die(conn, "single select");
        bytes += PQgetlength(res, 0, 0) - 20;
        (*images)++;
        PQclear(res);
    }
    return bytes;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_batch CONNINFO DATASET [BATCH_SIZE] [DEPTH] [SINGLE_LIMIT]\n");
        return 2;
    }
    int batch_size = argc > 3 ? atoi(argv[3]) : 256;
    int depth = argc > 4 ? atoi(argv[4]) : 4;
    long single_limit = argc > 5 ? atol(argv[5]) : 10000;
    int runs = argc > 6 ? atoi(argv[6]) : 3;
    if (runs < 1 || runs > 16)
        runs = 3;
    PGconn *conn = PQconnectdb(argv[1]);
    if (PQstatus(conn) != CONNECTION_OK)
        die(conn, "connect");
    const char *params[1] = {argv[2]};
    PGresult *res = PQexecParams(conn, "SELECT rel::oid, rel::text, count, "
                                 "imgset.imgset_batch_count(count, $2::int) "
                                 "FROM imgset.splits WHERE dataset = $1 AND split = 'train'",
                                 2, NULL, (const char *[]){argv[2], argc > 3 ? argv[3] : "256"},
                                 NULL, NULL, 0);
    (void)params;
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        die(conn, "no such data set");
    uint32_t oid = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
    char table[200];
    snprintf(table, sizeof table, "%s", PQgetvalue(res, 0, 1));
    long n = atol(PQgetvalue(res, 0, 2));
    long batches = atol(PQgetvalue(res, 0, 3));
    PQclear(res);

    Oid types[5] = {2205, 20, 23, 23, 23};
    res = PQprepare(conn, "epoch_batch",
                    "SELECT imgset.imgset_batch_packed($1, $2, $3, $4, $5)", 5, types);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        die(conn, "prepare");
    PQclear(res);
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT img FROM %s WHERE id = $1", table);
    Oid t1[1] = {20};
    res = PQprepare(conn, "one_image", sql, 1, t1);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        die(conn, "prepare");
    PQclear(res);

    Oid t2[2] = {2205, 1016};
    res = PQprepare(conn, "ids_batch", "SELECT imgset.imgset_batch_packed($1, $2)", 2, t2);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        die(conn, "prepare");
    PQclear(res);

    printf("# %s: %ld train images, batch size %d, %d calls in flight, median of %d epochs\n",
           table, n, batch_size, depth, runs);
    long rows, images;
    copy_epoch(conn, table, &rows);                         /* warm the cache */
    stream_epoch(conn, oid, batches, batch_size, 0, 1, &images);

    const char *names[] = {"COPY (SELECT img …) TO STDOUT binary",
                           "packed shuffled batches, one statement/epoch",
                           "composite imgset_batch, one statement/epoch",
                           "packed shuffled batches, pipelined calls",
                           "packed shuffled batches, one call at a time",
                           "packed batches by client-side ids (read_batch)",
                           "one SELECT per image (shuffled ids)",
                           "packed shuffled batches, 2 connections",
                           "packed shuffled batches, 4 connections"};
    snprintf(sql, sizeof sql, "SELECT imgset.nbytes(img) FROM %s WHERE id = 0", table);
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        die(conn, "image size");
    double image_bytes = atof(PQgetvalue(res, 0, 0));   /* fixed-shape splits */
    PQclear(res);
    for (int mode = 0; mode < 9; mode++) {
        double secs[16], bytes = 0;
        for (int run = 0; run < runs; run++) {
            double t = now();
            switch (mode) {
            case 0: bytes = copy_epoch(conn, table, &images); break;
            case 1: bytes = stream_epoch(conn, oid, batches, batch_size, run + 1, 1, &images); break;
            case 2: bytes = stream_epoch(conn, oid, batches, batch_size, run + 1, 0, &images); break;
            case 3: bytes = batch_epoch(conn, oid, batches, batch_size, depth, run + 1, &images); break;
            case 4: bytes = batch_epoch(conn, oid, batches, batch_size, 1, run + 1, &images); break;
            case 5: bytes = ids_epoch(conn, oid, n, batch_size, run + 1, &images); break;
            case 6: bytes = single_epoch(conn, n, single_limit, &images); break;
            default:
                multi_epoch(argv[1], oid, batches, batch_size, run + 1, mode == 7 ? 2 : 4, n,
                            &images);
                bytes = image_bytes * (double)n;
            }

            secs[run] = now() - t;
        }
        for (int i = 1; i < runs; i++)   /* insertion sort for the median */
            for (int j = i; j > 0 && secs[j] < secs[j - 1]; j--) {
                double x = secs[j];
                secs[j] = secs[j - 1];
                secs[j - 1] = x;
            }
        report(names[mode], images, bytes, secs[runs / 2]);
        printf("#   spread: %.3f .. %.3f s\n", secs[0], secs[runs - 1]);
    }
    PQfinish(conn);
    return 0;
}
