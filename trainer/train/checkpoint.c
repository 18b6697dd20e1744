/* checkpoint.c — model checkpoints: the safetensors header and tensors written to a temporary
 * file, fsync'ed and renamed into place; read back through the parser of safetensors.c. */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "error.h"
#include "json.h"
#include "nn.h"

/* ==== Writing ========================================================================== */

/* A metadata entry whose value is a decimal integer (safetensors metadata values are strings). */
static void meta_u64(Json *j, const char *key, uint64_t value)
{
    char v[32];
    snprintf(v, sizeof v, "%" PRIu64, value);
    json_string(j, key, v);
}

/* "[v0,v1,...]" of n floats, each printed so that it reads back as the same float. */
static void meta_floats(Json *j, const char *key, const float *v, int n)
{
    char list[32 * MODEL_NORM_CHANNELS + 4] = "[";
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%.9g", i ? "," : "",
                 (double)v[i]);
    strcat(list, "]");
    json_string(j, key, list);
}

/* The keys of ModelSpec beyond the shape (safetensors.h, version 2). */
static void meta_recipe(Json *j, const ModelSpec *spec)
{
    char slope[32];
    snprintf(slope, sizeof slope, "%.9g", (double)spec->leaky_slope);
    json_string(j, "activation", model_activation_name(spec->activation));
    json_string(j, "leaky_slope", slope);
    json_string(j, "loss", nn_loss_name(spec->loss));
    json_string(j, "normalize", model_normalize_name(spec->normalize));
    int n = spec->channels < MODEL_NORM_CHANNELS ? spec->channels : MODEL_NORM_CHANNELS;
    meta_floats(j, "mean", spec->mean, n);
    meta_floats(j, "std", spec->std, n);
}

static void header_tensor(Json *j, const char *name, const ModelTensor *g, uint64_t *offset)
{
    json_object_begin(j, name);
    json_string(j, "dtype", "F32");
    json_array_begin(j, "shape");
    for (int i = 0; i < g->ndim; i++)
        json_int(j, NULL, g->shape[i]);
    json_array_end(j);
    json_array_begin(j, "data_offsets");
    json_uint(j, NULL, *offset);
    json_uint(j, NULL, *offset + (uint64_t)g->count * 4);
    json_array_end(j);
    json_object_end(j);
    *offset += (uint64_t)g->count * 4;
}

/* The JSON header for m into j (in memory): metadata, then every tensor and every momentum
 * buffer, in order, padded with spaces to a multiple of 8 bytes. 0 or -1. */
static int build_header(Json *j, const Model *m, const TrainState *state,
                        const char *const *class_names)
{
    const ModelGraph *g = &m->graph;
    json_start(j, NULL, 1);
    json_object_begin(j, NULL);
    json_object_begin(j, "__metadata__");
    json_string(j, "format", CHECKPOINT_FORMAT);
    json_string(j, "version", CHECKPOINT_VERSION);
    json_string(j, "arch", g->spec.arch);
    meta_u64(j, "channels", (uint64_t)g->spec.channels);
    meta_u64(j, "height", (uint64_t)g->spec.height);
    meta_u64(j, "width", (uint64_t)g->spec.width);
    meta_u64(j, "classes", (uint64_t)g->spec.classes);
    meta_recipe(j, &g->spec);
    meta_u64(j, "seed", m->seed);
    meta_u64(j, "step", (uint64_t)(state ? state->step : m->step));
    meta_u64(j, "sampler_seed", state ? state->sampler_seed : 0);
    meta_u64(j, "sampler_epoch", (uint64_t)(state ? state->sampler_epoch : 0));
    meta_u64(j, "sampler_position", (uint64_t)(state ? state->sampler_position : 0));
    if (class_names) {
        Json names;   /* a JSON array of strings, itself stored as one string value */
        json_start(&names, NULL, 1);
        json_array_begin(&names, NULL);
        for (int k = 0; k < g->spec.classes; k++)
            json_string(&names, NULL, class_names[k] ? class_names[k] : "");
        json_array_end(&names);
        if (json_end(&names) < 0) {
            free(names.text);
            return -1;
        }
        json_string(j, "class_names", names.text);
        free(names.text);
    }
    json_object_end(j);
    uint64_t offset = 0;
    char name[MODEL_NAME_MAX + 16];
    for (int i = 0; i < g->num_tensors; i++)
        header_tensor(j, g->tensors[i].name, &g->tensors[i], &offset);
    for (int i = 0; i < g->num_tensors; i++)
        if (g->tensors[i].trainable) {
            snprintf(name, sizeof name, "momentum.%s", g->tensors[i].name);
            header_tensor(j, name, &g->tensors[i], &offset);
        }
    json_object_end(j);
    while (!j->failed && j->len % 8)
        json_raw(j, " ");
    return json_end(j);
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w, n -= (size_t)w;
    }
    return 0;
}

