/* test_import.c — the CIFAR-10 and IDX importers on files the test writes, bad input included. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "error.h"
#include "import.h"
#include "tap.h"

static char tmp_dir[] = "/tmp/imgset-test-import-XXXXXX";
static char made[64][4200];   /* files this test wrote, removed at the end */
static int n_made;

/* tmp_dir/name (static buffer rotation so two paths can be used at once). */
static const char *path_of(const char *name)
{
    static char paths[8][4200];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, sizeof paths[0], "%s/%s", tmp_dir, name);
    return p;
}

static void remember(const char *path)
{
    for (int i = 0; i < n_made; i++)
        if (strcmp(made[i], path) == 0)
            return;
    if (n_made < 64)
        snprintf(made[n_made++], sizeof made[0], "%s", path);
}

static void write_file(const char *name, const void *data, size_t size)
{
    const char *path = path_of(name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        printf("# cannot write %s\n", path);
        exit(1);
    }
    remember(path);
}

/* Write data gzip'd, in `members` gzip members (concatenated). */
static void write_gz(const char *name, const uint8_t *data, size_t size, int members)
{
    const char *path = path_of(name);
    remove(path);
    size_t at = 0;
    for (int m = 0; m < members; m++) {
        size_t part = m == members - 1 ? size - at : size / (size_t)members;
        gzFile gz = gzopen(path, m == 0 ? "wb" : "ab");
        if (!gz || (part && gzwrite(gz, data + at, (unsigned)part) != (int)part) ||
            gzclose(gz) != Z_OK) {
            printf("# cannot write %s\n", path);
            exit(1);
        }
        at += part;
    }
    remember(path);
}

static void remove_file(const char *name)
{
    remove(path_of(name));
}

/* ---- CIFAR-10 --------------------------------------------------------------------------- */

/* The pixel byte of record r's channel c at (y, x): distinct enough to catch a mix-up. */
static uint8_t cifar_pixel(int r, int c, int y, int x)
{
    return (uint8_t)(r * 53 + c * 101 + y * 7 + x * 3 + (y * x) % 5);
}

/* A batch of `records` records whose record r has label labels[r] and id base + r. */
static uint8_t *cifar_batch(int records, int base, const int *labels)
{
    uint8_t *b = malloc((size_t)records * CIFAR10_RECORD);
    for (int r = 0; r < records; r++) {
        uint8_t *rec = b + (size_t)r * CIFAR10_RECORD;
        rec[0] = (uint8_t)labels[r];
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    rec[1 + c * 1024 + y * 32 + x] = cifar_pixel(base + r, c, y, x);
    }
    return b;
}

static const char meta_text[] =
    "airplane\nautomobile\r\n\nbird\ncat  \n\tdeer\ndog\nfrog\nhorse\n\nship\ntruck\n\n";

static void write_cifar(void)
{
    int train1[] = {0, 9, 3}, train2[] = {5, 1}, test[] = {7, 2};
    uint8_t *b1 = cifar_batch(3, 0, train1), *b2 = cifar_batch(2, 3, train2),
            *bt = cifar_batch(2, 100, test);
    write_file("data_batch_1.bin", b1, 3 * CIFAR10_RECORD);
    write_file("data_batch_2.bin", b2, 2 * CIFAR10_RECORD);
    write_file("test_batch.bin", bt, 2 * CIFAR10_RECORD);
    write_file("batches.meta.txt", meta_text, strlen(meta_text));
    free(b1);
    free(b2);
    free(bt);
}

