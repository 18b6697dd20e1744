/* test_store_files.c — the files: store (write, read, order, classes, errors) and imagefolder_open. */
#include <errno.h>
#include <stdarg.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codec.h"
#include "error.h"
#include "rng.h"
#include "store.h"
#include "store_files.h"
#include "tap.h"

static char temp_dir[] = "/tmp/imgset-test-files.XXXXXX";

/* A path inside the test's temporary folder (rotating static buffers). */
static const char *tpath(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *tpath(const char *fmt, ...)
{
    static char paths[4][512];
    static int next;
    char *path = paths[next++ % 4];
    int n = snprintf(path, sizeof paths[0], "%s/", temp_dir);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path + n, sizeof paths[0] - (size_t)n, fmt, ap);
    va_end(ap);
    return path;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void make_dirs(const char *path)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(buf, 0777);
            *p = '/';
        }
    mkdir(buf, 0777);
}

/* Pixels of image `id`: pixel 0 holds the id, the rest a seeded pattern. */
static void image_pixels(uint8_t *p, ImageShape shape, int id)
{
    Rng rng = rng_make(1234, (uint64_t)id);
    size_t n = image_shape_bytes(shape);
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rng_next(&rng);
    p[0] = (uint8_t)id;
}

/* Write one PNG of image `id` at path (folders made as needed). */
static int put_png(const char *path, ImageShape shape, int id)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    make_dirs(dir);
    uint8_t *p = malloc(image_shape_bytes(shape));
    image_pixels(p, shape, id);
    int rc = codec_png_write_file(path, p, shape);
    free(p);
    return rc;
}

static void put_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* The shape of image i of a split in the round-trip tests. */
static ImageShape trip_shape(int ragged, int channels, int split, int i)
{
    ImageShape s = {6, 8, channels};
    if (ragged) {
        s.height = 3 + (i * 5 + split) % 7;
        s.width = 2 + (i * 3) % 9;
    }
    return s;
}

/* Write a 3-class store with interleaved labels, read it back, compare everything. */
static void test_round_trip(const char *tag, int ragged, int channels,
                            const char *const class_names[3])
{
    const char *dir = tpath("rt-%s", tag);
    char uri[600];
    snprintf(uri, sizeof uri, "files:%s", dir);
    DatasetInfo info = {0};
    dataset_info_set_name(&info, tag);
    dataset_info_set_classes(&info, 3, class_names);
    int64_t counts[2] = {12, 5};
    for (int split = 0; split < 2; split++) {
        info.split[split].count = counts[split];
        if (!ragged)
            info.split[split].shape = trip_shape(0, channels, split, 0);
    }
    Store *w = store_create(uri, &info);
    ok(w != NULL, "%s: create (%s)", tag, w ? "ok" : imgset_error());
    if (!w) {
        dataset_info_free(&info);
        return;
    }
    uint8_t buf[16 * 16 * 3];
    int rc = 0;
    for (int split = 0; split < 2 && rc == 0; split++)
        for (int i = 0; i < counts[split] && rc == 0; i++) {
            ImageShape shape = trip_shape(ragged, channels, split, i);
            image_pixels(buf, shape, split * 100 + i);
            rc = store_write_image(w, split, buf, shape, (i * 7 + split) % 3);
        }
    ok(rc == 0, "%s: write %lld + %lld images (%s)", tag, (long long)counts[0],
       (long long)counts[1], rc ? imgset_error() : "ok");
    ok(exists(tpath("rt-%s.tmp-%ld", tag, (long)getpid())) && !exists(dir),
       "%s: written under a temporary name before commit", tag);
    rc = store_commit(w);
    ok(rc == 0 && exists(dir) && !exists(tpath("rt-%s.tmp-%ld", tag, (long)getpid())),
       "%s: commit renames into place (%s)", tag, rc ? imgset_error() : "ok");
    /* Train has 12 images: two-digit names so they sort in split order. */
    ok(exists(tpath("rt-%s/train/%s/00.png", tag, class_names[0])) &&
           exists(tpath("rt-%s/train/%s/11.png", tag, class_names[(11 * 7) % 3])) &&
           exists(tpath("rt-%s/test/%s/4.png", tag, class_names[(4 * 7 + 1) % 3])) &&
           exists(tpath("rt-%s/classes.txt", tag)),
       "%s: layout DIR/{train,test}/<class>/<index>.png + classes.txt", tag);

    Store *r = store_open(uri);
    ok(r != NULL, "%s: open (%s)", tag, r ? "ok" : imgset_error());
    if (!r) {
        dataset_info_free(&info);
        return;
    }
    int classes_same = r->info.num_classes == 3;
    for (int c = 0; classes_same && c < 3; c++)
        classes_same &= strcmp(r->info.class_names[c], class_names[c]) == 0;
    ok(classes_same, "%s: class names in label order", tag);
    ok(r->info.split[0].count == 12 && r->info.split[1].count == 5, "%s: counts", tag);
    ok(ragged ? !split_is_fixed(&r->info.split[0]) && !split_is_fixed(&r->info.split[1])
              : image_shape_equal(r->info.split[0].shape, trip_shape(0, channels, 0, 0)),
       "%s: split shape %s", tag, ragged ? "ragged" : "fixed");
    int all_same = 1, shapes_same = 1;
    uint8_t expect[16 * 16 * 3];
    for (int split = 0; split < 2; split++)
        for (int i = 0; i < counts[split]; i++) {
            ImageShape want = trip_shape(ragged, channels, split, i), shape, probed;
            int32_t label = -1;
            image_pixels(expect, want, split * 100 + i);
            shapes_same &= store_image_shape(r, split, i, &probed) == 0 &&
                           image_shape_equal(probed, want);
            if (store_read_image(r, split, i, buf, sizeof buf, &shape, &label) < 0 ||
                !image_shape_equal(shape, want) || label != (i * 7 + split) % 3 ||
                memcmp(buf, expect, image_shape_bytes(want)) != 0) {
                if (all_same)
                    printf("# %s image %d differs: %s\n", split_names[split], i,
                           imgset_error());
                all_same = 0;
            }
        }
    ok(shapes_same, "%s: image_shape per image", tag);
    ok(all_same, "%s: every image and label read back in write order", tag);
    store_close(r);
    dataset_info_free(&info);
}

