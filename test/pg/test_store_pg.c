/* test_store_pg.c — the postgresql:// store through the library (loaders/store_pg.c): write,
 * read back, refuse overwrites, leave nothing after an abort, sequential and random reads,
 * ragged sets; and the server's shuffle equals the client's sampler (loaders/sampler.c).
 * Prints TAP. Usage: test_store_pg BASE_URI   e.g. postgresql:///db?host=/tmp/x&port=5432 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "error.h"
#include "generate.h"
#include "permute.h"
#include "sampler.h"
#include "store.h"
#include "tap.h"
#include "transform.h"

static char base[1024];   /* the server's URI without dataset=, also its libpq conninfo */

/* base URI + "&dataset=NAME" in a static buffer. */
static const char *uri(const char *name)
{
    static char buf[2][1200];
    static int which;
    which ^= 1;
    snprintf(buf[which], sizeof buf[which], "%s%cdataset=%s", base, strchr(base, '?') ? '&' : '?',
             name);
    return buf[which];
}

/* 1 when every image and label of split in a equals those of b, read in `order`. */
static int same_split(Store *a, Store *b, int split, const int64_t *order, int64_t n)
{
    size_t cap = 4 << 20;
    uint8_t *x = malloc(cap), *y = malloc(cap);
    int same = 1;
    for (int64_t k = 0; k < n && same; k++) {
        int64_t i = order ? order[k] : k;
        ImageShape sa, sb;
        int32_t la, lb;
        if (store_read_image(a, split, i, x, cap, &sa, &la) < 0 ||
            store_read_image(b, split, i, y, cap, &sb, &lb) < 0) {
            printf("# read %s %" PRId64 ": %s\n", split_names[split], i, imgset_error());
            same = 0;
        } else if (!image_shape_equal(sa, sb) || la != lb ||
                   memcmp(x, y, image_shape_bytes(sa)) != 0) {
            printf("# %s image %" PRId64 " differs\n", split_names[split], i);
            same = 0;
        }
    }
    free(x);
    free(y);
    return same;
}

/* store_read_batch of ids[0..n-1] from pg (out.height 0), or store_read_batch_resized to
 * out, gives gen's images — through transform_resize_crop for out — and labels, in order. */
static int gather_matches(Store *gen, Store *pg, const int64_t *ids, int n, ImageShape out)
{
    static uint8_t image[512 * 512 * 3], scratch[1024 * 1024 * 3];
    int resize = out.height > 0;
    size_t bytes = image_shape_bytes(resize ? out : gen->info.split[SPLIT_TRAIN].shape);
    uint8_t *got = malloc((size_t)n * bytes), *want = malloc(bytes);
    int32_t *labels = malloc((size_t)n * sizeof *labels);
    int same = got && want && labels &&
               (resize ? store_read_batch_resized(pg, SPLIT_TRAIN, ids, n, out, got, labels)
                       : store_read_batch(pg, SPLIT_TRAIN, ids, n, got, labels)) == 0;
    if (!same)
        printf("# gather of %d: %s\n", n, imgset_error());
    for (int i = 0; same && i < n; i++) {
        ImageShape shape;
        int32_t label;
        same = store_read_image(gen, SPLIT_TRAIN, ids[i], image, sizeof image, &shape, &label) ==
                   0 && label == labels[i];
        if (same && resize && !image_shape_equal(shape, out)) {
            same = transform_resize_crop_scratch(shape, out.height, out.width) <= sizeof scratch;
            if (same)
                transform_resize_crop(want, out.height, out.width, image, shape, scratch);
        } else if (same)
            memcpy(want, image, bytes);
        same = same && memcmp(want, got + (size_t)i * bytes, bytes) == 0;
        if (!same)
            printf("# gathered image %d (id %lld) differs\n", i, (long long)ids[i]);
    }
    free(got);
    free(want);
    free(labels);
    return same;
}

/* n ids of a split of `count` images in a shuffled order (seed); the last repeats the first. */
static void shuffled_ids(int64_t *ids, int n, int64_t count, uint64_t seed)
{
    Permutation perm;
    permutation_init(&perm, (uint64_t)count, seed, 0);
    for (int i = 0; i < n - 1; i++)
        ids[i] = (int64_t)permutation_at(&perm, (uint64_t)i);
    ids[n - 1] = ids[0];
}