static void test_cifar10(void)
{
    write_cifar();
    Store *s = import_cifar10_open(tmp_dir);
    ok(s != NULL, "import 2 train batches + test batch: %s", s ? "" : imgset_error());
    if (!s)
        return;
    ok(strcmp(s->info.name, "cifar10") == 0, "name cifar10");
    ok(s->info.split[SPLIT_TRAIN].count == 5 && s->info.split[SPLIT_TEST].count == 2,
       "5 train, 2 test images");
    ok(s->info.num_classes == 10 && strcmp(s->info.class_names[0], "airplane") == 0 &&
           strcmp(s->info.class_names[1], "automobile") == 0 &&
           strcmp(s->info.class_names[3], "cat") == 0 &&
           strcmp(s->info.class_names[4], "deer") == 0 &&
           strcmp(s->info.class_names[9], "truck") == 0,
       "class names from batches.meta.txt (blank lines, CR and spaces dropped)");
    ok(image_shape_equal(s->info.split[SPLIT_TEST].shape, (ImageShape){32, 32, 3}),
       "32x32x3");
    static const int labels[2][5] = {{0, 9, 3, 5, 1}, {7, 2}};
    static const int ids[2][5] = {{0, 1, 2, 3, 4}, {100, 101}};
    int exact = 1, labels_ok = 1;
    uint8_t img[32 * 32 * 3];
    for (int split = 0; split < 2; split++)
        for (int i = 0; i < s->info.split[split].count; i++) {
            ImageShape shape;
            int32_t label;
            if (store_read_image(s, split, i, img, sizeof img, &shape, &label) < 0) {
                exact = 0;
                continue;
            }
            labels_ok &= label == labels[split][i];
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    for (int c = 0; c < 3; c++)
                        exact &= img[(y * 32 + x) * 3 + c] == cifar_pixel(ids[split][i], c, y, x);
        }
    ok(labels_ok, "labels across both train batches and the test batch");
    ok(exact, "CHW planes become HWC exactly, across batches");
    ImageShape shape;
    int32_t label;
    ok(store_read_image(s, SPLIT_TRAIN, 5, img, sizeof img, &shape, &label) < 0,
       "train index 5 is out of range");
    store_close(s);

    /* A record with label 10 in data_batch_2: names the file and the record. */
    int bad[] = {5, 10};
    uint8_t *b = cifar_batch(2, 3, bad);
    write_file("data_batch_2.bin", b, 2 * CIFAR10_RECORD);
    s = import_cifar10_open(tmp_dir);
    ok(!s && strstr(imgset_error(), "data_batch_2.bin") && strstr(imgset_error(), "record 1") &&
           strstr(imgset_error(), "10"),
       "label 10 fails naming file and record: %s", imgset_error());
    store_close(s);

    /* A size that is not a multiple of 3073. */
    write_file("data_batch_2.bin", b, 2 * CIFAR10_RECORD - 1);
    s = import_cifar10_open(tmp_dir);
    ok(!s && strstr(imgset_error(), "data_batch_2.bin") && strstr(imgset_error(), "6145"),
       "truncated batch fails naming file and size: %s", imgset_error());
    store_close(s);
    free(b);

    /* A gap: data_batch_3 without data_batch_2. */
    write_cifar();
    remove_file("data_batch_2.bin");
    int one[] = {4};
    b = cifar_batch(1, 9, one);
    write_file("data_batch_3.bin", b, CIFAR10_RECORD);
    free(b);
    s = import_cifar10_open(tmp_dir);
    ok(!s && strstr(imgset_error(), "data_batch_2.bin") && strstr(imgset_error(), "missing"),
       "a gap in the train batches fails: %s", imgset_error());
    store_close(s);
    remove_file("data_batch_3.bin");

    /* Only data_batch_1: a smaller train split. */
    s = import_cifar10_open(tmp_dir);
    ok(s && s->info.split[SPLIT_TRAIN].count == 3, "data_batch_1 alone gives 3 train images");
    store_close(s);

    remove_file("test_batch.bin");
    s = import_cifar10_open(tmp_dir);
    ok(!s && strstr(imgset_error(), "test_batch.bin") && strstr(imgset_error(), "missing"),
       "missing test_batch.bin fails: %s", imgset_error());
    store_close(s);

    write_cifar();
    remove_file("batches.meta.txt");
    s = import_cifar10_open(tmp_dir);
    ok(!s && strstr(imgset_error(), "batches.meta.txt"), "missing meta fails: %s",
       imgset_error());
    store_close(s);

    write_file("batches.meta.txt", "a\nb\nc\n", 6);
    s = import_cifar10_open(tmp_dir);
    ok(!s && strstr(imgset_error(), "3 class names"), "3 class names fail: %s", imgset_error());
    store_close(s);
    write_cifar();

    s = import_cifar10_open("/nonexistent-imgset-dir");
    ok(!s && strstr(imgset_error(), "/nonexistent-imgset-dir/"), "missing directory fails: %s",
       imgset_error());

    /* The parsers directly. */
    DatasetInfo info = {0};
    static const char slash[] = "a\nb\nc\nd\ne/f\ng\nh\ni\nj\nk\n";
    ok(cifar10_parse_meta((const uint8_t *)slash, strlen(slash), "m", &info) < 0 &&
           strstr(imgset_error(), "line 5"),
       "class name with '/' fails: %s", imgset_error());
    static const char eleven[] = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\n";
    ok(cifar10_parse_meta((const uint8_t *)eleven, strlen(eleven), "m", &info) < 0,
       "11 class names fail: %s", imgset_error());
    ok(cifar10_parse_meta((const uint8_t *)eleven, strlen(eleven) - 2, "m", &info) == 0 &&
           info.num_classes == 10 && strcmp(info.class_names[9], "j") == 0,
       "10 names without a final newline parse");
    dataset_info_free(&info);
    int64_t records = -1;
    ok(cifar10_check_batch(NULL, 0, "empty", &records) == 0 && records == 0,
       "an empty batch has 0 records");
}

