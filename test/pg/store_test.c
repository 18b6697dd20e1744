/* store_test.c — the postgresql:// store through the library (loaders/store_pg.c): write,
 * read back, refuse overwrites, leave nothing after an abort, sequential and random reads,
 * ragged sets; and the server's shuffle equals the client's sampler (loaders/sampler.c).
 * Prints TAP. Usage: store_test BASE_URI   e.g. postgresql:///db?host=/tmp/x&port=5432 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "error.h"
#include "generate.h"
#include "permute.h"
#include "sampler.h"
#include "store.h"
#include "transform.h"


static int tests, failures;

static void ok(int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%sok %d - ", cond ? "" : "not ", ++tests);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (!cond) {
        failures++;
        printf("# last library error: %s\n", imgset_error());
    }
    fflush(stdout);
}

static char base[1024];

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
static const char *query(const char *conninfo, const char *sql)
{
    static char out[8192];
    out[0] = '\0';
    PGconn *c = PQconnectdb(conninfo);
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
static int server_resize_matches(Store *gen, const char *conninfo)
{
    enum { SIDE = 24, N = 5 };
    const int64_t ids[N] = {5, 0, 17, 39, 22};
    PGconn *c = PQconnectdb(conninfo);
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

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: store_test BASE_URI\n");
        return 2;
    }
    snprintf(base, sizeof base, "%s", argv[1]);

    /* A fixed-shape set: write, reopen, compare everything in order and out of order. */
    Store *gen = load("cifar10", 2500, 300, "st_cifar");
    ok(gen != NULL, "cifar10-like set (2500 + 300) written through postgresql://");
    Store *pg = store_open(uri("st_cifar"));
    ok(pg != NULL, "and opened again");
    if (!gen || !pg)
        return printf("Bail out! %s\n", imgset_error()), 1;
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
       "a gather with an index past the split is refused");
    free(got);
    store_close(pg);

    /* Large images: a gather of 25 512x512 images (19 MB) goes in several calls (at most 8 MB
     * of pixels each), and still comes back whole and in order. */
    Store *big = load("hires", 30, 2, "st_hires");
    pg = big ? store_open(uri("st_hires")) : NULL;
    ok(pg != NULL, "hires-like set (30 + 2 images of 512x512x3) written and opened");
    if (pg) {
        int64_t big_ids[25];
        shuffled_ids(big_ids, 25, 30, 8);
        ok(gather_matches(big, pg, big_ids, 25, (ImageShape){0, 0, 0}),
           "store_read_batch gathers 25 shuffled large images (one repeated) in order, in "
           "several calls");
    }
    store_close(pg);
    store_close(big);

    /* The server's shuffle is the client's sampler. */
    char conninfo[1100];
    snprintf(conninfo, sizeof conninfo, "%s", base);
    int agree = 1;
    const int worlds[] = {1, 2, 3, 7};   /* 2500 % 3 and 2500 % 7: a tail is dropped */
    for (int w = 0; w < 4 && agree; w++)
        for (int world = worlds[w], rank = 0; rank < world && agree; rank++) {
            Sampler sampler;
            SamplerOptions so = {2500, 64, 1, 0, 77, rank, world};
            sampler_init(&sampler, &so);
            sampler_set_epoch(&sampler, 4);
            char count_sql[128], count[32];
            snprintf(count_sql, sizeof count_sql, "SELECT imgset.imgset_batch_count(2500, 64, %d)",
                     world);
            snprintf(count, sizeof count, "%" PRId64, sampler.batches);
            const char *server_count = query(conninfo, count_sql);
            if (strcmp(server_count, count) != 0) {
                printf("# world %d: imgset_batch_count %s, the client's sampler %s\n", world,
                       server_count, count);
                agree = 0;
            }
            int64_t tests[3] = {0, 1, sampler.batches - 1};   /* the last one is short */
            for (int t = 0; t < 3 && agree; t++) {
                int64_t batch = tests[t], ids[64];
                char sql[512];
                snprintf(sql, sizeof sql,
                         "SELECT ids::text FROM imgset.imgset_batch('imgset.st_cifar_train', 77, 4, "
                         "%d, 64, %d, %d)", (int)batch, rank, world);
                const char *got = query(conninfo, sql);
                int n = sampler_batch(&sampler, batch, ids);
                char want[4096] = "{";
                for (int k = 0; k < n; k++) {
                    char num[32];
                    snprintf(num, sizeof num, "%s%" PRId64, k ? "," : "", ids[k]);
                    strcat(want, num);
                }
                strcat(want, "}");
                if (strcmp(got, want) != 0) {
                    printf("# rank %d/%d batch %d: server %s\n# client %s\n", rank, world, (int)batch,
                           got, want);
                    agree = 0;
                }
            }
        }
    ok(agree, "imgset_batch(split, seed, epoch, b, 64, rank, world) takes the ids the client's "
       "sampler gives, imgset_batch_count its batch count (worlds 1 2 3 7, every rank, "
       "first, second and last batch)");

    /* Refusals: an existing name, a missing data set, a URI without dataset=. */
    ok(store_copy(gen, uri("st_cifar"), NULL, NULL) < 0 && strstr(imgset_error(), "already exists"),
       "writing an existing data set name is refused (\"already exists\")");
    ok(store_open(uri("st_nothere")) == NULL && strstr(imgset_error(), "does not exist"),
       "opening a missing data set says it does not exist");
    ok(store_open(base) == NULL && strstr(imgset_error(), "dataset=NAME"),
       "a URI without ?dataset= is refused with a hint");
    ok(store_open("postgresql:///nodb?host=/nonexistent&dataset=x") == NULL &&
           strstr(imgset_error(), "cannot connect"),
       "an unreachable server is a clear error");

    /* An interrupted load leaves nothing: no metadata row, no tables. */
    int64_t limit = 700;
    ok(store_copy(gen, uri("st_broken"), stop_after, &limit) < 0 &&
           strstr(imgset_error(), "interrupted"),
       "a load interrupted after 700 images fails");
    ok(store_open(uri("st_broken")) == NULL, "the interrupted data set does not exist");
    ok(strcmp(query(conninfo, "SELECT count(*) FROM pg_class WHERE relname LIKE 'st_broken%'"),
              "0") == 0 &&
           strcmp(query(conninfo, "SELECT count(*) FROM imgset.datasets WHERE name = 'st_broken'"),
                  "0") == 0,
       "and left no table and no metadata behind");
    store_close(gen);

    /* A ragged set, and one with float-free odd shapes. */
    gen = load("mixed", 40, 12, "st_mixed");
    ok(gen != NULL, "mixed-size set written");
    pg = gen ? store_open(uri("st_mixed")) : NULL;
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
        ok(server_resize_matches(gen, conninfo),
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

    printf("1..%d\n", tests);
    return failures ? 1 : 0;
}
