/* test_generate.c — the synthetic generator: shapes, determinism, order, labels, sizes. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "generate.h"
#include "tap.h"

#define BIG (512 * 512 * 3)

/* FNV-1a over an image's bytes, its shape and label. */
static uint64_t image_hash(const uint8_t *pixels, ImageShape shape, int32_t label)
{
    uint64_t h = 1469598103934665603ull;
    size_t n = image_shape_bytes(shape);
    for (size_t i = 0; i < n; i++)
        h = (h ^ pixels[i]) * 1099511628211ull;
    h = (h ^ (uint64_t)shape.height) * 1099511628211ull;
    h = (h ^ (uint64_t)shape.width) * 1099511628211ull;
    return (h ^ (uint64_t)label) * 1099511628211ull;
}

/* Hash of image i of split s; 0 on failure. */
static uint64_t hash_of(const Generator *g, int split, int64_t i, uint8_t *buf)
{
    ImageShape shape;
    int32_t label;
    if (generator_image(g, split, i, buf, BIG, &shape, &label) < 0)
        return 0;
    return image_hash(buf, shape, label);
}

static void test_shapes(void)
{
    const char *const *names = generate_shape_names();
    static const struct {
        const char *like;
        int64_t train, test;
        int32_t side, classes;
    } want[] = {{"cifar10", 50000, 10000, 32, 10},
                {"tinyimagenet", 100000, 10000, 64, 200},
                {"hires", 5000, 1000, 512, 10},
                {"mixed", 10000, 2000, 0, 10}};
    for (int i = 0; i < 4; i++) {
        GenerateShape s;
        ok(names[i] && strcmp(names[i], want[i].like) == 0, "shape name %d is %s", i,
           want[i].like);
        ok(generate_shape_defaults(want[i].like, &s) == 0 && s.train == want[i].train &&
               s.test == want[i].test && s.image.height == want[i].side &&
               s.image.width == want[i].side && s.image.channels == 3 &&
               s.num_classes == want[i].classes,
           "%s defaults: %lld/%lld, %dx%dx3, %d classes", want[i].like,
           (long long)want[i].train, (long long)want[i].test, want[i].side, want[i].side,
           want[i].classes);
    }
    ok(names[4] == NULL, "four shape names");
    GenerateShape s;
    ok(generate_shape_defaults("mixed", &s) == 0 && s.min_side == 48 && s.max_side == 512,
       "mixed sides 48..512");
    ok(generate_shape_defaults("imagenet", &s) < 0 && strstr(imgset_error(), "imagenet"),
       "unknown shape fails naming it: %s", imgset_error());
    GenerateParams bad = {"cifar100", 10, 10, 1};
    ok(generate_open(&bad) == NULL && strstr(imgset_error(), "cifar100"),
       "generate_open(cifar100) fails: %s", imgset_error());
    bad.like = NULL;
    ok(generate_open(&bad) == NULL, "generate_open(NULL shape) fails");
}

static void test_store_info(void)
{
    GenerateParams p = {"cifar10", -1, -1, 7};
    Store *s = generate_open(&p);
    ok(s != NULL, "generate_open(cifar10, defaults)");
    if (!s)
        return;
    const DatasetInfo *info = &s->info;
    ok(strcmp(info->name, "cifar10") == 0, "name is the shape name");
    ok(info->split[SPLIT_TRAIN].count == 50000 && info->split[SPLIT_TEST].count == 10000,
       "negative counts mean the defaults");
    ok(info->num_classes == 10 && strcmp(info->class_names[0], "cls000") == 0 &&
           strcmp(info->class_names[9], "cls009") == 0,
       "class names cls000..cls009");
    ok(image_shape_equal(info->split[SPLIT_TRAIN].shape, (ImageShape){32, 32, 3}),
       "train split is fixed 32x32x3");
    store_close(s);

    GenerateParams q = {"tinyimagenet", 3, 0, 7};
    s = generate_open(&q);
    ok(s && s->info.split[SPLIT_TRAIN].count == 3 && s->info.split[SPLIT_TEST].count == 0 &&
           s->info.num_classes == 200 && strcmp(s->info.class_names[199], "cls199") == 0,
       "tinyimagenet with 3/0 images, 200 classes");
    if (s) {
        uint8_t *buf = malloc(64 * 64 * 3);
        ImageShape shape;
        int32_t label;
        ok(store_read_image(s, SPLIT_TRAIN, 2, buf, 64 * 64 * 3, &shape, &label) == 0 &&
               image_shape_equal(shape, (ImageShape){64, 64, 3}) && label >= 0 && label < 200,
           "read a tinyimagenet image through the store");
        ok(store_read_image(s, SPLIT_TRAIN, 3, buf, 64 * 64 * 3, &shape, &label) < 0,
           "index past the count fails: %s", imgset_error());
        ok(store_read_image(s, SPLIT_TEST, 0, buf, 64 * 64 * 3, &shape, &label) < 0,
           "empty test split has no image 0");
        ok(store_read_image(s, SPLIT_TRAIN, 0, buf, 100, &shape, &label) < 0 &&
               strstr(imgset_error(), "100"),
           "a too small buffer fails: %s", imgset_error());
        free(buf);
    }
    store_close(s);
}

