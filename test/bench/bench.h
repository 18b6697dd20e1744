/* bench.h — what the C benchmarks of test/bench share: clocks, sorting, the machine's name. */
#ifndef IMGSET_BENCH_H
#define IMGSET_BENCH_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The model and workload a benchmark runs (its command-line options). */
typedef struct BenchModel {
    const char *arch;
    int C, H, W, K;      /* --shape CxHxW, --classes K */
    int batch, threads;
    int runs;            /* timed runs (rounds) */
    int images;          /* per run */
} BenchModel;

/* If argv[*i] is --arch, --shape, --classes, --batch, --threads, --runs or --images with its
 * value, store it in m, step *i past the value and return 1; else 0. */
static inline int bench_model_option(BenchModel *m, int argc, char **argv, int *i)
{
    const char *o = argv[*i], *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (!v)
        return 0;
    if (strcmp(o, "--arch") == 0)
        m->arch = v;
    else if (strcmp(o, "--shape") == 0) {
        if (sscanf(v, "%dx%dx%d", &m->C, &m->H, &m->W) != 3)
            return 0;
    } else {
        static const char *const names[] = {"--classes", "--batch", "--threads", "--runs",
                                            "--images"};
        int *fields[] = {&m->K, &m->batch, &m->threads, &m->runs, &m->images};
        int k = 0;
        while (k < 5 && strcmp(o, names[k]) != 0)
            k++;
        if (k == 5)
            return 0;
        *fields[k] = atoi(v);
    }
    ++*i;
    return 1;
}

/* Seconds on clock id (CLOCK_MONOTONIC for wall time, CLOCK_PROCESS_CPUTIME_ID for CPU). */
static inline double bench_seconds(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* qsort comparison of doubles, ascending. */
static inline int bench_compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* "model name" of /proc/cpuinfo, or "unknown". */
static inline void bench_cpu_name(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0 && strchr(line, ':')) {
            snprintf(out, cap, "%s", strchr(line, ':') + 2);
            out[strcspn(out, "\n")] = 0;
            break;
        }
    if (f)
        fclose(f);
}

/* The 1-minute load average, or -1. */
static inline double bench_load_average(void)
{
    double load = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &load) != 1)
            load = -1;
        fclose(f);
    }
    return load;
}

#endif
