/* test_core.c — unit tests of the store core (URI dispatch, checked calls), the permutation
 * and the digest, using an in-memory fake store. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "digest.h"
#include "error.h"
#include "fsutil.h"
#include "permute.h"
#include "store.h"
#include "tap.h"

/* A fake read-only store: split s image i is 2x3x1 with pixel value (i + s * 7 + k) & 255,
 * label i % 3, classes "a", "b", "c". The variations change one thing each. */
typedef struct Fake {
    int64_t count[SPLIT_COUNT];
    int bad_label_at;        /* index whose label is out of range, or -1 */
    int relabel_at;          /* index > 0 whose label is (i + 1) % 3 instead; 0: none */
    int transpose_at;        /* index > 0 whose shape is 3x2x1 (the same pixels); 0: none */
    const char *class_b;     /* the name of class 1 instead of "b" (NULL: "b") */
    const char *name;        /* the data set's name instead of "fake" (NULL: "fake") */
} Fake;

static Fake fake_config;

static int fake_open(Store *s, const char *location)
{
    const char *const names[] = {"a", fake_config.class_b ? fake_config.class_b : "b", "c"};
    if (strcmp(location, "fail") == 0)
        return imgset_fail("fake: cannot open %s", location);
    dataset_info_set_name(&s->info, fake_config.name ? fake_config.name : "fake");
    if (dataset_info_set_classes(&s->info, 3, names) < 0)
        return -1;
    for (int i = 0; i < SPLIT_COUNT; i++) {
        s->info.split[i].count = fake_config.count[i];
        s->info.split[i].shape = (ImageShape){2, 3, 1};
    }
    return 0;
}

static int fake_read(Store *s, int split, int64_t index, uint8_t *dst, size_t capacity,
                     ImageShape *shape, int32_t *label)
{
    int transposed = fake_config.transpose_at > 0 && index == fake_config.transpose_at;
    *shape = transposed ? (ImageShape){3, 2, 1} : (ImageShape){2, 3, 1};
    for (int k = 0; k < 6; k++)
        dst[k] = (uint8_t)(index + split * 7 + k);
    *label = index == fake_config.bad_label_at ? 99 : (int32_t)(index % 3);
    if (fake_config.relabel_at > 0 && index == fake_config.relabel_at)
        *label = (int32_t)((index + 1) % 3);
    return 0;
}

static void fake_close(Store *s) {}

static const StoreOps fake_ops = {
    .scheme = NULL, .summary = "test fake",
    .open = fake_open, .read_image = fake_read, .close = fake_close,
};

static void test_uris(void)
{
    ok(store_ops_for_uri("mmap:/x") != NULL, "mmap: URI resolves to a backend");
    ok(store_ops_for_uri("files:/x") != NULL, "files: URI resolves to a backend");
    ok(store_ops_for_uri("nosuch:/x") == NULL && strstr(imgset_error(), "nosuch"),
       "unknown scheme is an error naming it: %s", imgset_error());
    ok(store_ops_for_uri("/plain/path") == NULL && strstr(imgset_error(), "no scheme"),
       "a URI without scheme is an error: %s", imgset_error());
    ok(store_open("mmap:/definitely/not/here") == NULL && strstr(imgset_error(), "/definitely"),
       "opening a missing store names it: %s", imgset_error());
}

static void test_checked_reads(void)
{
    fake_config = (Fake){.count = {5, 2}, .bad_label_at = -1};
    Store *s = store_open_with(&fake_ops, "fake", "x", NULL);
    if (!ok(s != NULL, "fake store opens"))
        return;
    uint8_t buf[6];
    ImageShape shape;
    int32_t label;
    ok(store_read_image(s, SPLIT_TRAIN, 4, buf, sizeof buf, &shape, &label) == 0 &&
           buf[0] == 4 && label == 1, "reads the last train image");
    ok(store_read_image(s, SPLIT_TRAIN, 5, buf, sizeof buf, &shape, &label) < 0 &&
           strstr(imgset_error(), "index 5 out of range"),
       "index past the end is an error: %s", imgset_error());
    ok(store_read_image(s, SPLIT_TEST, -1, buf, sizeof buf, &shape, &label) < 0,
       "negative index is an error");
    ok(store_read_image(s, 7, 0, buf, sizeof buf, &shape, &label) < 0, "bad split is an error");
    ok(store_read_image(s, SPLIT_TRAIN, 0, buf, 4, &shape, &label) < 0,
       "a buffer too small for the image is an error");
    store_close(s);

    fake_config = (Fake){.count = {5, 2}, .bad_label_at = 3};
    s = store_open_with(&fake_ops, "fake", "x", NULL);
    ok(store_read_image(s, SPLIT_TRAIN, 3, buf, sizeof buf, &shape, &label) < 0 &&
           strstr(imgset_error(), "label 99"),
       "out-of-range label from a backend is caught: %s", imgset_error());
    store_close(s);

    ok(store_open_with(&fake_ops, "fake", "fail", NULL) == NULL && strstr(imgset_error(), "fail"),
       "a failing open passes its message through");
}

