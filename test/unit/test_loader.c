/* test_loader.c — sampler rules (sharding, drop-last, resume), transforms, and the loader:
 * the same batches with any worker count, errors that name the index, no hang at close. */
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "generate.h"
#include "loader.h"
#include "sampler.h"
#include "store.h"
#include "tap.h"
#include "transform.h"

static char scratch[] = "/tmp/imgset-test-loader.XXXXXX";

/* One sharded epoch checked against the contract of sampler.h: equal images and batches on
 * every rank, short batches only last (none with drop-last), ranks disjoint, together the
 * permutation's positions below world * floor(n / world), and the ranks' batch b together
 * the world-1 batch b of size batch * world cut at that bound. Returns 1 when it holds. */
static int sharded_epoch_holds(uint64_t n, int world, int batch, int drop_last, uint64_t epoch)
{
    uint64_t kept = (uint64_t)world * (n / (uint64_t)world);
    int64_t want_batches = drop_last ? (int64_t)(n / world / batch)
                                     : (int64_t)((n / world + batch - 1) / batch);
    Sampler ranks[8], whole;
    SamplerOptions wo = {n, batch * world, 1, 0, 9, 0, 1};
    if (world > 8 || sampler_init(&whole, &wo) < 0)
        return 0;
    sampler_set_epoch(&whole, epoch);
    for (int r = 0; r < world; r++) {
        SamplerOptions o = {n, batch, 1, drop_last, 9, r, world};
        if (sampler_init(&ranks[r], &o) < 0 || ranks[r].batches != want_batches ||
            ranks[r].rank_count != n / world)
            return 0;
        sampler_set_epoch(&ranks[r], epoch);
    }
    int *seen = calloc(n + 1, sizeof *seen);
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)batch * world), *union_ids = idx;
    int64_t one[64];
    uint64_t images[8] = {0};
    int holds = seen && idx;
    for (int64_t b = 0; holds && b < want_batches; b++) {
        int in_union = 0;
        for (int r = 0; r < world; r++) {
            int got = sampler_batch(&ranks[r], b, one);
            holds &= got == batch || (!drop_last && b == want_batches - 1 && got > 0);
            for (int i = 0; i < got && holds; i++) {
                holds &= one[i] >= 0 && (uint64_t)one[i] < n && seen[one[i]]++ == 0;
                union_ids[in_union++] = one[i];
            }
            images[r] += got > 0 ? (uint64_t)got : 0;
        }
        /* World 1, batch size batch * world: the same batch b, positions cut at `kept`. */
        int64_t ref[64 * 8];
        int nref = sampler_batch(&whole, b, ref);
        uint64_t first = (uint64_t)b * batch * world;
        if (nref > 0 && first + (uint64_t)nref > kept)
            nref = (int)(kept - first);
        holds &= nref == in_union;
        for (int i = 0; i < nref && holds; i++) {
            int found = 0;
            for (int j = 0; j < in_union; j++)
                found |= union_ids[j] == ref[i];
            holds &= found;
        }
    }
    for (int r = 0; r < world; r++)
        holds &= images[r] == (drop_last ? (uint64_t)want_batches * batch : n / world);
    if (!drop_last) {
        /* Covered: exactly the permutation's positions below `kept`; the tail never. */
        for (uint64_t p = 0; p < n && holds; p++)
            holds &= seen[permutation_at(&whole.perm, p)] == (p < kept);
        holds &= sampler_batch(&ranks[0], want_batches, one) < 0;
    }
    free(seen);
    free(idx);
    return holds;
}