/* ---- IDX -------------------------------------------------------------------------------- */

/* An IDX buffer: magic type/ndims, dims, then data. Returns its size. */
static size_t idx_make(uint8_t *out, int ndims, const uint32_t *dims, const uint8_t *data,
                       size_t data_size)
{
    out[0] = out[1] = 0;
    out[2] = 0x08;
    out[3] = (uint8_t)ndims;
    for (int i = 0; i < ndims; i++) {
        out[4 + 4 * i] = (uint8_t)(dims[i] >> 24);
        out[5 + 4 * i] = (uint8_t)(dims[i] >> 16);
        out[6 + 4 * i] = (uint8_t)(dims[i] >> 8);
        out[7 + 4 * i] = (uint8_t)dims[i];
    }
    memcpy(out + 4 + 4 * ndims, data, data_size);
    return 4 + 4 * (size_t)ndims + data_size;
}

static uint8_t idx_pixel(int split, int n, int y, int x)
{
    return (uint8_t)(split * 97 + n * 31 + y * 11 + x * 5 + 1);
}

/* Write images (N, 4, 3) and labels for a split; gz selects gzip'd files. */
static void write_idx(const char *images, const char *labels, int split, int n,
                      const uint8_t *label_values, int gz)
{
    uint8_t pixels[64 * 12], buf[4096];
    for (int i = 0; i < n; i++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 3; x++)
                pixels[i * 12 + y * 3 + x] = idx_pixel(split, i, y, x);
    uint32_t dims[3] = {(uint32_t)n, 4, 3};
    size_t size = idx_make(buf, 3, dims, pixels, (size_t)n * 12);
    if (gz)
        write_gz(images, buf, size, gz);
    else
        write_file(images, buf, size);
    size = idx_make(buf, 1, dims, label_values, (size_t)n);
    if (gz)
        write_gz(labels, buf, size, gz);
    else
        write_file(labels, buf, size);
}