/* Write count floats as little-endian bytes, through a staging buffer. */
static int write_f32le(int fd, const float *x, size_t count)
{
    uint8_t buf[1 << 16];
    size_t used = 0;
    for (size_t i = 0; i < count; i++) {
        uint32_t bits;
        memcpy(&bits, &x[i], 4);
        buf[used++] = (uint8_t)bits, buf[used++] = (uint8_t)(bits >> 8);
        buf[used++] = (uint8_t)(bits >> 16), buf[used++] = (uint8_t)(bits >> 24);
        if (used == sizeof buf) {
            if (write_all(fd, buf, used))
                return -1;
            used = 0;
        }
    }
    return used ? write_all(fd, buf, used) : 0;
}

/* fsync the directory holding path, so a rename in it is durable. */
static void sync_parent(const char *path)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

int checkpoint_save(const char *path, const Model *m, const TrainState *state,
                    const char *const *class_names, int overwrite)
{
    struct stat sb;
    if (!overwrite && lstat(path, &sb) == 0)
        return imgset_fail("checkpoint %s already exists", path);
    Json header;
    if (build_header(&header, m, state, class_names)) {
        free(header.text);
        return imgset_fail("checkpoint %s: out of memory", path);
    }
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= sizeof tmp) {
        free(header.text);
        return imgset_fail("checkpoint %s: path too long", path);
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        free(header.text);
        return imgset_fail("checkpoint %s: cannot create %s: %s", path, tmp, strerror(errno));
    }
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)header.len >> (8 * i));
    const ModelGraph *g = &m->graph;
    int bad = write_all(fd, len, 8) || write_all(fd, header.text, header.len) ||
              write_f32le(fd, m->params, g->param_floats);
    for (int i = 0; i < g->num_tensors && !bad; i++)
        if (g->tensors[i].trainable)
            bad = write_f32le(fd, m->velocity + g->tensors[i].offset, g->tensors[i].count);
    free(header.text);
    int saved_errno = errno;
    if (bad || fsync(fd) != 0) {
        saved_errno = errno;
        close(fd);
        unlink(tmp);
        return imgset_fail("checkpoint %s: cannot write %s: %s", path, tmp,
                           strerror(saved_errno));
    }
    if (close(fd) != 0) {
        saved_errno = errno;
        unlink(tmp);
        return imgset_fail("checkpoint %s: cannot write %s: %s", path, tmp,
                           strerror(saved_errno));
    }
    /* link() refuses an existing name: no overwrite even if one appeared meanwhile */
    int rc = overwrite ? rename(tmp, path) : link(tmp, path);
    saved_errno = errno;
    if (rc != 0 || !overwrite)
        unlink(tmp);
    if (rc != 0)
        return saved_errno == EEXIST
                   ? imgset_fail("checkpoint %s already exists", path)
                   : imgset_fail("checkpoint %s: cannot rename %s into place: %s", path, tmp,
                                 strerror(saved_errno));
    sync_parent(path);
    return 0;
}

/* ==== Reading ========================================================================== */

/* A whole file read into memory and parsed; free with loaded_free(). */
typedef struct Loaded {
    uint8_t *bytes;
    void *arena;
    Safetensors st;
} Loaded;

static void loaded_free(Loaded *l)
{
    free(l->bytes);
    free(l->arena);
    memset(l, 0, sizeof *l);
}