static void test_sharding(void)
{
    /* Counts where floor(n / w) != ceil(n / w) for every world 2-5, and some where not. */
    const uint64_t counts[] = {0, 1, 7, 23, 59, 60, 101, 1001};
    for (int world = 1; world <= 5; world++)
        for (int drop_last = 0; drop_last <= 1; drop_last++) {
            int holds = 1;
            for (size_t a = 0; a < sizeof counts / sizeof counts[0]; a++)
                for (uint64_t epoch = 0; epoch < 3; epoch++)
                    holds &= sharded_epoch_holds(counts[a], world, 4, drop_last, epoch);
            ok(holds, "world %d, %s: each rank floor(n/%d) images in equal batches, disjoint, "
               "all but the tail covered, batch b = world-1 batch b (8 sizes n, 3 epochs)",
               world, drop_last ? "drop-last" : "keep-last", world);
        }
    ok(sharded_epoch_holds(1001, 8, 16, 0, 2) && sharded_epoch_holds(1001, 8, 16, 1, 2),
       "world 8, batches of 16 over 1001 images: the contract holds");

    /* The tail is the permutation's last n mod w positions: other images each epoch. */
    Permutation p0, p1;
    permutation_init(&p0, 23, 9, 0);
    permutation_init(&p1, 23, 9, 1);
    int tails_differ = 0;
    for (uint64_t q = 20; q < 23; q++) {
        int in_other = 0;
        for (uint64_t t = 20; t < 23; t++)
            in_other |= permutation_at(&p0, q) == permutation_at(&p1, t);
        tails_differ |= !in_other;
    }
    ok(tails_differ, "23 images, world 5: epochs 0 and 1 drop different images");

    Sampler s0, s1;
    SamplerOptions o0 = {1000, 64, 1, 1, 5, 0, 3}, o1 = {1000, 64, 1, 1, 5, 2, 3};
    sampler_init(&s0, &o0);
    sampler_init(&s1, &o1);
    ok(s0.batches == 5 && s1.batches == 5, "drop-last: every rank gets floor(333/64) = 5 batches");
    int64_t idx[64];
    ok(sampler_batch(&s0, 4, idx) == 64, "drop-last: the last batch is full");
    SamplerOptions o2 = {1000, 64, 1, 0, 5, 0, 1};
    sampler_init(&s0, &o2);
    ok(s0.batches == 16 && sampler_batch(&s0, 15, idx) == 1000 - 15 * 64,
       "keep-last: 16 batches, the last one short");
    ok(sampler_batch(&s0, 16, idx) < 0, "a batch past the end is refused");
    SamplerOptions bad = {10, 0, 1, 0, 5, 0, 1};
    ok(sampler_init(&s0, &bad) < 0 && strstr(imgset_error(), "batch size 0"),
       "batch size 0 is refused: %s", imgset_error());
    SamplerOptions bad_rank = {10, 4, 1, 0, 5, 3, 3};
    ok(sampler_init(&s0, &bad_rank) < 0 && strstr(imgset_error(), "rank 3"),
       "rank >= world is refused: %s", imgset_error());
    SamplerOptions plain = {10, 4, 0, 0, 5, 0, 1};
    sampler_init(&s0, &plain);
    ok(sampler_batch(&s0, 1, idx) == 4 && idx[0] == 4 && idx[3] == 7,
       "without shuffle batches follow dataset order");
}