/* IDX pairs, plain and gzip'd: the set they make, pixel and label exact; no test pair. */
static void test_idx_import(void)
{
    mkdir(path_of("mnisty"), 0700);
    static const uint8_t train_labels[5] = {3, 0, 9, 1, 3}, test_labels[3] = {2, 8, 0};
    write_idx("mnisty/train-images", "mnisty/train-labels", 0, 5, train_labels, 0);
    write_idx("mnisty/test-images.gz", "mnisty/test-labels.gz", 1, 3, test_labels, 1);
    char ti[4200], tl[4200], vi[4200], vl[4200];
    snprintf(ti, sizeof ti, "%s", path_of("mnisty/train-images"));
    snprintf(tl, sizeof tl, "%s", path_of("mnisty/train-labels"));
    snprintf(vi, sizeof vi, "%s", path_of("mnisty/test-images.gz"));
    snprintf(vl, sizeof vl, "%s", path_of("mnisty/test-labels.gz"));

    Store *s = import_idx_open(ti, tl, vi, vl);
    ok(s != NULL, "import plain train + gzip'd test IDX: %s", s ? "" : imgset_error());
    if (s) {
        ok(strcmp(s->info.name, "mnisty") == 0, "name from the directory: %s", s->info.name);
        ok(s->info.split[SPLIT_TRAIN].count == 5 && s->info.split[SPLIT_TEST].count == 3,
           "5 train, 3 test images");
        ok(image_shape_equal(s->info.split[SPLIT_TRAIN].shape, (ImageShape){4, 3, 1}),
           "shape 4x3x1");
        ok(s->info.num_classes == 10 && strcmp(s->info.class_names[0], "0") == 0 &&
               strcmp(s->info.class_names[9], "9") == 0,
           "labels within 0..9 give classes \"0\"..\"9\"");
        int exact = 1, labels_ok = 1;
        for (int split = 0; split < 2; split++)
            for (int i = 0; i < s->info.split[split].count; i++) {
                uint8_t img[12];
                ImageShape shape;
                int32_t label;
                if (store_read_image(s, split, i, img, sizeof img, &shape, &label) < 0) {
                    exact = 0;
                    continue;
                }
                labels_ok &= label == (split ? test_labels : train_labels)[i];
                for (int k = 0; k < 12; k++)
                    exact &= img[k] == idx_pixel(split, i, k / 3, k % 3);
            }
        ok(exact, "pixels exact, plain and gzip");
        ok(labels_ok, "labels exact, plain and gzip");
        uint8_t small[11];
        ImageShape shape;
        int32_t label;
        ok(store_read_image(s, SPLIT_TRAIN, 0, small, sizeof small, &shape, &label) < 0,
           "a too small buffer fails");
    }
    store_close(s);

    /* No test pair: an empty test split. Labels up to 12: 13 classes. */
    static const uint8_t wide[5] = {12, 0, 1, 2, 3};
    write_idx("mnisty/wide-images.gz", "mnisty/wide-labels.gz", 0, 5, wide, 3);
    char wi[4200], wl[4200];
    snprintf(wi, sizeof wi, "%s", path_of("mnisty/wide-images.gz"));
    snprintf(wl, sizeof wl, "%s", path_of("mnisty/wide-labels.gz"));
    s = import_idx_open(wi, wl, NULL, NULL);
    ok(s && s->info.split[SPLIT_TEST].count == 0 && s->info.num_classes == 13 &&
           strcmp(s->info.class_names[12], "12") == 0,
       "no test pair: empty test split; label 12 gives 13 classes (3 gzip members)");
    if (s) {
        uint8_t img[12];
        ImageShape shape;
        int32_t label;
        ok(store_read_image(s, SPLIT_TRAIN, 4, img, sizeof img, &shape, &label) == 0 &&
               label == 3 && img[11] == idx_pixel(0, 4, 3, 2),
           "last image of a multi-member gzip file");
    }
    store_close(s);
    ok(import_idx_open(ti, tl, vi, NULL) == NULL && strstr(imgset_error(), "both"),
       "test images without test labels fails: %s", imgset_error());
}