static void test_permutation(void)
{
    const uint64_t sizes[] = {1, 2, 3, 10, 1000, 50000, 65537};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint64_t n = sizes[k];
        Permutation p;
        permutation_init(&p, n, 42, 3);
        uint8_t *seen = calloc(n, 1);
        int bijective = 1;
        uint64_t fixed_points = 0;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t v = permutation_at(&p, i);
            if (v >= n || seen[v])
                bijective = 0;
            else
                seen[v] = 1;
            fixed_points += v == i;
        }
        free(seen);
        ok(bijective, "permutation of %llu is a bijection", (unsigned long long)n);
        if (n >= 1000)
            ok(fixed_points < n / 50, "permutation of %llu moves almost everything (%llu fixed)",
               (unsigned long long)n, (unsigned long long)fixed_points);
    }
    Permutation a, b, c;
    permutation_init(&a, 1000, 42, 0);
    permutation_init(&b, 1000, 42, 0);
    permutation_init(&c, 1000, 42, 1);
    int same = 1, differs = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        same &= permutation_at(&a, i) == permutation_at(&b, i);
        differs += permutation_at(&a, i) != permutation_at(&c, i);
    }
    Permutation d;
    permutation_init(&d, 1000, 43, 0);
    int seed_differs = 0;
    for (uint64_t i = 0; i < 1000; i++)
        seed_differs += permutation_at(&a, i) != permutation_at(&d, i);
    ok(same, "the same (seed, epoch) gives the same order");
    ok(differs > 900, "another epoch gives another order (%d of 1000 positions differ)", differs);
    ok(seed_differs > 900, "another seed gives another order (%d of 1000 positions differ)",
       seed_differs);
}

static void test_digest(void)
{
    fake_config = (Fake){.count = {50, 10}, .bad_label_at = -1};
    Store *s = store_open_with(&fake_ops, "fake", "x", NULL);
    SplitDigest d1, d2, t;
    ok(digest_split(s, SPLIT_TRAIN, &d1, NULL, NULL) == 0 && strlen(d1.hex) == 32 &&
           d1.count == 50 && d1.pixel_bytes == 300, "digest of the train split: %s", d1.hex);
    ok(digest_split(s, SPLIT_TRAIN, &d2, NULL, NULL) == 0 && strcmp(d1.hex, d2.hex) == 0,
       "the digest is repeatable");
    ok(digest_split(s, SPLIT_TEST, &t, NULL, NULL) == 0 && strcmp(d1.hex, t.hex) != 0,
       "train and test digests differ");
    store_close(s);

    /* One thing changed at a time: the digest changes, except for the data set's name. */
    static const struct {
        Fake config;
        int changes;
        const char *what;
    } variants[] = {
        {{.count = {49, 10}, .bad_label_at = -1}, 1, "one image fewer"},
        {{.count = {50, 10}, .bad_label_at = -1, .relabel_at = 17}, 1, "one label (image 17)"},
        {{.count = {50, 10}, .bad_label_at = -1, .class_b = "B"}, 1, "one class name (\"b\" -> \"B\")"},
        {{.count = {50, 10}, .bad_label_at = -1, .transpose_at = 23}, 1, "one shape (image 23 3x2 for 2x3, same bytes)"},
        {{.count = {50, 10}, .bad_label_at = -1, .name = "other"}, 0, "the data set's name"},
    };
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        fake_config = variants[v].config;
        s = store_open_with(&fake_ops, "fake", "x", NULL);
        ok(s && digest_split(s, SPLIT_TRAIN, &d2, NULL, NULL) == 0 &&
               (strcmp(d1.hex, d2.hex) != 0) == variants[v].changes,
           "%s %s the digest", variants[v].what, variants[v].changes ? "changes" : "leaves");
        store_close(s);
    }
}

static void test_sizes(void)
{
    size_t out;
    ok(size_mul(SIZE_MAX / 2, 3, &out) < 0, "size_mul detects overflow");
    ok(size_mul(1000, 1000, &out) == 0 && out == 1000000, "size_mul multiplies");
    ok(size_add(SIZE_MAX, 1, &out) < 0, "size_add detects overflow");
    ok(image_shape_bytes((ImageShape){IMGSET_MAX_SIDE + 1, 1, 1}) == 0, "too tall is invalid");
    ok(image_shape_bytes((ImageShape){4, 4, 5}) == 0, "5 channels is invalid");
    ok(image_shape_bytes((ImageShape){32, 32, 3}) == 3072, "32x32x3 is 3072 bytes");
    ok(split_from_name("test") == SPLIT_TEST && split_from_name("val") < 0, "split names");
}

static void test_fsutil(void)
{
    char dir[] = "/tmp/imgset-fsutil.XXXXXX", deep[256], file[300];
    if (!ok(mkdtemp(dir) != NULL, "make a scratch folder"))
        return;
    snprintf(deep, sizeof deep, "%s/a/b'c/d", dir);
    ok(fs_make_dirs(deep) == 0 && fs_make_dirs(deep) == 0,
       "fs_make_dirs makes nested folders (a quote in a name is fine) and is idempotent");
    snprintf(file, sizeof file, "%s/x", deep);
    FILE *f = fopen(file, "w");
    if (f)
        fclose(f);
    ok(fs_make_dirs(file) < 0 && strstr(imgset_error(), "not a folder"),
       "fs_make_dirs over a file is an error: %s", imgset_error());
    ok(fs_remove_tree(dir) == 0 && access(dir, F_OK) != 0, "fs_remove_tree removes it all");
    ok(fs_remove_tree(dir) == 0, "removing a missing tree is fine");
}

int main(void)
{
    test_uris();
    test_checked_reads();
    test_permutation();
    test_digest();
    test_sizes();
    test_fsutil();
    return tap_done();
}