/* Generate `like` and copy it into the database as `name`; the generator stays open. */
static Store *load(const char *like, int64_t train, int64_t test, const char *name)
{
    GenerateParams p = {like, train, test, 11};
    Store *g = generate_open(&p);
    if (!g)
        return NULL;
    if (store_copy(g, uri(name), NULL, NULL) < 0) {
        store_close(g);
        return NULL;
    }
    return g;
}

/* Run one query on a fresh connection and return the first value (static buffer), or "". */
static const char *query(const char *sql)
{
    static char out[8192];
    out[0] = '\0';
    PGconn *c = PQconnectdb(base);
    PGresult *res = PQexec(c, sql);
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0)
        snprintf(out, sizeof out, "%s", PQgetvalue(res, 0, 0));
    else
        printf("# %s: %s", sql, PQerrorMessage(c));
    PQclear(res);
    PQfinish(c);
    return out;
}

/* imgset_batch's server-side resize + centre crop of a few mixed-size images against the
 * client loader's transform_resize_crop of the same images: equal byte for byte. */
static int server_resize_matches(Store *gen)
{
    enum { SIDE = 24, N = 5 };
    const int64_t ids[N] = {5, 0, 17, 39, 22};
    PGconn *c = PQconnectdb(base);
    PGresult *res = PQexecParams(c, "SELECT (imgset.imgset_batch('imgset.st_mixed_train', "
                                    "'{5,0,17,39,22}', 24, 24)).pixels",
                                 0, NULL, NULL, NULL, NULL, 1);
    size_t bytes = (size_t)N * SIDE * SIDE * 3;
    int same = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
               (size_t)PQgetlength(res, 0, 0) == bytes;
    if (!same)
        printf("# %s", PQerrorMessage(c));
    const uint8_t *got = same ? (const uint8_t *)PQgetvalue(res, 0, 0) : NULL;
    static uint8_t image[512 * 512 * 3], scratch[1024 * 1024 * 3], want[SIDE * SIDE * 3];
    for (int i = 0; same && i < N; i++) {
        ImageShape shape;
        int32_t label;
        same = store_read_image(gen, SPLIT_TRAIN, ids[i], image, sizeof image, &shape, &label) ==
                   0 && shape.channels == 3 &&
               transform_resize_crop_scratch(shape, SIDE, SIDE) <= sizeof scratch;
        if (same) {
            transform_resize_crop(want, SIDE, SIDE, image, shape, scratch);
            same = memcmp(want, got + (size_t)i * sizeof want, sizeof want) == 0;
            if (!same)
                printf("# image %lld (%dx%d) differs\n", (long long)ids[i], shape.height,
                       shape.width);
        }
    }
    PQclear(res);
    PQfinish(c);
    return same;
}

/* Stop store_copy after `limit` images (an interrupted load). */
static int stop_after(void *ctx, int64_t done, int64_t total)
{
    return done >= *(int64_t *)ctx;
}

/* A fixed-shape set: write, reopen, compare everything in order and out of order, gather.
 * Returns its generator (the later cases use it), or NULL when it could not be written. */
static Store *test_fixed_set(void)
{
    Store *gen = load("cifar10", 2500, 300, "st_cifar");
    ok(gen != NULL, "cifar10-like set (2500 + 300) written through postgresql://: %s",
       gen ? "" : imgset_error());
    Store *pg = store_open(uri("st_cifar"));
    ok(pg != NULL, "and opened again: %s", pg ? "" : imgset_error());
    if (!gen || !pg) {
        store_close(pg);
        store_close(gen);
        return NULL;
    }
    ok(pg->info.split[SPLIT_TRAIN].count == 2500 && pg->info.split[SPLIT_TEST].count == 300 &&
           pg->info.num_classes == 10 && strcmp(pg->info.class_names[3], "cls003") == 0 &&
           pg->info.split[SPLIT_TRAIN].shape.height == 32 &&
           pg->info.split[SPLIT_TRAIN].shape.channels == 3 && strcmp(pg->info.name, "st_cifar") == 0,
       "metadata: counts, class names, shape and name");
    ok(same_split(gen, pg, SPLIT_TRAIN, NULL, 2500) && same_split(gen, pg, SPLIT_TEST, NULL, 300),
       "every image and label reads back the same, sequentially");
    int64_t order[600];
    Permutation perm;
    permutation_init(&perm, 2500, 5, 0);
    for (int i = 0; i < 600; i++)   /* random jumps, runs and repeats */
        order[i] = i < 200 ? (int64_t)permutation_at(&perm, (uint64_t)i)
                 : i < 400 ? 1000 + (i - 200) : 1100 - (i - 400) / 3;
    ok(same_split(gen, pg, SPLIT_TRAIN, order, 600), "and in random, forward and backward order");
    /* The loaders' gather: one imgset_batch(split, ids) call, in the order asked. */
    int64_t ids[256];
    for (int i = 0; i < 256; i++)
        ids[i] = i == 255 ? ids[3] : (int64_t)permutation_at(&perm, (uint64_t)(i + 700));
    ok(gather_matches(gen, pg, ids, 256, (ImageShape){0, 0, 0}),
       "store_read_batch gathers 256 shuffled images (one repeated) in order");
    ok(same_split(gen, pg, SPLIT_TRAIN, NULL, 50), "sequential reads still work after a gather");
    int64_t bad[2] = {0, 2500};
    uint8_t *got = malloc(2 * 3072);
    int32_t got_labels[2];
    ok(store_read_batch(pg, SPLIT_TRAIN, bad, 2, got, got_labels) < 0 &&
           strstr(imgset_error(), "out of range"),
       "a gather with an index past the split is refused: %s", imgset_error());
    free(got);
    store_close(pg);
    return gen;
}