/* Bad IDX files (made by test_idx_import): each an error naming the file. */
static void test_idx_bad_files(void)
{
    char ti[4200], tl[4200], vl[4200];
    snprintf(ti, sizeof ti, "%s", path_of("mnisty/train-images"));
    snprintf(tl, sizeof tl, "%s", path_of("mnisty/train-labels"));
    snprintf(vl, sizeof vl, "%s", path_of("mnisty/test-labels.gz"));
    /* Wrong magic: the labels file given as images. */
    Store *s = import_idx_open(tl, tl, NULL, NULL);
    ok(!s && strstr(imgset_error(), tl) && strstr(imgset_error(), "0x00000801") &&
           strstr(imgset_error(), "expected 0x00000803"),
       "labels as images: %s", imgset_error());

    /* Count mismatch between images (5) and labels (3). */
    s = import_idx_open(ti, vl, NULL, NULL);
    ok(!s && strstr(imgset_error(), ti) && strstr(imgset_error(), vl) &&
           strstr(imgset_error(), "5") && strstr(imgset_error(), "3"),
       "count mismatch names both files: %s", imgset_error());

    /* Truncated plain file, trailing bytes, truncated gzip. */
    uint8_t buf[4096], pixels[60] = {0};
    uint32_t dims[3] = {5, 4, 3};
    size_t size = idx_make(buf, 3, dims, pixels, 60);
    write_file("mnisty/cut", buf, size - 1);
    char cut[4200];
    snprintf(cut, sizeof cut, "%s", path_of("mnisty/cut"));
    s = import_idx_open(cut, tl, NULL, NULL);
    ok(!s && strstr(imgset_error(), cut) && strstr(imgset_error(), "truncated"),
       "truncated images fail: %s", imgset_error());
    write_file("mnisty/cut", buf, size + 1);
    s = import_idx_open(cut, tl, NULL, NULL);
    ok(!s && strstr(imgset_error(), cut) && strstr(imgset_error(), "after"),
       "trailing bytes fail: %s", imgset_error());
    write_gz("mnisty/cut.gz", buf, size, 1);
    char cutgz[4200];
    snprintf(cutgz, sizeof cutgz, "%s", path_of("mnisty/cut.gz"));
    FILE *f = fopen(cutgz, "rb");
    uint8_t gz[4096];
    size_t gz_size = f ? fread(gz, 1, sizeof gz, f) : 0;
    if (f)
        fclose(f);
    write_file("mnisty/cut.gz", gz, gz_size - 10);
    s = import_idx_open(cutgz, tl, NULL, NULL);
    ok(!s && strstr(imgset_error(), cutgz) && strstr(imgset_error(), "truncated"),
       "truncated gzip fails: %s", imgset_error());
    gz[gz_size / 2] ^= 0x55;
    write_file("mnisty/cut.gz", gz, gz_size);
    s = import_idx_open(cutgz, tl, NULL, NULL);
    ok(!s && strstr(imgset_error(), cutgz), "corrupt gzip fails: %s", imgset_error());
    ok(import_idx_open(path_of("mnisty/none"), tl, NULL, NULL) == NULL &&
           strstr(imgset_error(), "mnisty/none") && strstr(imgset_error(), "missing"),
       "missing file fails: %s", imgset_error());
}

/* IDX header checks on buffers: huge sides, overflowing dims, short headers. */
static void test_idx_headers(void)
{
    uint8_t buf[4096], pixels[60] = {0};
    size_t size;
    IdxArray a;
    uint32_t huge[3] = {1, 70000, 3};
    size = idx_make(buf, 3, huge, pixels, 0);
    ok(idx_parse(buf, size, 3, "h", &a) < 0 && strstr(imgset_error(), "70000"),
       "height 70000 fails: %s", imgset_error());
    uint32_t many[3] = {0xFFFFFFFFu, 16384, 16384};
    size = idx_make(buf, 3, many, pixels, 0);
    ok(idx_parse(buf, size, 3, "m", &a) < 0 && strstr(imgset_error(), "truncated"),
       "4G images of 16384x16384 in 16 bytes: %s", imgset_error());
    ok(idx_parse(buf, 10, 3, "s", &a) < 0 && strstr(imgset_error(), "header"),
       "short header fails: %s", imgset_error());
    ok(idx_parse(buf, 2, 3, "t", &a) < 0, "2 bytes fail: %s", imgset_error());
    uint32_t empty[3] = {0, 28, 28};
    size = idx_make(buf, 3, empty, pixels, 0);
    ok(idx_parse(buf, size, 3, "e", &a) == 0 && a.dims[0] == 0, "0 images parse");
}

