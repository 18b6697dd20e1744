/* test_checkpoint.c — safetensors parsing (valid and hostile headers) and model checkpoints:
 * round trip, atomic writes, refusing to overwrite, and clear errors for corrupt files. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "error.h"
#include "model.h"
#include "nn.h"
#include "rng.h"
#include "tap.h"

static char dir[256];

/* dir/name in one of 8 rotating static buffers. */
static const char *path_of(const char *name)
{
    static char p[8][512];
    static int next;
    char *b = p[next++ % 8];
    snprintf(b, sizeof p[0], "%s/%s", dir, name);
    return b;
}

/* Parse `header` followed by `data_len` zero bytes; returns the result, message in imgset_error(). */
static int parse_raw(const char *header, size_t data_len, Safetensors *st, void **keep)
{
    size_t h = strlen(header), len = 8 + h + data_len;
    uint8_t *file = calloc(1, len);
    for (int i = 0; i < 8; i++)
        file[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(file + 8, header, h);
    size_t arena_len = safetensors_arena_size(file, len);
    void *arena = malloc(arena_len);
    int rc = safetensors_parse(st, file, len, arena, arena_len, "test.safetensors");
    if (keep) {
        keep[0] = file, keep[1] = arena;
    } else {
        free(file);
        free(arena);
    }
    return rc;
}

/* Expect the header to be rejected with a message containing `needle`. */
static void bad_header(const char *what, const char *header, size_t data_len, const char *needle)
{
    Safetensors st;
    int rc = parse_raw(header, data_len, &st, NULL);
    ok(rc < 0 && strstr(imgset_error(), "test.safetensors") && strstr(imgset_error(), needle),
       "rejects %s: %s", what, rc < 0 ? imgset_error() : "(accepted)");
}

static void test_parser(void)
{
    Safetensors st;
    void *keep[2];
    const char *good =
        "{\"__metadata__\":{\"k\":\"v\\u00e9\\ud83d\\ude00\\n\",\"a\":\"\"},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]} ,"
        "\"a\" : { \"shape\" : [ ] , \"data_offsets\" : [24,26], \"dtype\" : \"BF16\" },"
        "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[26,26]}}    ";
    int rc = parse_raw(good, 26, &st, keep);
    ok(rc == 0, "parses a valid header with metadata, spacing, any key order, padding (%s)",
       rc ? imgset_error() : "ok");
    if (rc == 0) {
        const SafetensorsTensor *b = safetensors_find(&st, "b"), *a = safetensors_find(&st, "a");
        ok(b && b->ndim == 2 && b->shape[0] == 2 && b->shape[1] == 3 && b->begin == 0 &&
           b->end == 24 && strcmp(b->dtype, "F32") == 0, "tensor b: F32 [2,3] at [0,24)");
        ok(a && a->ndim == 0 && strcmp(a->dtype, "BF16") == 0 && a->dtype_size == 2,
           "tensor a: a BF16 scalar");
        ok(!safetensors_find(&st, "c") && st.num_tensors == 3, "three tensors, no others");
        const char *v = safetensors_meta(&st, "k");
        ok(v && strcmp(v, "v\xc3\xa9\xf0\x9f\x98\x80\n") == 0,
           "metadata string escapes decoded to UTF-8 (\\u00e9, surrogate pair, \\n)");
        ok(safetensors_meta(&st, "a") && !safetensors_meta(&st, "x"), "metadata lookup");
        float f[6];
        ok(safetensors_read_f32(&st, b, f, 6, "t") == 0 && f[0] == 0.0f, "reads F32 data");
        ok(safetensors_read_f32(&st, a, f, 1, "t") < 0 && strstr(imgset_error(), "BF16"),
           "refuses to read BF16 as F32");
        free(keep[0]);
        free(keep[1]);
    }
    ok(parse_raw("{}", 0, &st, NULL) == 0 && st.num_tensors == 0, "an empty header is valid");

    bad_header("a header not starting with '{'", " {}", 0, "must start");
    bad_header("data after the header object", "{}x", 0, "after the header");
    bad_header("trailing newline padding (only spaces allowed)", "{}\n", 0, "after the header");
    bad_header("an unterminated object", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "expected");
    bad_header("a truncated string", "{\"abc", 0, "unterminated");
    bad_header("an unknown dtype", "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype");
    bad_header("a missing key", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "needs dtype");
    bad_header("an unknown key", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "unexpected");
    bad_header("a repeated key", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "repeated");
    bad_header("a negative dimension", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "non-negative");
    bad_header("a fractional offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4, "integer");
    bad_header("a leading zero", "{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, "leading zero");
    bad_header("a huge integer", "{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4, "too large");
    bad_header("nine dimensions", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, "too many");
    bad_header("three data offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}", 4, "too many");
    bad_header("a size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "need 8");
    bad_header("offsets past the data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "outside");
    bad_header("end before begin", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, "outside");
    bad_header("a shape whose size overflows", "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0, "overflows");
    bad_header("overlapping tensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlap");
    bad_header("a hole between tensors",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "hole");
    bad_header("bytes after the last tensor", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 5, "after the last");
    bad_header("a duplicate tensor name",
               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "twice");
    bad_header("a duplicate metadata key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "twice");
    bad_header("two __metadata__ objects", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "twice");
    bad_header("a non-string metadata value", "{\"__metadata__\":{\"k\":1}}", 0, "strings");
    bad_header("invalid UTF-8", "{\"\xff\":{}}", 0, "UTF-8");
    bad_header("an overlong UTF-8 form", "{\"\xc0\xaf\":{}}", 0, "UTF-8");
    bad_header("a UTF-8 surrogate", "{\"\xed\xa0\x80\":{}}", 0, "UTF-8");
    bad_header("a lone surrogate escape", "{\"__metadata__\":{\"k\":\"\\ud800x\"}}", 0, "surrogate");
    bad_header("a lone low surrogate", "{\"__metadata__\":{\"k\":\"\\udc00\"}}", 0, "surrogate");
    bad_header("an escaped NUL", "{\"__metadata__\":{\"k\":\"a\\u0000\"}}", 0, "NUL");
    bad_header("a bad escape", "{\"__metadata__\":{\"k\":\"\\x\"}}", 0, "escape");
    bad_header("a raw control character", "{\"__metadata__\":{\"k\":\"a\nb\"}}", 0, "control");
    bad_header("a tensor that is not an object", "{\"a\":[1]}", 0, "expected '{'");

    /* lengths in the 8-byte prefix */
    uint8_t tiny[5] = {1, 0, 0, 0, 0};
    uint8_t arena[64];
    ok(safetensors_parse(&st, tiny, sizeof tiny, arena, sizeof arena, "short.st") < 0 &&
       strstr(imgset_error(), "short.st") && strstr(imgset_error(), "shorter"),
       "rejects a file shorter than 8 bytes: %s", imgset_error());
    uint8_t big[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    ok(safetensors_parse(&st, big, sizeof big, arena, sizeof arena, "big.st") < 0 &&
       strstr(imgset_error(), "exceeds"), "rejects a header length beyond the file: %s",
       imgset_error());
    uint8_t over[16] = {0, 0, 0, 0, 1, 0, 0, 0};   /* 2^32 */
    ok(safetensors_parse(&st, over, sizeof over, arena, sizeof arena, "over.st") < 0,
       "rejects a header length of 2^32 in a 16-byte file");
    uint8_t ok_file[10] = {2, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    ok(safetensors_parse(&st, ok_file, sizeof ok_file, arena, 8, "arena.st") < 0 &&
       strstr(imgset_error(), "arena"), "refuses a too-small arena");
}

/* Bytes of a whole file, or NULL. */
static uint8_t *read_whole(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len + 1);
    if (fread(b, 1, *len, f) != *len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

static void write_whole(const char *path, const uint8_t *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, len, f);
    fclose(f);
}

/* Write a checkpoint whose header is `header` + the data of `valid` (to corrupt metadata). */
static void replace_header(const char *path, const uint8_t *valid, const char *header)
{
    uint64_t old = 0;
    for (int i = 7; i >= 0; i--)
        old = old << 8 | valid[i];
    size_t vlen;
    uint8_t *whole = read_whole(path_of("good.safetensors"), &vlen);
    size_t h = strlen(header), data = vlen - 8 - old;
    uint8_t *b = malloc(8 + h + data);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)h >> (8 * i));
    memcpy(b + 8, header, h);
    memcpy(b + 8 + h, whole + 8 + old, data);
    write_whole(path, b, 8 + h + data);
    free(b);
    free(whole);
}

/* The header of a file as a C string (caller frees). */
static char *header_of(const uint8_t *file)
{
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = h << 8 | file[i];
    char *s = malloc(h + 1);
    memcpy(s, file + 8, h);
    s[h] = 0;
    return s;
}

/* Replace the first occurrence of `from` with `to` in s (same or any length); new string. */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    if (!at)
        return strdup(s);
    size_t n = strlen(s) - strlen(from) + strlen(to);
    char *r = malloc(n + 1);
    snprintf(r, n + 1, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    return r;
}

/* The number of ops of kind in g. */
static int count_ops(const ModelGraph *g, int kind)
{
    int n = 0;
    for (int i = 0; i < g->num_ops; i++)
        n += g->ops[i].kind == kind;
    return n;
}

static void bad_checkpoint(const char *what, const char *path, const char *needle)
{
    CheckpointInfo info;
    Model *m = checkpoint_load(path, 4, &info);
    ok(!m && strstr(imgset_error(), path) && strstr(imgset_error(), needle),
       "corrupt checkpoint (%s) gives a clear error: %s", what, m ? "(loaded)" : imgset_error());
    model_free(m);
}

/* Save a checkpoint (good.safetensors) and load it back: weights, momentum, step, sampler
 * position, shape and class names round-trip; no overwrite without asking. Returns the model
 * saved (test_restore compares with it), or NULL. */
static Model *test_round_trip(void)
{
    Model *m = model_create("cnn-small", 3, 8, 8, 4, 4, 7);
    if (!ok(m != NULL, "create cnn-small 3x8x8, 4 classes"))
        return NULL;
    /* make velocity and step non-trivial */
    Rng r = rng_make(5, 5);
    for (size_t i = 0; i < m->graph.param_floats; i++)
        m->velocity[i] = m->graph.tensors[0].trainable ? rng_uniform(&r) : 0;
    m->step = 123;
    const char *names[4] = {"cat", "dog \"quoted\"", "back\\slash", "caf\xc3\xa9 \xe2\x98\x95"};
    TrainState state = {123, 0xFFFFFFFFFFFFFFFFull, 4, 1000};
    const char *good = path_of("good.safetensors");
    ok(checkpoint_save(good, m, &state, names, 0) == 0, "save a checkpoint (%s)", imgset_error());

    DIR *d = opendir(dir);
    int temps = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        temps += strstr(e->d_name, ".tmp-") != NULL;
    if (d)
        closedir(d);
    ok(temps == 0, "no temporary file is left behind");

    CheckpointInfo info;
    Model *back = checkpoint_load(good, 2, &info);
    ok(back != NULL, "load it back (%s)", back ? "ok" : imgset_error());
    if (back) {
        ok(memcmp(back->params, m->params, sizeof(float) * m->graph.param_floats) == 0,
           "weights round-trip bit for bit");
        int vel_same = 1;
        for (int i = 0; i < m->graph.num_tensors; i++) {
            const ModelTensor *t = &m->graph.tensors[i];
            if (t->trainable &&
                memcmp(back->velocity + t->offset, m->velocity + t->offset, 4 * t->count))
                vel_same = 0;
        }
        ok(vel_same, "momentum buffers round-trip");
        ok(back->step == 123 && info.state.step == 123 &&
           info.state.sampler_seed == 0xFFFFFFFFFFFFFFFFull && info.state.sampler_epoch == 4 &&
           info.state.sampler_position == 1000 && info.seed == 7,
           "step, seed and sampler position round-trip (uint64 max seed included)");
        ok(strcmp(info.spec.arch, "cnn-small") == 0 && info.spec.channels == 3 &&
           info.spec.height == 8 && info.spec.classes == 4 && back->max_batch == 2,
           "arch, input shape and classes round-trip");
        int names_same = info.class_names != NULL;
        for (int k = 0; names_same && k < 4; k++)
            names_same = strcmp(info.class_names[k], names[k]) == 0;
        ok(names_same, "class names with quotes, backslashes and UTF-8 round-trip");
        checkpoint_info_free(&info);
        model_free(back);
    }

    ok(checkpoint_save(good, m, &state, names, 0) < 0 &&
       strstr(imgset_error(), "already exists"), "refuses to overwrite without overwrite=1: %s",
       imgset_error());
    m->step = 124;
    state.step = 124;
    ok(checkpoint_save(path_of("second.safetensors"), m, &state, NULL, 0) == 0 &&
       checkpoint_save(path_of("second.safetensors"), m, &state, NULL, 1) == 0,
       "overwrite=1 replaces an existing checkpoint");
    back = checkpoint_load(path_of("second.safetensors"), 1, &info);
    ok(back && info.class_names == NULL && info.state.step == 124,
       "a checkpoint without class names loads (names NULL)");
    checkpoint_info_free(&info);
    model_free(back);
    return m;
}

/* Restore good.safetensors into an existing model (resume); another shape or architecture
 * is refused. */
static void test_restore(const Model *m)
{
    const char *good = path_of("good.safetensors");
    Model *other = model_create("cnn-small", 3, 8, 8, 4, 8, 99);
    ok(other && checkpoint_restore(good, other, NULL) == 0 &&
       memcmp(other->params, m->params, sizeof(float) * m->graph.param_floats) == 0 &&
       other->step == 123, "restore into an existing model (resume)");
    model_free(other);
    other = model_create("cnn-small", 3, 8, 8, 5, 8, 99);
    ok(other && checkpoint_restore(good, other, NULL) < 0 && strstr(imgset_error(), "5 classes"),
       "restore into a model of another shape fails: %s", imgset_error());
    model_free(other);
    other = model_create("mlp", 3, 8, 8, 4, 8, 99);
    ok(other && checkpoint_restore(good, other, NULL) < 0 && strstr(imgset_error(), "mlp"),
       "restore into another architecture fails");
    model_free(other);
}

/* Missing, truncated and corrupt files: errors naming the file. */
static void test_corrupt_files(void)
{
    const char *good = path_of("good.safetensors"), *bad = path_of("bad.safetensors");
    size_t len;
    uint8_t *file = read_whole(good, &len);
    bad_checkpoint("missing file", path_of("nope.safetensors"), "cannot open");
    write_whole(bad, file, len - 1);
    bad_checkpoint("truncated by one byte", bad, "bad.safetensors");
    write_whole(bad, file, 7);
    bad_checkpoint("truncated to 7 bytes", bad, "shorter");
    write_whole(bad, file, 0);
    bad_checkpoint("empty", bad, "shorter");
    uint8_t *copy = malloc(len);
    memcpy(copy, file, len);
    copy[20] = '!';   /* inside the JSON */
    write_whole(bad, copy, len);
    bad_checkpoint("garbage in the header", bad, "__metadata!_");
    memcpy(copy, file, len);
    copy[7] = 0x40;   /* absurd header length */
    write_whole(bad, copy, len);
    bad_checkpoint("absurd header length", bad, "exceeds");
    free(copy);
    free(file);
}

/* Edits of good.safetensors' JSON header: each an error naming what is wrong. */
static void test_header_edits(void)
{
    char good[512], bad[512];   /* copies: path_of's buffers rotate under replace_header */
    snprintf(good, sizeof good, "%s", path_of("good.safetensors"));
    snprintf(bad, sizeof bad, "%s", path_of("bad.safetensors"));
    size_t len;
    uint8_t *file = read_whole(good, &len);
    /* what to find, what to put there, the case, what the error must name */
    static const char *const edits[][4] = {
        {"\"fc2.bias\"", "\"fc9.bias\"", "a renamed tensor", "fc2.bias"},
        {"pg_imgset-checkpoint", "something-else", "wrong format", "not a pg_imgset checkpoint"},
        {"\"version\":\"2\"", "\"version\":\"9\"", "future version", "version 9"},
        {"\"activation\":\"relu\"", "\"activation\":\"swish\"", "unknown activation",
         "\"activation\" = \"swish\" is not one of relu"},
        {"\"loss\":\"cce\"", "\"loss\":\"hinge\"", "unknown loss", "\"loss\" = \"hinge\""},
        {"\"normalize\":\"meanstd\"", "\"normalize\":\"zscore\"", "unknown normalisation",
         "normalize"},
        {"\"leaky_slope\":\"0.00999999978\"", "\"leaky_slope\":\"x\"", "a slope that is not a number",
         "leaky_slope"},
        {"\"leaky_slope\":\"0.00999999978\"", "\"leaky_slope\":\"2\"", "a slope outside [0, 1]",
         "slope 2 outside"},
        {"\"mean\":\"[0.5,0.5,0.5]\"", "\"mean\":\"[0.5,0.5]\"", "a mean per channel missing",
         "\"mean\" has 2 values for 3 channels"},
        {"\"std\":\"[0.5,0.5,0.5]\"", "\"std\":\"[0.5,0,0.5]\"", "a zero std",
         "channel 1"},
        {"\"std\":\"[0.5,0.5,0.5]\"", "\"std\":\"[0.5,nan,0.5]\"", "a NaN std",
         "\"std\" = \"[0.5,nan,0.5]\" is not a list"},
        {"\"mean\":\"[0.5,0.5,0.5]\"", "\"mean\":\"0.5\"", "a mean that is not a list",
         "not a list"},
        {"\"loss\":", "\"los\":", "a version 2 file without its loss", "no \"loss\""},
        {"\"classes\":\"4\"", "\"classes\":\"4x\"", "non-numeric metadata", "classes"},
        {"\"arch\":\"cnn-small\"", "\"arch\":\"cnn-huge\"", "unknown architecture", "cnn-huge"},
        {"\"height\":\"8\"", "\"height\":\"12\"", "shape that does not match the tensors", "shape"},
        {"\"sampler_position\":", "\"sampler_positio\":", "missing metadata key",
         "sampler_position"},
        {"\"dtype\":\"F32\"", "\"dtype\":\"I32\"", "wrong dtype", "I32"},
        {"\"class_names\":\"[", "\"class_names\":\"[\\\"extra\\\",", "too many class names",
         "class_names"},
    };
    char *h = header_of(file);
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        char *h2 = replace(h, edits[i][0], edits[i][1]);
        replace_header(bad, file, h2);
        bad_checkpoint(edits[i][2], bad, edits[i][3]);
        free(h2);
    }
    free(h);
    free(file);
}

/* Many random single-byte corruptions of the header: never a crash; either an error or a
 * valid load. */
static void test_random_corruptions(void)
{
    const char *good = path_of("good.safetensors"), *bad = path_of("bad.safetensors");
    size_t len;
    uint8_t *file = read_whole(good, &len);
    uint8_t *copy = malloc(len);
    CheckpointInfo info;
    Rng rr = rng_make(77, 0);
    int errors = 0, loads = 0;
    for (int i = 0; i < 200; i++) {
        memcpy(copy, file, len);
        size_t at = rng_below(&rr, 8 + 1024 < len ? 8 + 1024 : len);
        copy[at] = (uint8_t)rng_next(&rr);
        write_whole(bad, copy, len);
        Model *x = checkpoint_load(bad, 1, &info);
        if (x) {
            loads++;
            checkpoint_info_free(&info);
        } else
            errors += strstr(imgset_error(), "bad.safetensors") != NULL;
        model_free(x);
    }
    ok(errors + loads == 200, "200 random corruptions of the header: %d clear errors, %d still "
       "valid, no crash", errors, loads);
    free(copy);
    free(file);
}

/* A version 1 file (no recipe keys) means ReLU, cross-entropy, mean = std = 0.5; a version 2
 * file records the recipe, and resuming checks it. */
static void test_recipes(void)
{
    ModelSpec spec;
    model_spec_default(&spec, "mlp", 3, 4, 4, 3);
    spec.activation = ACT_LEAKY_RELU;
    spec.leaky_slope = 0.3f;
    spec.loss = LOSS_MAE;
    spec.normalize = NORM_MINMAX;
    const float mean[3] = {0.1f, 0.2f, 1.0f / 3.0f}, std[3] = {0.25f, 0.123456789f, 0.5f};
    memcpy(spec.mean, mean, sizeof mean);
    memcpy(spec.std, std, sizeof std);
    Model *m = model_create_spec(&spec, 2, 3);
    const char *path = path_of("recipe.safetensors"), *v1 = path_of("v1.safetensors");
    CheckpointInfo info;
    Model *back = m && checkpoint_save(path, m, NULL, NULL, 0) == 0
                      ? checkpoint_load(path, 2, &info) : NULL;
    ok(back && memcmp(&back->graph.spec, &m->graph.spec, sizeof spec) == 0 &&
           memcmp(&info.spec, &spec, sizeof spec) == 0,
       "activation, slope, loss, normalisation, mean and std round-trip exactly (%s)",
       back ? "ok" : imgset_error());
    if (back)
        checkpoint_info_free(&info);
    model_free(back);

    ModelSpec other = spec;
    other.activation = ACT_TANH;
    Model *o = model_create_spec(&other, 2, 3);
    ok(o && checkpoint_restore(path, o, NULL) < 0 && strstr(imgset_error(), "leaky-relu") &&
           strstr(imgset_error(), "tanh"),
       "resume with another activation is refused, naming both: %s", imgset_error());
    model_free(o);
    other = spec;
    other.std[1] = 0.2f;
    o = model_create_spec(&other, 2, 3);
    ok(o && checkpoint_restore(path, o, NULL) < 0 && strstr(imgset_error(), "std"),
       "resume with another normalisation is refused: %s", imgset_error());
    model_free(o);

    /* the same weights in a version 1 file: no recipe keys */
    size_t len;
    uint8_t *file = read_whole(path, &len);
    char *h = header_of(file), *h2 = replace(h, "\"version\":\"2\"", "\"version\":\"1\"");
    static const char *const keys[] = {"activation", "leaky_slope", "loss", "normalize", "mean",
                                       "std"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char key[32], *at, *end;
        snprintf(key, sizeof key, "\"%s\":\"", keys[i]);
        if ((at = strstr(h2, key)) && (end = strstr(at + strlen(key), "\",")))
            memmove(at, end + 2, strlen(end + 2) + 1);
    }
    uint64_t old = 0;   /* the old header's length: the data section follows it */
    for (int i = 7; i >= 0; i--)
        old = old << 8 | file[i];
    size_t hl = strlen(h2);
    uint8_t *edited = malloc(8 + hl + (len - 8 - old));
    for (int i = 0; i < 8; i++)
        edited[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(edited + 8, h2, hl);
    memcpy(edited + 8 + hl, file + 8 + old, len - 8 - old);
    write_whole(v1, edited, 8 + hl + (len - 8 - old));
    free(edited);
    back = checkpoint_load(v1, 2, &info);
    ok(back && !strstr(h2, "activation") && back->graph.spec.activation == ACT_RELU &&
           back->graph.spec.loss == LOSS_CCE && back->graph.spec.normalize == NORM_MEANSTD &&
           back->graph.spec.mean[0] == 0.5f && back->graph.spec.std[2] == 0.5f &&
           count_ops(&back->graph, OP_RELU) == 2,
       "a version 1 checkpoint loads as ReLU, cross-entropy, mean = std = 0.5 (%s)",
       back ? "ok" : imgset_error());
    if (back)
        checkpoint_info_free(&info);
    model_free(back);
    free(h);
    free(h2);
    free(file);
    model_free(m);
}

/* One SGD step of m on fixed data derived from step. */
static void train_step(Model *m, int64_t step)
{
    enum { N = 4 };
    float x[N * 3 * 8 * 8];
    int32_t labels[N];
    Rng rng = rng_make(9, (uint64_t)step);
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = rng_normal(&rng);
    for (int n = 0; n < N; n++)
        labels[n] = (int32_t)rng_below(&rng, 4);
    SgdConfig sgd = {0.9f, 1e-3f, 1};
    float loss;
    model_zero_grad(m);
    model_forward(m, x, N, 1);
    model_loss(m, labels, &loss);
    model_backward(m);
    model_sgd_step(m, 0.05f, &sgd);
}

/* Training 6 steps straight equals training 3, saving, loading and training 3 more. */
static void test_resume(void)
{
    static const char *const archs[] = {"cnn-small", "resnet8"};
    for (int a = 0; a < 2; a++) {
        Model *straight = model_create(archs[a], 3, 8, 8, 4, 4, 21);
        Model *first = model_create(archs[a], 3, 8, 8, 4, 4, 21);
        model_set_threads(straight, 2);
        model_set_threads(first, 2);
        for (int s = 0; s < 6; s++)
            train_step(straight, s);
        for (int s = 0; s < 3; s++)
            train_step(first, s);
        char path[512];
        snprintf(path, sizeof path, "%s", path_of("resume.safetensors"));
        TrainState state = {first->step, 1, 0, 12};
        int saved = checkpoint_save(path, first, &state, NULL, 1) == 0;
        model_free(first);
        CheckpointInfo info;
        Model *resumed = checkpoint_load(path, 4, &info);
        if (resumed)
            model_set_threads(resumed, 2);
        for (int s = 3; resumed && s < 6; s++)
            train_step(resumed, s);
        ok(saved && resumed && resumed->step == 6 && info.state.sampler_position == 12 &&
           memcmp(resumed->params, straight->params,
                  sizeof(float) * straight->graph.param_floats) == 0,
           "%s: 3 steps + save + load + 3 steps ends with the same weights as 6 steps", archs[a]);
        checkpoint_info_free(&info);
        model_free(resumed);
        model_free(straight);
    }
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/imgset-ckpt-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        ok(0, "make a temporary directory");
        return tap_done();
    }
    test_parser();
    Model *saved = test_round_trip();
    if (saved) {
        test_restore(saved);
        test_corrupt_files();
        test_header_edits();
        test_random_corruptions();
        model_free(saved);
    }
    test_recipes();
    test_resume();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        ok(0, "remove %s", dir);
    return tap_done();
}