static void test_writer_errors(void)
{
    DatasetInfo info = {0};
    const char *names[2] = {"a", "b"};
    dataset_info_set_classes(&info, 2, names);
    info.split[0].count = 2;
    info.split[1].count = 1;
    info.split[0].shape = info.split[1].shape = (ImageShape){4, 4, 3};
    char uri[600];

    /* Destination exists. */
    make_dirs(tpath("exists"));
    snprintf(uri, sizeof uri, "files:%s", tpath("exists"));
    Store *w = store_create(uri, &info);
    ok(w == NULL && strstr(imgset_error(), "already exists"),
       "create over an existing folder is refused: %s", imgset_error());
    store_close(w);

    /* Abort leaves nothing. */
    snprintf(uri, sizeof uri, "files:%s", tpath("aborted"));
    w = store_create(uri, &info);
    uint8_t px[48] = {0};
    int rc = w ? store_write_image(w, 0, px, (ImageShape){4, 4, 3}, 1) : -1;
    /* the PNG itself may still be in an encoder's queue; its class folder is made at once */
    ok(rc == 0 && exists(tpath("aborted.tmp-%ld/train/b", (long)getpid())),
       "a written image's folder exists under the temporary name");
    store_close(w);
    ok(!exists(tpath("aborted")) && !exists(tpath("aborted.tmp-%ld", (long)getpid())),
       "close without commit removes everything");

    /* A commit short of images fails and leaves nothing either. */
    w = store_create(uri, &info);
    if (w)
        store_write_image(w, 0, px, (ImageShape){4, 4, 3}, 0);
    ok(w && store_commit(w) < 0 && !exists(tpath("aborted")) &&
           !exists(tpath("aborted.tmp-%ld", (long)getpid())),
       "an incomplete commit fails and leaves nothing: %s", imgset_error());

    /* Class names that cannot be folder names, or repeat. */
    const char *bad[][2] = {{"ok", "a/b"}, {"ok", ".."}, {"ok", ""}, {".", "ok"}, {"x", "x"},
                            {"ok", "line\nbreak"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        DatasetInfo b = {0};
        dataset_info_copy(&b, &info);
        dataset_info_set_classes(&b, 2, bad[i]);
        snprintf(uri, sizeof uri, "files:%s", tpath("badclass%zu", i));
        w = store_create(uri, &b);
        /* (the message is not printed: one name holds a newline, which would break TAP) */
        ok(w == NULL && !exists(tpath("badclass%zu.tmp-%ld", i, (long)getpid())) &&
               strstr(imgset_error(), "class"),
           "bad class name set %zu is refused", i);
        store_close(w);
        dataset_info_free(&b);
    }
    dataset_info_free(&info);
}

/* A hand-made ImageFolder tree: sorted class folders, torchvision order, mixed grey/RGB. */
static void test_foreign_tree(void)
{
    ImageShape rgb = {5, 7, 3}, grey = {5, 7, 1};
    put_png(tpath("tv/train/bird/z.png"), rgb, 1);
    put_png(tpath("tv/train/bird/a.PNG"), grey, 2);
    put_png(tpath("tv/train/ant/m.png"), rgb, 3);
    put_png(tpath("tv/train/ant/sub/b.png"), rgb, 4);  /* subfolders count (os.walk) */
    put_png(tpath("tv/train/ant/3.jpeg"), rgb, 5);     /* content decides, not the name */
    put_png(tpath("tv/test/bird/q.png"), rgb, 6);
    put_text(tpath("tv/train/bird/.DS_Store"), "junk");  /* hidden: skipped */
    char uri[600];
    snprintf(uri, sizeof uri, "files:%s", tpath("tv"));
    Store *r = store_open(uri);
    ok(r != NULL, "foreign tree opens (%s)", r ? "ok" : imgset_error());
    if (!r)
        return;
    ok(r->info.num_classes == 2 && strcmp(r->info.class_names[0], "ant") == 0 &&
           strcmp(r->info.class_names[1], "bird") == 0,
       "no classes.txt: classes are the sorted folder names");
    ok(r->info.split[0].count == 5 && r->info.split[1].count == 1, "foreign tree counts");
    ok(image_shape_equal(r->info.split[0].shape, rgb),
       "one grey image among RGB ones: the store is 3-channel, fixed 5x7x3");
    /* torchvision order: ant/{3.jpeg, m.png}, ant/sub/b.png, bird/{a.PNG, z.png}. */
    int ids[5] = {5, 3, 4, 2, 1}, labels[5] = {0, 0, 0, 1, 1}, order_ok = 1;
    uint8_t buf[5 * 7 * 3], expect[5 * 7 * 3];
    ImageShape shape;
    int32_t label;
    for (int i = 0; i < 5; i++) {
        order_ok &= store_read_image(r, 0, i, buf, sizeof buf, &shape, &label) == 0 &&
                    buf[0] == ids[i] && label == labels[i];
    }
    ok(order_ok, "torchvision order: class folders, then folders by path, names sorted");
    store_read_image(r, 0, 3, buf, sizeof buf, &shape, &label);
    image_pixels(expect, grey, 2);
    int replicated = 1;
    for (int p = 0; p < 35; p++)
        replicated &= buf[3 * p] == expect[p] && buf[3 * p + 1] == expect[p] &&
                      buf[3 * p + 2] == expect[p];
    ok(replicated, "the grey image is read as RGB with equal channels");
    store_close(r);

    /* classes.txt gives the label order. */
    put_text(tpath("tv/classes.txt"), "bird\nant\n");
    r = store_open(uri);
    ok(r && strcmp(r->info.class_names[0], "bird") == 0 &&
           store_read_image(r, 0, 0, buf, sizeof buf, &shape, &label) == 0 && label == 1 &&
           store_read_image(r, 1, 0, buf, sizeof buf, &shape, &label) == 0 && label == 0,
       "classes.txt sets the label order (%s)", r ? "ok" : imgset_error());
    store_close(r);
    put_text(tpath("tv/classes.txt"), "bird\n");
    r = store_open(uri);
    ok(r == NULL && strstr(imgset_error(), "ant") && strstr(imgset_error(), "classes.txt"),
       "a class folder missing from classes.txt: %s", imgset_error());
    store_close(r);
    put_text(tpath("tv/classes.txt"), "bird\nant\nbird\n");
    r = store_open(uri);
    ok(r == NULL && strstr(imgset_error(), "twice"), "a class listed twice: %s",
       imgset_error());
    store_close(r);
    remove(tpath("tv/classes.txt"));

    /* A test class folder that train lacks. */
    put_png(tpath("tv/test/cat/x.png"), rgb, 7);
    r = store_open(uri);
    ok(r == NULL && strstr(imgset_error(), "cat"), "a test class not in train: %s",
       imgset_error());
    store_close(r);
    remove(tpath("tv/test/cat/x.png"));

    /* Empty class folder. */
    rmdir(tpath("tv/test/cat"));
    make_dirs(tpath("tv/train/empty"));
    r = store_open(uri);
    ok(r == NULL && strstr(imgset_error(), "empty class folder") &&
           strstr(imgset_error(), "train/empty"),
       "an empty class folder: %s", imgset_error());
    store_close(r);
    rmdir(tpath("tv/train/empty"));

    /* A file that is not an image (by name). */
    put_text(tpath("tv/train/ant/notes.txt"), "hello");
    r = store_open(uri);
    ok(r == NULL && strstr(imgset_error(), "notes.txt"), "a non-image file: %s",
       imgset_error());
    store_close(r);
    remove(tpath("tv/train/ant/notes.txt"));

    /* A file named like an image whose content is not one: fails at open, naming it. */
    put_text(tpath("tv/train/ant/fake.png"), "not really a png file");
    r = store_open(uri);
    ok(r == NULL && strstr(imgset_error(), "fake.png") && strstr(imgset_error(), "train image"),
       "a non-image named .png: %s", imgset_error());
    store_close(r);
    remove(tpath("tv/train/ant/fake.png"));

    /* A truncated image: the header probes, the read fails naming file and index. */
    uint8_t *png;
    size_t size;
    uint8_t big[40 * 40 * 3];
    image_pixels(big, (ImageShape){40, 40, 3}, 9);
    codec_png_encode(big, (ImageShape){40, 40, 3}, &png, &size);
    FILE *f = fopen(tpath("tv/train/bird/z.png"), "wb");
    fwrite(png, 1, size / 2, f);
    fclose(f);
    free(png);
    r = store_open(uri);
    ok(r != NULL, "a truncated image still opens (header intact)");
    int rc = r ? store_read_image(r, 0, 4, big, sizeof big, &shape, &label) : 0;
    ok(rc < 0 && strstr(imgset_error(), "z.png") && strstr(imgset_error(), "train image 4"),
       "reading it fails naming the file and index: %s", imgset_error());
    ok(r && !split_is_fixed(&r->info.split[0]), "differing sizes make the split ragged");
    store_close(r);
    put_png(tpath("tv/train/bird/z.png"), rgb, 1);

    /* Empty split: test/ without class folders. */
    remove(tpath("tv/test/bird/q.png"));
    rmdir(tpath("tv/test/bird"));
    r = store_open(uri);
    ok(r == NULL && strstr(imgset_error(), "test split is empty"),
       "an empty test split: %s", imgset_error());
    store_close(r);
    make_dirs(tpath("tv/test/bird"));
    put_png(tpath("tv/test/bird/q.png"), grey, 6);

    snprintf(uri, sizeof uri, "files:%s", tpath("does-not-exist"));
    r = store_open(uri);
    ok(r == NULL && strstr(imgset_error(), "does-not-exist"), "a missing folder: %s",
       imgset_error());
}

/* All grey: the store stays 1 channel. Integer names not 0..N-1: torchvision order. */
static void test_grey_and_names(void)
{
    ImageShape grey = {4, 4, 1};
    put_png(tpath("grey/train/a/1.png"), grey, 1);
    put_png(tpath("grey/train/a/2.png"), grey, 2);
    put_png(tpath("grey/train/b/0.png"), grey, 3);
    put_png(tpath("grey/test/b/5.png"), grey, 4);    /* 5 is not in 0..0 */
    char uri[600];
    snprintf(uri, sizeof uri, "files:%s", tpath("grey"));
    Store *r = store_open(uri);
    ok(r && image_shape_equal(r->info.split[0].shape, grey),
       "all-grey tree reads as 1 channel (%s)", r ? "ok" : imgset_error());
    uint8_t buf[16];
    ImageShape shape;
    int32_t label;
    int ids[3] = {3, 1, 2}, ok_order = r != NULL;
    for (int i = 0; ok_order && i < 3; i++)
        ok_order &= store_read_image(r, 0, i, buf, sizeof buf, &shape, &label) == 0 &&
                    buf[0] == ids[i];
    ok(ok_order, "integer names 0..N-1 give index order (b/0, a/1, a/2)");
    ok(r && store_read_image(r, 1, 0, buf, sizeof buf, &shape, &label) == 0 && buf[0] == 4,
       "a split whose integers are not 0..N-1 still reads");
    ok(r && strcmp(r->info.name, "grey") == 0, "data set name is the folder's name");
    store_close(r);
}

/* Every image's first pixel (its id) of a split, in order. */
static int split_ids(Store *s, int split, int *ids, int max)
{
    uint8_t buf[64 * 3];
    ImageShape shape;
    int32_t label;
    int n = (int)s->info.split[split].count;
    for (int i = 0; i < n && i < max; i++) {
        if (store_read_image(s, split, i, buf, sizeof buf, &shape, &label) < 0)
            return -1;
        ids[i] = buf[0];
    }
    return n;
}

static void test_heldout(void)
{
    ImageShape rgb = {4, 4, 3};
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 10; i++)
            put_png(tpath("flat/%s/img%02d.png", c ? "dog" : "cat", i), rgb, c * 10 + i);
    put_text(tpath("flat/README"), "files at the top are ignored");
    Store *a = imagefolder_open(tpath("flat"), 0.3, 42);
    Store *b = imagefolder_open(tpath("flat"), 0.3, 42);
    Store *c = imagefolder_open(tpath("flat"), 0.3, 7);
    ok(a && b && c, "flat tree opens with a held-out fraction (%s)",
       a && b && c ? "ok" : imgset_error());
    if (!a || !b || !c) {
        store_close(a);
        store_close(b);
        store_close(c);
        return;
    }
    ok(a->info.split[0].count == 14 && a->info.split[1].count == 6,
       "30%% of each 10-image class held out: 14 train, 6 test");
    int train_a[20], test_a[20], train_b[20], test_b[20], test_c[20];
    split_ids(a, 0, train_a, 20);
    split_ids(a, 1, test_a, 20);
    split_ids(b, 0, train_b, 20);
    split_ids(b, 1, test_b, 20);
    split_ids(c, 1, test_c, 20);
    ok(memcmp(train_a, train_b, 14 * sizeof(int)) == 0 &&
           memcmp(test_a, test_b, 6 * sizeof(int)) == 0,
       "the same seed picks the same images");
    ok(memcmp(test_a, test_c, 6 * sizeof(int)) != 0, "another seed picks others");
    int seen[20] = {0}, disjoint = 1;
    for (int i = 0; i < 14; i++)
        seen[train_a[i]]++;
    for (int i = 0; i < 6; i++)
        seen[test_a[i]]++;
    for (int i = 0; i < 20; i++)
        disjoint &= seen[i] == 1;
    ok(disjoint, "train and test are disjoint and cover every image");
    int per_class = 0;
    for (int i = 0; i < 6; i++)
        per_class += test_a[i] < 10;
    ok(per_class == 3, "3 of each class held out");
    store_close(a);
    store_close(b);
    store_close(c);

    Store *none = imagefolder_open(tpath("flat"), 0.0, 1);
    ok(none == NULL && strstr(imgset_error(), "test split is empty"),
       "held-out fraction 0 on a flat tree: %s", imgset_error());
    none = imagefolder_open(tpath("flat"), 1.5, 1);
    ok(none == NULL && strstr(imgset_error(), "1.5"), "held-out fraction 1.5: %s",
       imgset_error());
}