/* Large images: a gather of 25 512x512 images (19 MB) goes in several calls (at most 8 MB of
 * pixels each), and still comes back whole and in order. */
static void test_large_images(void)
{
    Store *big = load("hires", 30, 2, "st_hires");
    Store *pg = big ? store_open(uri("st_hires")) : NULL;
    ok(pg != NULL, "hires-like set (30 + 2 images of 512x512x3) written and opened: %s",
       pg ? "" : imgset_error());
    if (pg) {
        int64_t big_ids[25];
        shuffled_ids(big_ids, 25, 30, 8);
        ok(gather_matches(big, pg, big_ids, 25, (ImageShape){0, 0, 0}),
           "store_read_batch gathers 25 shuffled large images (one repeated) in order, in "
           "several calls");
    }
    store_close(pg);
    store_close(big);
}

/* "{id,id,…}" of batch `batch` of a sampler, as the server prints a bigint[]. */
static void sampler_ids_text(const Sampler *sampler, int64_t batch, char *out, size_t cap)
{
    int64_t ids[64];
    int n = sampler_batch(sampler, batch, ids);
    size_t used = (size_t)snprintf(out, cap, "{");
    for (int k = 0; k < n && used < cap; k++)
        used += (size_t)snprintf(out + used, cap - used, "%s%" PRId64, k ? "," : "", ids[k]);
    if (used < cap)
        snprintf(out + used, cap - used, "}");
}

/* The server's shuffle and sharding (imgset_batch of the st_cifar split, 2500 images) are the
 * client's sampler, and imgset_batch_count its batch count (loaders/sampler.h). */
static void test_server_sampler(void)
{
    int agree = 1;
    const int worlds[] = {1, 2, 3, 7};   /* 2500 % 3 and 2500 % 7: a tail is dropped */
    for (int w = 0; w < 4 && agree; w++)
        for (int world = worlds[w], rank = 0; rank < world && agree; rank++) {
            Sampler sampler;
            SamplerOptions so = {2500, 64, 1, 0, 77, rank, world};
            sampler_init(&sampler, &so);
            sampler_set_epoch(&sampler, 4);
            char sql[512], want[4096];
            snprintf(sql, sizeof sql, "SELECT imgset.imgset_batch_count(2500, 64, %d)", world);
            snprintf(want, sizeof want, "%" PRId64, sampler.batches);
            const char *got = query(sql);
            if (strcmp(got, want) != 0) {
                printf("# world %d: imgset_batch_count %s, the client's sampler %s\n", world,
                       got, want);
                agree = 0;
            }
            int64_t batches[3] = {0, 1, sampler.batches - 1};   /* the last one is short */
            for (int t = 0; t < 3 && agree; t++) {
                snprintf(sql, sizeof sql,
                         "SELECT ids::text FROM imgset.imgset_batch('imgset.st_cifar_train', 77, 4, "
                         "%d, 64, %d, %d)", (int)batches[t], rank, world);
                got = query(sql);
                sampler_ids_text(&sampler, batches[t], want, sizeof want);
                if (strcmp(got, want) != 0) {
                    printf("# rank %d/%d batch %d: server %s\n# client %s\n", rank, world,
                           (int)batches[t], got, want);
                    agree = 0;
                }
            }
        }
    ok(agree, "imgset_batch(split, seed, epoch, b, 64, rank, world) takes the ids the client's "
       "sampler gives, imgset_batch_count its batch count (worlds 1 2 3 7, every rank, "
       "first, second and last batch)");
}