static int load_file(Loaded *l, const char *path)
{
    memset(l, 0, sizeof *l);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return imgset_fail("checkpoint %s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return imgset_fail("checkpoint %s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if ((uint64_t)sb.st_size > ((uint64_t)1 << 36)) {
        close(fd);
        return imgset_fail("checkpoint %s: %lld bytes is too large", path,
                           (long long)sb.st_size);
    }
    l->bytes = malloc(size ? size : 1);
    if (!l->bytes) {
        close(fd);
        return imgset_fail("checkpoint %s: out of memory for %zu bytes", path, size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, l->bytes + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (got != size) {
        loaded_free(l);
        return imgset_fail("checkpoint %s: short read (%zu of %zu bytes)", path, got, size);
    }
    size_t arena = safetensors_arena_size(l->bytes, size);
    l->arena = malloc(arena);
    if (!l->arena) {
        loaded_free(l);
        return imgset_fail("checkpoint %s: out of memory", path);
    }
    if (safetensors_parse(&l->st, l->bytes, size, l->arena, arena, path)) {
        loaded_free(l);
        return -1;
    }
    return 0;
}

/* Fill info's class names from the file (NULL when it has none). */
static int read_class_names(const Safetensors *st, CheckpointInfo *info, const char *path)
{
    const char *json = safetensors_meta(st, "class_names");
    info->class_names = NULL;
    if (!json)
        return 0;
    int K = info->spec.classes;
    size_t len = strlen(json) + 1;
    /* one block: K pointers, then the decoded strings */
    char **names = malloc(sizeof(char *) * (size_t)K + len);
    if (!names)
        return imgset_fail("checkpoint %s: out of memory", path);
    if (checkpoint_decode_class_names(json, (char *)(names + K), len, (const char **)names, K,
                                      path)) {
        free(names);
        return -1;
    }
    info->class_names = names;
    return 0;
}

/* Restore l into m (whose spec matches). */
static int restore_loaded(Model *m, const Loaded *l, TrainState *state, const char *path)
{
    if (checkpoint_read_tensors(&l->st, &m->graph, m->params, m->velocity, path))
        return -1;
    m->step = state->step;
    return 0;
}

Model *checkpoint_load(const char *path, int max_batch, CheckpointInfo *info)
{
    Loaded l;
    CheckpointInfo local;
    CheckpointInfo *out = info ? info : &local;
    memset(out, 0, sizeof *out);
    if (load_file(&l, path))
        return NULL;
    Model *m = NULL;
    if (checkpoint_read_info(&l.st, &out->spec, &out->seed, &out->state, path) == 0) {
        m = model_create_spec(&out->spec, max_batch, out->seed);
        if (!m)
            imgset_fail_prefix("checkpoint %s: ", path);
    }
    if (m && (restore_loaded(m, &l, &out->state, path) ||
              (info && read_class_names(&l.st, info, path)))) {
        model_free(m);
        m = NULL;
    }
    loaded_free(&l);
    if (!m && info)
        checkpoint_info_free(info);
    return m;
}

/* What a spec says, in words: equal words, equal specs (the floats at %.9g read back). */
static const char *describe_spec(const ModelSpec *s, char *out, size_t cap)
{
    char mean[128] = "", std[128] = "";
    for (int c = 0; c < s->channels && c < MODEL_NORM_CHANNELS; c++) {
        snprintf(mean + strlen(mean), sizeof mean - strlen(mean), "%s%.9g", c ? "," : "",
                 (double)s->mean[c]);
        snprintf(std + strlen(std), sizeof std - strlen(std), "%s%.9g", c ? "," : "",
                 (double)s->std[c]);
    }
    char slope[40] = "";
    if (s->activation == ACT_LEAKY_RELU)
        snprintf(slope, sizeof slope, " (slope %.9g)", (double)s->leaky_slope);
    snprintf(out, cap, "%s for %dx%dx%d, %d classes, %s%s, loss %s, %s mean %s std %s", s->arch,
             s->channels, s->height, s->width, s->classes, model_activation_name(s->activation),
             slope, nn_loss_name(s->loss), model_normalize_name(s->normalize), mean, std);
    return out;
}

int checkpoint_restore(const char *path, Model *m, CheckpointInfo *info)
{
    Loaded l;
    CheckpointInfo local;
    CheckpointInfo *out = info ? info : &local;
    memset(out, 0, sizeof *out);
    if (load_file(&l, path))
        return -1;
    int rc = checkpoint_read_info(&l.st, &out->spec, &out->seed, &out->state, path);
    char held[256], want[256];
    if (rc == 0 && strcmp(describe_spec(&out->spec, held, sizeof held),
                          describe_spec(&m->graph.spec, want, sizeof want)) != 0)
        rc = imgset_fail("checkpoint %s holds %s; the model is %s", path, held, want);
    if (rc == 0)
        rc = restore_loaded(m, &l, &out->state, path);
    if (rc == 0 && info)
        rc = read_class_names(&l.st, info, path);
    loaded_free(&l);
    if (rc && info)
        checkpoint_info_free(info);
    return rc;
}

void checkpoint_info_free(CheckpointInfo *info)
{
    if (!info)
        return;
    free(info->class_names);
    info->class_names = NULL;
}