static void test_tiny_imagenet(void)
{
    ImageShape rgb = {8, 8, 3};
    const char *wnids[2] = {"n02", "n01"};
    for (int c = 0; c < 2; c++) {
        for (int i = 0; i < 3; i++)
            put_png(tpath("tiny/train/%s/images/%s_%d.JPEG", wnids[c], wnids[c], i), rgb,
                    c * 10 + i);
        put_text(tpath("tiny/train/%s/%s_boxes.txt", wnids[c], wnids[c]), "x\t0\t0\t8\t8\n");
    }
    for (int i = 0; i < 4; i++)
        put_png(tpath("tiny/val/images/val_%d.JPEG", i), rgb, 50 + i);
    put_png(tpath("tiny/test/images/test_0.JPEG"), rgb, 99);    /* unlabelled: ignored */
    put_text(tpath("tiny/val/val_annotations.txt"),
             "val_0.JPEG\tn02\t0\t0\t8\t8\nval_1.JPEG\tn01\t1\t1\t7\t7\n"
             "val_2.JPEG\tn01\t0\t0\t8\t8\nval_3.JPEG\tn02\t0\t0\t8\t8\n");
    put_text(tpath("tiny/wnids.txt"), "n02\nn01\n");
    Store *s = imagefolder_open(tpath("tiny"), 0.0, 0);
    ok(s != NULL, "Tiny ImageNet layout opens (%s)", s ? "ok" : imgset_error());
    if (!s)
        return;
    ok(s->info.num_classes == 2 && strcmp(s->info.class_names[0], "n01") == 0 &&
           s->info.split[0].count == 6 && s->info.split[1].count == 4,
       "tiny: 2 sorted wnids, 6 train, 4 val-as-test");
    uint8_t buf[8 * 8 * 3];
    ImageShape shape;
    int32_t label;
    int val_labels[4] = {1, 0, 0, 1}, ok_labels = 1;
    for (int i = 0; i < 4; i++)
        ok_labels &= store_read_image(s, 1, i, buf, sizeof buf, &shape, &label) == 0 &&
                     label == val_labels[i] && buf[0] == 50 + i;
    ok(ok_labels, "tiny: val images labelled from val_annotations.txt");
    ok(store_read_image(s, 0, 0, buf, sizeof buf, &shape, &label) == 0 && label == 0 &&
           buf[0] == 10,
       "tiny: train/<wnid>/images read, boxes.txt ignored");
    store_close(s);
    put_text(tpath("tiny/val/val_annotations.txt"), "val_0.JPEG\tn02\n");
    s = imagefolder_open(tpath("tiny"), 0.0, 0);
    ok(s == NULL && strstr(imgset_error(), "val_1.JPEG"), "tiny: unannotated val image: %s",
       imgset_error());
    store_close(s);
}