static void test_determinism(void)
{
    uint8_t *a = malloc(BIG), *b = malloc(BIG);
    GenerateParams p = {"cifar10", 100, 50, 42};
    Generator *g1 = generator_new(&p), *g2 = generator_new(&p);
    p.seed = 43;
    Generator *g3 = generator_new(&p);
    int same = 1, differ = 0;
    for (int split = 0; split < SPLIT_COUNT; split++)
        for (int64_t i = 0; i < 50; i++) {
            uint64_t h1 = hash_of(g1, split, i, a), h2 = hash_of(g2, split, i, b);
            same &= h1 == h2 && memcmp(a, b, 32 * 32 * 3) == 0;
            differ += hash_of(g3, split, i, b) != h1;
        }
    ok(same, "same seed: the same bytes for 100 images");
    ok(differ == 100, "another seed: different images (%d of 100 differ)", differ);
    ok(hash_of(g1, SPLIT_TRAIN, 0, a) != hash_of(g1, SPLIT_TEST, 0, b),
       "train image 0 differs from test image 0");
    ok(hash_of(g1, SPLIT_TRAIN, 0, a) != hash_of(g1, SPLIT_TRAIN, 1, b),
       "train image 0 differs from train image 1");

    /* Any order: images made in reverse and in a scattered order match the forward pass. */
    uint64_t forward[100];
    for (int64_t i = 0; i < 100; i++)
        forward[i] = hash_of(g1, SPLIT_TRAIN, i, a);
    int reverse_ok = 1, scatter_ok = 1;
    for (int64_t i = 99; i >= 0; i--)
        reverse_ok &= hash_of(g2, SPLIT_TRAIN, i, a) == forward[i];
    for (int64_t k = 0; k < 100; k++) {
        int64_t i = (k * 37 + 11) % 100;
        scatter_ok &= hash_of(g2, SPLIT_TRAIN, i, a) == forward[i];
    }
    ok(reverse_ok, "reverse order gives the same images");
    ok(scatter_ok, "scattered order gives the same images");

    /* Bigger counts do not change the first images (image i depends on (seed, split, i)). */
    GenerateParams more = {"cifar10", 1000, 1000, 42};
    Generator *g4 = generator_new(&more);
    ok(g4 && hash_of(g4, SPLIT_TRAIN, 5, a) == forward[5],
       "the count does not change image 5");

    /* Through the store: the same bytes as the generator. */
    GenerateParams sp = {"cifar10", 100, 50, 42};
    Store *s = generate_open(&sp);
    ImageShape shape;
    int32_t label;
    ok(s && store_read_image(s, SPLIT_TRAIN, 17, a, BIG, &shape, &label) == 0 &&
           image_hash(a, shape, label) == forward[17],
       "store_read_image matches generator_image");
    store_close(s);

    ImageShape sh;
    ok(generator_image_shape(g1, SPLIT_TRAIN, 100, &sh) < 0 && strstr(imgset_error(), "100"),
       "generator index out of range fails: %s", imgset_error());
    ok(generator_image(g1, 2, 0, a, BIG, &sh, &label) < 0, "bad split number fails");
    generator_free(g1);
    generator_free(g2);
    generator_free(g3);
    generator_free(g4);
    free(a);
    free(b);
}

/* Threads: two threads generating interleaved halves agree with one thread. */
typedef struct ThreadJob {
    const Generator *g;
    int start;
    uint64_t *hashes;   /* (100) */
} ThreadJob;

static void *thread_main(void *arg)
{
    ThreadJob *job = arg;
    uint8_t *buf = malloc(BIG);
    for (int i = job->start; i < 100; i += 2)
        job->hashes[i] = hash_of(job->g, SPLIT_TEST, i, buf);
    free(buf);
    return NULL;
}

