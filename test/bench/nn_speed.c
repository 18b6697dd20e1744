/* nn_speed.c — throughput of the C trainer's models on random data: images/s for training
 * (forward + backward + SGD step) and for inference (evaluation forward), several timed runs,
 * median and min-max. A benchmark that prints numbers; it never fails on a time.
 *
 * usage: nn_speed [--arch cnn-small] [--shape 3x32x32] [--classes 10] [--batch 128]
 *                 [--threads 2] [--runs 7] [--images 2560] [--json]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "error.h"
#include "model.h"
#include "rng.h"

int main(int argc, char **argv)
{
    if (model_blas_reexec(argv) < 0)
        fprintf(stderr, "nn_speed: %s (continuing with OpenBLAS's own choice)\n", imgset_error());
    BenchModel bm = {"cnn-small", 3, 32, 32, 10, 128, 2, 7, 2560};
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (bench_model_option(&bm, argc, argv, &i))
            continue;
        if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else {
            fprintf(stderr, "usage: nn_speed [--arch A] [--shape CxHxW] [--classes K] [--batch B] "
                            "[--threads T] [--runs R] [--images N] [--json]\n");
            return 2;
        }
    }
    const char *arch = bm.arch;
    int C = bm.C, H = bm.H, W = bm.W, K = bm.K, batch = bm.batch, threads = bm.threads;
    int runs = bm.runs, images = bm.images;
    if (runs < 1 || runs > 100 || images < batch) {
        fprintf(stderr, "nn_speed: need 1..100 runs and --images >= --batch\n");
        return 2;
    }
    Model *m = model_create(arch, C, H, W, K, batch, 1);
    if (!m || model_set_threads(m, threads) < 0) {
        fprintf(stderr, "nn_speed: %s\n", imgset_error());
        return 1;
    }
    size_t n = (size_t)batch * C * H * W;
    float *x = malloc(n * sizeof(float));
    int32_t *labels = malloc(sizeof(int32_t) * batch);
    Rng rng = rng_make(1, 0);
    for (size_t i = 0; i < n; i++)
        x[i] = rng_normal(&rng);
    for (int i = 0; i < batch; i++)
        labels[i] = (int32_t)rng_below(&rng, (uint64_t)K);
    SgdConfig sgd = {0.9f, 5e-4f, 0};
    int steps = images / batch;
    /* per run: images per wall second, and per CPU second of the process (less sensitive to
     * other programs sharing the cores: the threads' busy time, not the waiting) */
    double train[100], infer[100], train_cpu[100], infer_cpu[100], loss_sum = 0;
    float loss;
    for (int mode = 0; mode < 2; mode++)
        for (int r = -1; r < runs; r++) {   /* run -1 warms up */
            double t0 = bench_seconds(CLOCK_MONOTONIC);
            double c0 = bench_seconds(CLOCK_PROCESS_CPUTIME_ID);
            for (int s = 0; s < steps; s++) {
                if (mode == 0) {
                    model_zero_grad(m);
                    model_forward(m, x, batch, 1);
                    model_loss(m, labels, &loss);
                    model_backward(m);
                    model_sgd_step(m, 0.001f, &sgd);
                    loss_sum += loss;
                } else
                    model_forward(m, x, batch, 0);
            }
            double rate = steps * (double)batch / (bench_seconds(CLOCK_MONOTONIC) - t0);
            double cpu_seconds = bench_seconds(CLOCK_PROCESS_CPUTIME_ID) - c0;
            double cpu_rate = steps * (double)batch / cpu_seconds;
            if (r >= 0) {
                (mode == 0 ? train : infer)[r] = rate;
                (mode == 0 ? train_cpu : infer_cpu)[r] = cpu_rate;
            }
        }
    qsort(train, (size_t)runs, sizeof(double), bench_compare_doubles);
    qsort(infer, (size_t)runs, sizeof(double), bench_compare_doubles);
    qsort(train_cpu, (size_t)runs, sizeof(double), bench_compare_doubles);
    qsort(infer_cpu, (size_t)runs, sizeof(double), bench_compare_doubles);
    char cpu[256];
    bench_cpu_name(cpu, sizeof cpu);
    double load[1] = {bench_load_average()};
    if (json) {
        printf("{\"impl\":\"imgset\",\"arch\":\"%s\",\"shape\":[%d,%d,%d],\"classes\":%d,"
               "\"batch\":%d,\"threads\":%d,\"runs\":%d,\"images_per_run\":%d,"
               "\"train_median\":%.1f,\"train_min\":%.1f,\"train_max\":%.1f,"
               "\"infer_median\":%.1f,\"infer_min\":%.1f,\"infer_max\":%.1f,"
               "\"train_per_cpu_second\":%.1f,\"infer_per_cpu_second\":%.1f,"
               "\"blas_core\":\"%s\",\"cpu\":\"%s\",\"loadavg\":%.2f}\n",
               arch, C, H, W, K, batch, threads, runs, steps * batch, train[runs / 2], train[0],
               train[runs - 1], infer[runs / 2], infer[0], infer[runs - 1], train_cpu[runs / 2],
               infer_cpu[runs / 2], model_blas_core(), cpu,
               load[0]);
    } else {
        printf("machine: %s; OpenBLAS core %s; load average %.2f before the last run\n", cpu,
               model_blas_core(), load[0]);
        printf("imgset %s %dx%dx%d K=%d batch %d, %d threads, %d runs of %d images:\n", arch, C,
               H, W, K, batch, threads, runs, steps * batch);
        printf("  train  %8.0f images/s median (min %.0f, max %.0f); %.0f images per CPU second\n",
               train[runs / 2], train[0], train[runs - 1], train_cpu[runs / 2]);
        printf("  infer  %8.0f images/s median (min %.0f, max %.0f); %.0f images per CPU second\n",
               infer[runs / 2], infer[0], infer[runs - 1], infer_cpu[runs / 2]);
    }
    free(x);
    free(labels);
    model_free(m);
    return 0;
}
