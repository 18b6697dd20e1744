/* activation_speed.c — what each hidden activation costs: training images/s (forward, loss,
 * backward, SGD step) of one architecture with relu (cnn-small: the fused conv-ReLU-pool
 * blocks), leaky-relu with slope 0 (ReLU's values through the unfused conv, activation,
 * max-pool ops), leaky-relu, tanh and sigmoid, measured side by side in rounds (round r runs
 * every variant once, starting one variant later than round r - 1) so that the machine's
 * drift falls on all of them alike. Prints per variant the median and min-max images/s and
 * the median and min-max of its per-round ratio to relu. A benchmark that prints numbers; it
 * never fails on a time.
 *
 * usage: activation_speed [--arch cnn-small] [--shape 1x28x28] [--classes 10] [--batch 128]
 *                         [--threads 2] [--runs 7] [--images 2560]   (--runs: rounds)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "error.h"
#include "model.h"
#include "nn.h"
#include "rng.h"

#define MAX_ROUNDS 50

typedef struct Variant {
    const char *name;
    int activation;
    float slope;
} Variant;

static const Variant variants[] = {
    {"relu", ACT_RELU, 0.0f},
    {"leaky-relu 0 (unfused ReLU)", ACT_LEAKY_RELU, 0.0f},
    {"leaky-relu 0.01", ACT_LEAKY_RELU, 0.01f},
    {"tanh", ACT_TANH, 0.0f},
    {"sigmoid", ACT_SIGMOID, 0.0f},
};
enum { VARIANTS = sizeof variants / sizeof variants[0] };

/* Images per second of `steps` training steps of m on x. */
static double train_rate(Model *m, const float *x, const int32_t *labels, int batch, int steps)
{
    SgdConfig sgd = {0.9f, 5e-4f, 0};
    float loss;
    double t0 = bench_seconds(CLOCK_MONOTONIC);
    for (int s = 0; s < steps; s++) {
        model_zero_grad(m);
        model_forward(m, x, batch, 1);
        model_loss(m, labels, &loss);
        model_backward(m);
        model_sgd_step(m, 0.001f, &sgd);
    }
    return steps * (double)batch / (bench_seconds(CLOCK_MONOTONIC) - t0);
}

/* "median (min-max)" of n values (sorted in place). */
static void spread(char *out, size_t cap, double *v, int n, const char *format)
{
    char med[32], lo[32], hi[32];
    qsort(v, (size_t)n, sizeof *v, bench_compare_doubles);
    snprintf(med, sizeof med, format, n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2);
    snprintf(lo, sizeof lo, format, v[0]);
    snprintf(hi, sizeof hi, format, v[n - 1]);
    snprintf(out, cap, "%s (%s-%s)", med, lo, hi);
}

int main(int argc, char **argv)
{
    if (model_blas_reexec(argv) < 0)
        fprintf(stderr, "activation_speed: %s (continuing)\n", imgset_error());
    BenchModel bm = {"cnn-small", 1, 28, 28, 10, 128, 2, 7, 2560};
    for (int i = 1; i < argc; i++)
        if (!bench_model_option(&bm, argc, argv, &i)) {
            fprintf(stderr, "usage: activation_speed [--arch A] [--shape CxHxW] [--classes K] "
                            "[--batch B] [--threads T] [--runs R] [--images N]\n");
            return 2;
        }
    const char *arch = bm.arch;
    int C = bm.C, H = bm.H, W = bm.W, K = bm.K, batch = bm.batch, threads = bm.threads;
    int rounds = bm.runs, images = bm.images;
    if (rounds < 1 || rounds > MAX_ROUNDS || batch < 1 || images < batch) {
        fprintf(stderr, "activation_speed: need 1..%d rounds and --images >= --batch >= 1\n",
                MAX_ROUNDS);
        return 2;
    }
    Model *models[VARIANTS];
    for (int v = 0; v < VARIANTS; v++) {
        ModelSpec spec;
        model_spec_default(&spec, arch, C, H, W, K);
        spec.activation = variants[v].activation;
        spec.leaky_slope = variants[v].slope;
        models[v] = model_create_spec(&spec, batch, 1);
        if (!models[v] || model_set_threads(models[v], threads) < 0) {
            fprintf(stderr, "activation_speed: %s\n", imgset_error());
            return 1;
        }
    }
    size_t n = (size_t)batch * C * H * W;
    float *x = malloc(n * sizeof(float));
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)batch);
    Rng rng = rng_make(1, 0);
    for (size_t i = 0; i < n; i++)
        x[i] = rng_normal(&rng);
    for (int i = 0; i < batch; i++)
        labels[i] = (int32_t)rng_below(&rng, (uint64_t)K);
    int steps = images / batch;
    static double rate[VARIANTS][MAX_ROUNDS], ratio[VARIANTS][MAX_ROUNDS];
    for (int v = 0; v < VARIANTS; v++)   /* warm-up: caches, page faults, thread start */
        train_rate(models[v], x, labels, batch, 2);
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < VARIANTS; k++) {
            int v = (k + r) % VARIANTS;
            rate[v][r] = train_rate(models[v], x, labels, batch, steps);
        }
        for (int v = 0; v < VARIANTS; v++)
            ratio[v][r] = rate[v][r] / rate[0][r];
    }
    char cpu[256];
    bench_cpu_name(cpu, sizeof cpu);
    printf("machine: %s; OpenBLAS core %s; load average %.2f after the runs\n", cpu,
           model_blas_core(), bench_load_average());
    printf("%s %dx%dx%d, %d classes, batch %d, %d threads: training images/s, %d rounds of %d "
           "images per variant, in rotating order\n\n", arch, C, H, W, K, batch, threads,
           rounds, steps * batch);
    printf("| activation | images/s, median (min-max) | / relu, median (min-max) |\n");
    printf("|---|---|---|\n");
    for (int v = 0; v < VARIANTS; v++) {
        char a[96], b[96];
        spread(a, sizeof a, rate[v], rounds, "%.0f");
        spread(b, sizeof b, ratio[v], rounds, "%.3f");
        printf("| %s | %s | %s |\n", variants[v].name, a, b);
    }
    for (int v = 0; v < VARIANTS; v++)
        model_free(models[v]);
    free(x);
    free(labels);
    return 0;
}