static void test_threads(void)
{
    GenerateParams p = {"mixed", 0, 100, 5};
    Generator *g = generator_new(&p);
    uint64_t serial[100], parallel[100];
    uint8_t *buf = malloc(BIG);
    for (int i = 0; i < 100; i++)
        serial[i] = hash_of(g, SPLIT_TEST, i, buf);
    free(buf);
    ThreadJob jobs[2] = {{g, 0, parallel}, {g, 1, parallel}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, thread_main, &jobs[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    ok(memcmp(serial, parallel, sizeof serial) == 0,
       "two threads on one generator give the same mixed images as one");
    generator_free(g);
}

static void test_labels(void)
{
    GenerateParams p = {"cifar10", 2000, 10, 3};
    Generator *g = generator_new(&p);
    uint8_t *buf = malloc(BIG);
    int counts[10] = {0}, sorted = 1, previous = -1;
    long long zeros = 0, saturated = 0, total = 0, sum = 0;
    for (int64_t i = 0; i < 2000; i++) {
        ImageShape shape;
        int32_t label;
        if (generator_image(g, SPLIT_TRAIN, i, buf, BIG, &shape, &label) < 0 || label < 0 ||
            label > 9)
            break;
        counts[label]++;
        sorted &= label >= previous;
        previous = label;
        if (i < 200)
            for (size_t k = 0; k < 32 * 32 * 3; k++) {
                zeros += buf[k] == 0;
                saturated += buf[k] == 255;
                sum += buf[k];
                total++;
            }
    }
    int min = 2000, max = 0;
    for (int c = 0; c < 10; c++) {
        min = counts[c] < min ? counts[c] : min;
        max = counts[c] > max ? counts[c] : max;
    }
    ok(min >= 140 && max <= 260, "2000 labels cover all 10 classes evenly (%d..%d per class)",
       min, max);
    ok(!sorted, "labels come in random order, not sorted");
    double mean = (double)sum / (double)total;
    ok(mean > 100 && mean < 156, "mean pixel %.1f is mid-grey", mean);
    ok((zeros + saturated) * 12 < total, "under 8%% of pixels clipped (%lld of %lld)",
       zeros + saturated, total);

    GenerateParams t = {"tinyimagenet", 4000, 0, 3};
    Generator *tg = generator_new(&t);
    static int seen[200];
    int distinct = 0;
    for (int64_t i = 0; i < 4000; i++) {
        ImageShape shape;
        int32_t label;
        if (generator_image_shape(tg, SPLIT_TRAIN, i, &shape) < 0 ||
            generator_image(tg, SPLIT_TRAIN, i, buf, BIG, &shape, &label) < 0)
            break;
        if (label >= 0 && label < 200 && !seen[label]++)
            distinct++;
    }
    ok(distinct == 200, "4000 tinyimagenet labels cover all 200 classes (%d seen)", distinct);
    generator_free(tg);
    generator_free(g);
    free(buf);
}

static void test_mixed(void)
{
    GenerateParams p = {"mixed", 300, 5, 9};
    Store *s = generate_open(&p);
    ok(s && !split_is_fixed(&s->info.split[SPLIT_TRAIN]), "mixed split is ragged");
    if (!s)
        return;
    uint8_t *buf = malloc(BIG);
    int in_range = 1, agree = 1, non_square = 0, small = 0, large = 0;
    int32_t min_h = 1 << 30, max_h = 0, min_w = 1 << 30, max_w = 0;
    for (int64_t i = 0; i < 300; i++) {
        ImageShape announced, shape;
        int32_t label;
        if (store_image_shape(s, SPLIT_TRAIN, i, &announced) < 0 ||
            store_read_image(s, SPLIT_TRAIN, i, buf, BIG, &shape, &label) < 0) {
            agree = 0;
            break;
        }
        agree &= image_shape_equal(announced, shape);
        in_range &= shape.height >= 48 && shape.height <= 512 && shape.width >= 48 &&
                    shape.width <= 512 && shape.channels == 3;
        non_square += shape.height != shape.width;
        small += shape.height < 100;
        large += shape.height > 300;
        min_h = shape.height < min_h ? shape.height : min_h;
        max_h = shape.height > max_h ? shape.height : max_h;
        min_w = shape.width < min_w ? shape.width : min_w;
        max_w = shape.width > max_w ? shape.width : max_w;
    }
    ok(agree, "image_shape() agrees with the image read");
    ok(in_range, "every side within 48..512 (heights %d..%d, widths %d..%d)", min_h, max_h,
       min_w, max_w);
    ok(non_square > 250, "height and width drawn independently (%d of 300 not square)",
       non_square);
    ok(small > 50 && large > 30, "log-uniform sides: %d below 100, %d above 300", small, large);
    ImageShape shape;
    int32_t label;
    ok(store_read_image(s, SPLIT_TRAIN, 0, buf, 48 * 48 * 3 - 1, &shape, &label) < 0,
       "a buffer smaller than the image fails: %s", imgset_error());
    store_close(s);

    GenerateParams h = {"hires", 1, 1, 9};
    Generator *g = generator_new(&h);
    long long sum = 0, sum2 = 0;
    ok(g && generator_image(g, SPLIT_TEST, 0, buf, BIG, &shape, &label) == 0 &&
           image_shape_equal(shape, (ImageShape){512, 512, 3}),
       "hires image is 512x512x3");
    for (size_t k = 0; k < (size_t)BIG; k++) {
        sum += buf[k];
        sum2 += (long long)buf[k] * buf[k];
    }
    double mean = (double)sum / BIG, var = (double)sum2 / BIG - mean * mean;
    ok(var > 100 && var < 6000, "hires pixels vary (mean %.1f, sd %.1f)", mean, sqrt(var));
    generator_free(g);
    free(buf);
}

int main(void)
{
    test_shapes();
    test_store_info();
    test_determinism();
    test_threads();
    test_labels();
    test_mixed();
    return tap_done();
}