static void test_transforms(void)
{
    uint8_t src[4 * 6 * 3], dst[4 * 6 * 3];
    for (size_t i = 0; i < sizeof src; i++)
        src[i] = (uint8_t)(i * 7);
    transform_resize(dst, 4, 6, src, 4, 6, 3);
    ok(memcmp(src, dst, sizeof src) == 0, "resize to the same size is the identity");

    uint8_t flat[8 * 8], small[4 * 4];
    memset(flat, 77, sizeof flat);
    transform_resize(small, 4, 4, flat, 8, 8, 1);
    int all = 1;
    for (int i = 0; i < 16; i++)
        all &= small[i] == 77;
    ok(all, "resizing a flat image keeps its value");

    /* A 2x4 image, centre-cropped to 2x2 after no scaling: the middle columns. */
    uint8_t wide[2 * 4] = {1, 2, 3, 4, 5, 6, 7, 8}, crop[4], scr[64];
    transform_resize_crop(crop, 2, 2, wide, (ImageShape){2, 4, 1}, scr);
    ok(crop[0] == 2 && crop[1] == 3 && crop[2] == 6 && crop[3] == 7,
       "center crop takes the middle");
    uint8_t tall[8 * 2], out[4 * 4];
    memset(tall, 9, sizeof tall);
    ok(transform_resize_crop_scratch((ImageShape){8, 2, 1}, 4, 4) == 16 * 4,
       "scratch size for an upscale to cover 4x4 is 16x4");
    transform_resize_crop(out, 4, 4, tall, (ImageShape){8, 2, 1}, scr);
    ok(out[0] == 9 && out[15] == 9, "resize-crop of a tall image covers the target");

    uint8_t img[3 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, aug[9];
    Rng r = rng_make(1, 1);
    transform_random_crop_flip(aug, img, 3, 3, 1, 0, 0, &r);
    ok(memcmp(aug, img, 9) == 0, "random crop with padding 0 and no flip is the identity");
    int flipped = 0;
    for (int t = 0; t < 20; t++) {
        transform_random_crop_flip(aug, img, 3, 3, 1, 0, 1, &r);
        flipped |= aug[0] == 3 && aug[2] == 1;
    }
    ok(flipped, "flip mirrors rows");

    uint8_t px[2 * 1 * 1 * 2] = {0, 255, 255, 0};
    float f[4];
    float mean[2] = {0.5f, 0.5f}, std[2] = {0.5f, 0.5f};
    transform_to_float(f, px, 2, 1, 1, 2, mean, std);
    ok(f[0] == -1.0f && f[1] == 1.0f && f[2] == 1.0f && f[3] == -1.0f,
       "to_float maps 0..255 to -1..1 and goes channels-first");

    /* The RGB fast path gives exactly (x * (1 / (255 std)) + (-mean / std)), channels-first. */
    enum { N = 2, H = 5, W = 7 };
    uint8_t rgb[N * H * W * 3];
    float fast[N * 3 * H * W], m3[3] = {0.4914f, 0.4822f, 0.4465f}, s3[3] = {0.247f, 0.243f, 0.261f};
    for (size_t i = 0; i < sizeof rgb; i++)
        rgb[i] = (uint8_t)(i * 37 + 11);
    transform_to_float(fast, rgb, N, H, W, 3, m3, s3);
    int same = 1;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 3; k++) {
            volatile float a = 1.0f / (255.0f * s3[k]), b = -m3[k] / s3[k];
            for (int p = 0; p < H * W; p++) {
                volatile float prod = (float)rgb[(i * H * W + p) * 3 + k] * a;
                same &= fast[(i * 3 + k) * H * W + p] == prod + b;
            }
        }
    ok(same, "RGB to_float equals the per-element formula bit for bit, channels-first");
}

/* Threads of this process (/proc/self/task), or -1. */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return d ? n : -1;
}

/* Read every batch of an epoch and digest indices + labels + pixels. */
static uint64_t epoch_digest(const char *uri, int workers, uint64_t epoch, int64_t start,
                             int augment, int64_t *images)
{
    LoaderOptions o;
    loader_options_default(&o);
    o.batch_size = 32;
    o.workers = workers;
    o.augment = augment;
    o.want_float = 1;
    o.seed = 11;
    Loader *l = loader_open(uri, &o);
    if (!l)
        return 0;
    uint64_t h = 1469598103934665603ull;
    *images = 0;
    if (loader_start_epoch(l, epoch, start) == 0) {
        const Batch *b;
        while (loader_next(l, &b) == 1) {
            const uint8_t *parts[3] = {(const uint8_t *)b->indices, (const uint8_t *)b->labels,
                                       b->pixels};
            size_t sizes[3] = {b->count * sizeof(int64_t), b->count * sizeof(int32_t),
                               b->count * image_shape_bytes(b->shape)};
            for (int p = 0; p < 3; p++)
                for (size_t i = 0; i < sizes[p]; i++)
                    h = (h ^ parts[p][i]) * 1099511628211ull;
            *images += b->count;
        }
    }
    loader_close(l);
    return h;
}