/* A gzip'd header announcing more than the cap stops before inflating it all. */
static void test_idx_gzip_cap(void)
{
    uint8_t *out;
    size_t out_size;
    uint32_t big[3] = {1000, 100, 100};
    uint8_t *zeros = calloc(1, 1000 * 100 * 100 + 64);
    size_t size = idx_make(zeros, 3, big, zeros + 64, 0) + 1000 * 100 * 100;
    uLongf zlen = compressBound(size) + 64;
    uint8_t *packed = malloc(zlen);
    write_gz("mnisty/big.gz", zeros, size, 1);
    FILE *f = fopen(path_of("mnisty/big.gz"), "rb");
    zlen = f ? fread(packed, 1, zlen, f) : 0;
    if (f)
        fclose(f);
    ok(idx_decode(packed, zlen, "big", 1 << 20, &out, &out_size) < 0 &&
           strstr(imgset_error(), "announces"),
       "10 MB announced, 1 MB cap: %s", imgset_error());
    ok(idx_decode(packed, zlen, "big", 1 << 25, &out, &out_size) == 0 && out_size == size,
       "within the cap it inflates to %zu bytes", size);
    free(out);
    free(packed);
    free(zeros);
}

static void test_fashion_mnist(void)
{
    const char *dir = "/usr/share/datasets/fashion-mnist";
    char p[4][256];
    const char *names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    for (int i = 0; i < 4; i++) {
        snprintf(p[i], sizeof p[i], "%s/%s", dir, names[i]);
        if (access(p[i], R_OK) != 0) {
            skip("import Fashion-MNIST", "no /usr/share/datasets/fashion-mnist (Debian "
                                         "package dataset-fashion-mnist)");
            return;
        }
    }
    Store *s = import_idx_open(p[0], p[1], p[2], p[3]);
    ok(s != NULL, "import Fashion-MNIST: %s", s ? "" : imgset_error());
    if (!s)
        return;
    ok(s->info.split[SPLIT_TRAIN].count == 60000 && s->info.split[SPLIT_TEST].count == 10000 &&
           image_shape_equal(s->info.split[SPLIT_TRAIN].shape, (ImageShape){28, 28, 1}) &&
           s->info.num_classes == 10 && strcmp(s->info.name, "fashion-mnist") == 0,
       "Fashion-MNIST: 60000/10000 28x28x1, 10 classes, name %s", s->info.name);
    uint8_t img[28 * 28];
    ImageShape shape;
    int32_t label = -1, test_label = -1;
    long sum = 0;
    if (store_read_image(s, SPLIT_TRAIN, 0, img, sizeof img, &shape, &label) == 0)
        for (int i = 0; i < 28 * 28; i++)
            sum += img[i];
    store_read_image(s, SPLIT_TEST, 0, img, sizeof img, &shape, &test_label);
    ok(label == 9 && test_label == 9 && sum == 76247,
       "first labels 9 (ankle boot) / 9, first image pixel sum 76247 (got %d, %d, %ld)", label,
       test_label, sum);
    store_close(s);
}

int main(void)
{
    if (!mkdtemp(tmp_dir)) {
        printf("not ok 1 - mkdtemp\n1..1\n");
        return 1;
    }
    test_cifar10();
    test_idx_import();
    test_idx_bad_files();
    test_idx_headers();
    test_idx_gzip_cap();
    test_fashion_mnist();
    for (int i = n_made - 1; i >= 0; i--)
        remove(made[i]);
    rmdir(path_of("mnisty"));
    rmdir(tmp_dir);
    return tap_done();
}