/* Refusals: an existing name, a missing data set, a URI without dataset=, no server. */
static void test_refusals(Store *gen)
{
    ok(store_copy(gen, uri("st_cifar"), NULL, NULL) < 0 && strstr(imgset_error(), "already exists"),
       "writing an existing data set name is refused: %s", imgset_error());
    ok(store_open(uri("st_nothere")) == NULL && strstr(imgset_error(), "does not exist"),
       "opening a missing data set says it does not exist: %s", imgset_error());
    ok(store_open(base) == NULL && strstr(imgset_error(), "dataset=NAME"),
       "a URI without ?dataset= is refused with a hint: %s", imgset_error());
    ok(store_open("postgresql:///nodb?host=/nonexistent&dataset=x") == NULL &&
           strstr(imgset_error(), "cannot connect"),
       "an unreachable server is a clear error: %s", imgset_error());
}

/* An interrupted load leaves nothing: no metadata row, no tables. */
static void test_interrupted_load(Store *gen)
{
    int64_t limit = 700;
    ok(store_copy(gen, uri("st_broken"), stop_after, &limit) < 0 &&
           strstr(imgset_error(), "interrupted"),
       "a load interrupted after 700 images fails: %s", imgset_error());
    ok(store_open(uri("st_broken")) == NULL, "the interrupted data set does not exist");
    ok(strcmp(query("SELECT count(*) FROM pg_class WHERE relname LIKE 'st_broken%'"), "0") == 0 &&
           strcmp(query("SELECT count(*) FROM imgset.datasets WHERE name = 'st_broken'"),
                  "0") == 0,
       "and left no table and no metadata behind");
}

/* A ragged set: per-image shapes, images, and the server's resize equal to the loader's. */
static void test_ragged_set(void)
{
    Store *gen = load("mixed", 40, 12, "st_mixed");
    ok(gen != NULL, "mixed-size set written: %s", gen ? "" : imgset_error());
    Store *pg = gen ? store_open(uri("st_mixed")) : NULL;
    ok(pg && !split_is_fixed(&pg->info.split[SPLIT_TRAIN]), "and opened as ragged");
    if (pg) {
        int shapes_ok = 1;
        for (int64_t i = 0; i < 40 && shapes_ok; i++) {
            ImageShape a, b;
            shapes_ok = store_image_shape(gen, SPLIT_TRAIN, i, &a) == 0 &&
                        store_image_shape(pg, SPLIT_TRAIN, 39 - i, &b) == 0 &&
                        store_image_shape(gen, SPLIT_TRAIN, 39 - i, &a) == 0 &&
                        image_shape_equal(a, b);
        }
        ok(shapes_ok, "per-image shapes read back (random access)");
        ok(same_split(gen, pg, SPLIT_TRAIN, NULL, 40) && same_split(gen, pg, SPLIT_TEST, NULL, 12),
           "ragged images read back the same");
        ok(server_resize_matches(gen),
           "imgset_batch(split, ids, 24, 24) resizes + crops each image to the very pixels of the "
           "client loader's transform_resize_crop");
        int64_t mixed_ids[20];
        shuffled_ids(mixed_ids, 20, 40, 3);
        ok(gather_matches(gen, pg, mixed_ids, 20, (ImageShape){24, 32, 3}),
           "store_read_batch_resized gathers 20 shuffled mixed-size images (one repeated) at "
           "24x32, byte for byte the loader's own resize, in order");
        uint8_t one[24 * 32];
        int32_t one_label;
        ok(store_read_batch_resized(pg, SPLIT_TRAIN, mixed_ids, 1, (ImageShape){24, 32, 1}, one,
                                    &one_label) < 0 &&
               strstr(imgset_error(), "has 3 channels, the loader makes 1"),
           "and names an image whose channels are not the loader's: %s", imgset_error());
    }
    store_close(pg);
    store_close(gen);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_store_pg BASE_URI\n");
        return 2;
    }
    snprintf(base, sizeof base, "%s", argv[1]);
    Store *gen = test_fixed_set();
    if (!gen)
        return printf("Bail out! %s\n", imgset_error()), tap_done();
    test_large_images();
    test_server_sampler();
    test_refusals(gen);
    test_interrupted_load(gen);
    store_close(gen);
    test_ragged_set();
    return tap_done();
}