static void test_loader(void)
{
    char uri[256], mixed_uri[256];
    snprintf(uri, sizeof uri, "mmap:%s/c", scratch);
    snprintf(mixed_uri, sizeof mixed_uri, "mmap:%s/m", scratch);
    GenerateParams p = {"cifar10", 300, 50, 3}, pm = {"mixed", 40, 5, 3};
    if (!ok(store_copy(generate_open(&p), uri, NULL, NULL) == 0 &&
                store_copy(generate_open(&pm), mixed_uri, NULL, NULL) == 0,
            "make test stores: %s", imgset_error()))
        return;
    int64_t n0, n1, n3;
    uint64_t d0 = epoch_digest(uri, 0, 1, 0, 1, &n0);
    uint64_t d1 = epoch_digest(uri, 1, 1, 0, 1, &n1);
    uint64_t d3 = epoch_digest(uri, 3, 1, 0, 1, &n3);
    ok(d0 && d0 == d1 && d1 == d3 && n0 == 300 && n3 == 300,
       "0, 1 and 3 workers give the same batches (augmented epoch of 300)");
    int64_t n;
    ok(epoch_digest(uri, 2, 2, 0, 1, &n) != d0, "another epoch gives other batches");

    /* Resume: batches 3.. of epoch 1 equal the tail of a full epoch 1. */
    LoaderOptions o;
    loader_options_default(&o);
    o.batch_size = 32;
    o.workers = 2;
    Loader *l = loader_open(uri, &o);
    int64_t full[400], resumed[400];
    int nfull = 0, nres = 0;
    const Batch *b;
    loader_start_epoch(l, 1, 0);
    while (loader_next(l, &b) == 1)
        for (int i = 0; i < b->count; i++)
            full[nfull++] = b->indices[i];
    loader_start_epoch(l, 1, 3);
    while (loader_next(l, &b) == 1)
        for (int i = 0; i < b->count; i++)
            resumed[nres++] = b->indices[i];
    ok(nres == nfull - 3 * 32 && memcmp(resumed, full + 3 * 32, nres * sizeof(int64_t)) == 0,
       "resuming at batch 3 continues with the same images");
    ok(loader_start_epoch(l, 1, 99) < 0, "resuming past the end is refused");
    /* Close in the middle of an epoch: the workers stop and are joined, and close returns (a
     * hang fails the test through the alarm instead of stopping the suite). */
    loader_close(l);
    int threads_before = thread_count();
    o.workers = 3;
    l = loader_open(uri, &o);
    int running = l && loader_start_epoch(l, 2, 0) == 0 && loader_next(l, &b) == 1 &&
                  thread_count() == threads_before + 3;
    tap_deadline(60, "closing mid-epoch");
    loader_close(l);
    tap_deadline(120, "test_loader");
    ok(running && thread_count() == threads_before,
       "closing mid-epoch returns and joins its 3 workers (%d threads, %d before the loader)",
       thread_count(), threads_before);

    /* Mixed sizes need a target size; with one, every image comes out at that size. */
    loader_options_default(&o);
    o.batch_size = 8;
    ok(loader_open(mixed_uri, &o) == NULL && strstr(imgset_error(), "mixed image sizes"),
       "mixed sizes without a target size are refused: %s", imgset_error());
    o.height = o.width = 40;
    o.workers = 2;
    l = loader_open(mixed_uri, &o);
    int64_t count = 0;
    int shapes_ok = l != NULL;
    if (l) {
        loader_start_epoch(l, 0, 0);
        while (loader_next(l, &b) == 1) {
            count += b->count;
            shapes_ok &= b->shape.height == 40 && b->shape.width == 40 && b->shape.channels == 3;
        }
        loader_close(l);
    }
    ok(shapes_ok && count == 40, "mixed sizes resized and cropped to 40x40 (%lld images)",
       (long long)count);

    /* A corrupt store mid-epoch: the error names the store, split and index. */
    char path[512];
    snprintf(path, sizeof path, "%s/c/train_labels.npy", scratch);
    loader_options_default(&o);
    o.batch_size = 32;
    o.workers = 2;
    o.shuffle = 0;
    l = loader_open(uri, &o);
    FILE *f = fopen(path, "r+b");
    /* Label 200 at index 70 (labels are int64 after a 128- or 192-byte header). */
    struct stat st;
    stat(path, &st);
    long header = (long)st.st_size - 300 * 8;
    fseek(f, header + 70 * 8, SEEK_SET);
    int64_t bad_label = 200;
    fwrite(&bad_label, 8, 1, f);
    fclose(f);
    loader_close(l);
    l = loader_open(uri, &o);
    int rc = 0;
    if (l) {
        loader_start_epoch(l, 0, 0);
        while ((rc = loader_next(l, &b)) == 1)
            ;
        loader_close(l);
    }
    ok((l == NULL || rc < 0) && strstr(imgset_error(), "70") && strstr(imgset_error(), "label"),
       "a bad label at index 70 is an error naming it: %s", imgset_error());
}

/* Release kept batches from another thread. */
typedef struct ReleaseJob {
    LoaderKept **kept;
    int n;
} ReleaseJob;

static void *release_all(void *arg)
{
    ReleaseJob *job = arg;
    for (int i = 0; i < job->n; i++)
        loader_release(job->kept[i]);
    return NULL;
}

/* Kept batches: more than the ring holds stay unchanged, come back from any thread, and
 * survive loader_close(); a reader that releases each batch at once keeps the pool small. */