/* The importer on split trees: our own layout, and train/ + val/. */
static void test_importer_splits(void)
{
    Store *s = imagefolder_open(tpath("rt-fixed-rgb"), 0.5, 1);
    ok(s && s->info.split[0].count == 12 && s->info.split[1].count == 5 &&
           strcmp(s->info.class_names[0], "airplane") == 0,
       "import of a files: tree reads it as files: does (%s)", s ? "ok" : imgset_error());
    store_close(s);
    ImageShape rgb = {4, 4, 3};
    put_png(tpath("tv2/train/x/a.png"), rgb, 1);
    s = imagefolder_open(tpath("tv2"), 0.5, 1);
    ok(s == NULL && strstr(imgset_error(), "no test/ (or val/)"), "train/ alone: %s",
       imgset_error());
    put_png(tpath("tv2/val/x/b.png"), rgb, 2);
    s = imagefolder_open(tpath("tv2"), 0.5, 1);
    uint8_t buf[48];
    ImageShape shape;
    int32_t label;
    ok(s && s->info.split[1].count == 1 &&
           store_read_image(s, 1, 0, buf, sizeof buf, &shape, &label) == 0 && buf[0] == 2,
       "train/ + val/: val is the test split (%s)", s ? "ok" : imgset_error());
    store_close(s);
    char uri[600];
    snprintf(uri, sizeof uri, "files:%s", tpath("tv2"));
    s = store_open(uri);
    ok(s == NULL && strstr(imgset_error(), "no test/"), "files: wants test/, not val/: %s",
       imgset_error());
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(void)
{
    if (!mkdtemp(temp_dir)) {
        ok(0, "mkdtemp: %s", strerror(errno));
        return tap_done();
    }
    const char *sorted[3] = {"airplane", "bird", "cat"};
    const char *unsorted[3] = {"zebra", "ant", "moose"};
    test_round_trip("fixed-rgb", 0, 3, sorted);
    test_round_trip("ragged-rgb", 1, 3, unsorted);
    test_round_trip("fixed-grey", 0, 1, unsorted);
    test_writer_errors();
    test_foreign_tree();
    test_grey_and_names();
    test_heldout();
    test_tiny_imagenet();
    test_importer_splits();
    nftw(temp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return tap_done();
}