static void test_keep(void)
{
    char uri[256];
    snprintf(uri, sizeof uri, "mmap:%s/k", scratch);
    enum { BATCHES = 10, BATCH = 30 };   /* 300 images */
    GenerateParams p = {"cifar10", 300, 10, 5};
    if (!ok(store_copy(generate_open(&p), uri, NULL, NULL) == 0, "make a test store: %s",
            imgset_error()))
        return;
    LoaderOptions o;
    loader_options_default(&o);
    o.batch_size = BATCH;
    o.workers = 2;
    o.slots = 2;
    o.seed = 4;
    Loader *l = loader_open(uri, &o);
    if (!ok(l != NULL, "open a loader with 2 slots: %s", imgset_error()))
        return;
    size_t image_bytes = 32 * 32 * 3;
    LoaderKept *kept[BATCHES];
    Batch batches[BATCHES];
    uint8_t *copies = malloc((size_t)BATCHES * BATCH * image_bytes);
    int n = 0;
    const Batch *b;
    loader_start_epoch(l, 0, 0);
    while (n < BATCHES && loader_next(l, &b) == 1) {
        if (!(kept[n] = loader_keep(l, &batches[n])))
            break;
        memcpy(copies + (size_t)n * BATCH * image_bytes, batches[n].pixels,
               (size_t)batches[n].count * image_bytes);
        n++;
    }
    ok(n == BATCHES, "keep all %d batches of an epoch with a ring of 2", BATCHES);
    ok(loader_keep(l, &batches[0]) == NULL, "a batch is kept once: %s", imgset_error());
    int nkept, nspare;
    loader_buffer_counts(l, &nkept, &nspare);
    ok(nkept == BATCHES && nspare == 0, "the pool counts %d kept batches (%d spare)", nkept,
       nspare);
    /* Read the epoch again: the ring's fresh buffers must not be the kept ones. */
    loader_start_epoch(l, 1, 0);
    while (loader_next(l, &b) == 1)
        ;
    int same = 1;
    for (int i = 0; i < n; i++)
        same &= memcmp(copies + (size_t)i * BATCH * image_bytes, batches[i].pixels,
                       (size_t)batches[i].count * image_bytes) == 0 &&
                batches[i].epoch == 0 && batches[i].number == i;
    ok(same, "kept batches are unchanged after another epoch went through the ring");

    pthread_t thread;
    ReleaseJob job = {kept, n / 2};
    pthread_create(&thread, NULL, release_all, &job);
    pthread_join(thread, NULL);
    loader_buffer_counts(l, &nkept, &nspare);
    ok(nkept == n - n / 2 && nspare <= 2,
       "released on another thread: %d kept, %d spare (at most one ring's worth)", nkept,
       nspare);
    loader_close(l);
    same = 1;
    for (int i = n / 2; i < n; i++)
        same &= memcmp(copies + (size_t)i * BATCH * image_bytes, batches[i].pixels,
                       (size_t)batches[i].count * image_bytes) == 0;
    ok(same, "kept batches stay valid after loader_close()");
    for (int i = n / 2; i < n; i++)
        loader_release(kept[i]);   /* after close: the pool is freed with the last one */
    free(copies);

    /* Keep and release each batch before the next: the pool stays at ring + 1. */
    l = loader_open(uri, &o);
    int most_spare = 0, total = 0;
    loader_start_epoch(l, 0, 0);
    LoaderKept *previous = NULL;
    Batch held;
    while (loader_next(l, &b) == 1) {
        LoaderKept *k = loader_keep(l, &held);
        loader_release(previous);
        previous = k;
        total += held.count;
        loader_buffer_counts(l, &nkept, &nspare);
        most_spare = nspare > most_spare ? nspare : most_spare;
    }
    loader_release(previous);
    loader_buffer_counts(l, &nkept, &nspare);
    ok(total == 300 && nkept == 0 && most_spare <= 1,
       "a reader that lets go of each batch: %d images, 0 kept, at most %d spare", total,
       most_spare);
    loader_close(l);
}

int main(void)
{
    if (!mkdtemp(scratch))
        return perror("mkdtemp"), 1;
    tap_deadline(120, "test_loader");   /* a loader that hangs fails instead of stalling */
    test_sharding();
    test_transforms();
    test_loader();
    test_keep();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", scratch);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", scratch);
    return tap_done();
}
