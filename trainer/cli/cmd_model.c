/* cmd_model.c — `imgset model push` (a checkpoint into PostgreSQL's imgset.models) and
 * `imgset predict` (a checkpoint over a split of any store, through the same single-threaded
 * inference path as the extension's imgset_predict). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef IMGSET_HAVE_LIBPQ
#include <libpq-fe.h>
#endif

#include "checkpoint.h"
#include "cli.h"
#include "clock.h"
#include "error.h"
#include "json.h"
#include "gpu.h"
#include "loader.h"
#include "metrics.h"
#include "model.h"
#include "progress.h"

/* Largest checkpoint `model push` sends: one bytea parameter must stay under 1 GB. */
#define PUSH_MAX_BYTES ((size_t)1000 << 20)

/* The whole file at path in a malloc'd buffer (*len bytes); NULL with imgset_fail(). */
static uint8_t *read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return imgset_fail("%s: cannot open: %s", path, strerror(errno)), NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return imgset_fail("%s: not a regular file", path), NULL;
    }
    if ((uint64_t)sb.st_size > max) {
        fclose(f);
        return imgset_fail("%s: %lld bytes is more than the %zu a push can send", path,
                           (long long)sb.st_size, max), NULL;
    }
    *len = (size_t)sb.st_size;
    uint8_t *bytes = malloc(*len ? *len : 1);
    if (!bytes) {
        fclose(f);
        return imgset_fail("%s: out of memory for %zu bytes", path, *len), NULL;
    }
    size_t got = fread(bytes, 1, *len, f);
    fclose(f);
    if (got != *len) {
        free(bytes);
        return imgset_fail("%s: short read (%zu of %zu bytes)", path, got, *len), NULL;
    }
    return bytes;
}

/* ---- model push ------------------------------------------------------------------------ */

static void model_usage(FILE *out)
{
    fprintf(out,
            "usage: imgset model push CKPT --db CONNINFO --name NAME [--replace]\n\n"
            "Store a checkpoint of `imgset train --save CKPT` in PostgreSQL as model NAME\n"
            "(table imgset.models of the pg_imgset extension, weights in 8 MB chunks), for\n"
            "imgset_predict(NAME, img) and the other inference functions. The checkpoint is\n"
            "checked here and again by the server (imgset.add_model).\n"
            "  --db CONNINFO  libpq connection string or URI (postgresql://...)\n"
            "  --name NAME    1 to 64 letters, digits, '_', '.', '-'\n"
            "  --replace      replace an existing model of that name (every session sees the\n"
            "                 new weights from its next statement on)\n");
}

#ifdef IMGSET_HAVE_LIBPQ
/* Send the checkpoint bytes to imgset.add_model(); prints the stored row. */
static int push(const char *path, const uint8_t *bytes, size_t len, const char *conninfo,
                const char *name, int replace)
{
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "imgset model push: cannot connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return 1;
    }
    const char *values[3] = {name, (const char *)bytes, replace ? "true" : "false"};
    int lengths[3] = {0, (int)len, 0};
    int formats[3] = {0, 1, 0};
    PGresult *r = PQexecParams(conn,
                               "SELECT name, arch, channels, height, width, classes, version, "
                               "bytes, chunks FROM imgset.add_model($1, $2::bytea, $3::boolean)",
                               3, NULL, values, lengths, formats, 0);
    int status = 1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        fprintf(stderr, "imgset model push: %s", PQresultErrorMessage(r));
    } else {
        printf("model %s: %s for %sx%sx%s input, %s classes, version %s, %s bytes in %s "
               "chunk(s) from %s\n", PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1),
               PQgetvalue(r, 0, 3), PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 2),
               PQgetvalue(r, 0, 5), PQgetvalue(r, 0, 6), PQgetvalue(r, 0, 7),
               PQgetvalue(r, 0, 8), path);
        status = 0;
    }
    PQclear(r);
    PQfinish(conn);
    return status;
}
#endif

int cmd_model(int argc, char **argv)
{
    static const struct option opts[] = {
        {"db", required_argument, 0, 'd'},   {"name", required_argument, 0, 'n'},
        {"replace", no_argument, 0, 'r'},    {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        model_usage(stdout);
        return 0;
    }
    if (argc < 2 || strcmp(argv[1], "push") != 0) {
        model_usage(stderr);
        return 2;
    }
    argc--, argv++;   /* argv[0] = "push" */
    const char *conninfo = NULL, *name = NULL;
    int replace = 0, c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': conninfo = optarg; break;
        case 'n': name = optarg; break;
        case 'r': replace = 1; break;
        case 'h': model_usage(stdout); return 0;
        default: model_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1 || !conninfo || !name) {
        model_usage(stderr);
        return 2;
    }
    const char *path = argv[optind];
    /* Check the file here first: a clear message without a round trip. */
    CheckpointInfo info;
    Model *m = checkpoint_load(path, 1, &info);
    if (!m)
        return cli_error("model push", imgset_error());
    model_free(m);
    checkpoint_info_free(&info);
#ifdef IMGSET_HAVE_LIBPQ
    size_t len;
    uint8_t *bytes = read_file(path, PUSH_MAX_BYTES, &len);
    if (!bytes)
        return cli_error("model push", imgset_error());
    int status = push(path, bytes, len, conninfo, name, replace);
    free(bytes);
    return status;
#else
    (void)replace;
    return cli_error("model push", "this imgset was built without libpq");
#endif
}

/* ---- predict --------------------------------------------------------------------------- */

typedef struct PredictArgs {
    const char *checkpoint, *uri, *json;
    int split, batch, threads, workers;
    int device;   /* MODEL_CPU or MODEL_CUDA */
} PredictArgs;

static void predict_usage(FILE *out)
{
    fprintf(out,
            "usage: imgset predict CKPT URI [--split test|train] [--batch B] [--threads T]\n"
            "                      [--workers W] [--device cpu|cuda] [--json FILE]\n\n"
            "Run the model of checkpoint CKPT over a split of the data set at URI (any store),\n"
            "in order, and print its accuracy, top-5 accuracy (more than 10 classes), macro-F1,\n"
            "the classes of lowest F1, and images/s. Images are resized / cropped to the model's\n"
            "input and normalised as the checkpoint records (as `imgset train` did).\n"
            "  --split S     test (default) or train\n"
            "  --batch B     images per forward pass (default 1)\n"
            "  --threads T   1 (default): the extension's path, model_inference() on one\n"
            "                thread; the logits equal imgset_forward (B = 1) or\n"
            "                imgset_forward_batch(..., group_size => B) bit for bit.\n"
            "                T > 1: the trainer's threaded forward (faster, other low bits)\n"
            "  --workers W   loader prefetch threads (default 1)\n"
            "  --device D    cpu (default: the extension's logits, as above) or cuda: the GPU\n"
            "                executor of `imgset train --device cuda` (float32, other low bits)\n"
            "  --json FILE   the numbers, per class precision, recall, F1 and the confusion\n"
            "                matrix, and per image index, label, class and logits\n");
}

static int parse_predict_args(int argc, char **argv, PredictArgs *a)
{
    static const struct option opts[] = {
        {"split", required_argument, 0, 's'},   {"batch", required_argument, 0, 'b'},
        {"threads", required_argument, 0, 't'}, {"workers", required_argument, 0, 'w'},
        {"json", required_argument, 0, 'j'},    {"device", required_argument, 0, 'D'},
        {"help", no_argument, 0, 'h'},          {0, 0, 0, 0},
    };
    *a = (PredictArgs){.split = SPLIT_TEST, .batch = 1, .threads = 1, .workers = 1,
                       .device = MODEL_CPU};
    long long v;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            if ((a->split = split_from_name(optarg)) < 0) {
                fprintf(stderr, "imgset predict: unknown split \"%s\" (train, test)\n", optarg);
                return 2;
            }
            break;
        case 'j': a->json = optarg; break;
        case 'D':
            if ((a->device = cli_parse_device("predict", optarg, 0)) == -2)
                return 2;
            break;
        case 'b': case 't': case 'w':
            if ((v = cli_parse_count("predict", argv[optind - 1], optarg)) < 0)
                return 2;
            if (v > (c == 't' ? MODEL_MAX_THREADS : c == 'w' ? 256 : 1 << 16)) {
                fprintf(stderr, "imgset predict: %s %s is too large\n", argv[optind - 1], optarg);
                return 2;
            }
            if (c == 'b') a->batch = (int)v;
            else if (c == 't') a->threads = (int)v;
            else a->workers = (int)v;
            break;
        case 'h': predict_usage(stdout); return -1;
        default: predict_usage(stderr); return 2;
        }
    }
    if (optind != argc - 2) {
        predict_usage(stderr);
        return 2;
    }
    a->checkpoint = argv[optind];
    a->uri = argv[optind + 1];
    if (a->batch < 1 || a->threads < 1) {
        fprintf(stderr, "imgset predict: --batch and --threads must be at least 1\n");
        return 2;
    }
    return 0;
}

/* Per-image results, in the split's order. */
typedef struct Predictions {
    int64_t count;
    int64_t *index;     /* (count) position in the split */
    int32_t *label;     /* (count) */
    int32_t *class;     /* (count) */
    float *logits;      /* (count, K) */
} Predictions;

/* What a prediction run measured: its confusion matrix, top-5 hits, times. */
typedef struct PredictScores {
    int64_t *confusion;   /* (K, K) */
    int64_t correct, top5;
    double wall, compute;
} PredictScores;

static int write_predict_json(const char *path, const PredictArgs *a, const CheckpointInfo *info,
                              const ModelSpec *spec, const Predictions *p,
                              const PredictScores *sc)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return imgset_fail("%s: cannot write: %s", path, strerror(errno));
    int K = spec->classes;
    double wall = sc->wall;
    Json j;
    json_start(&j, f, 0);
    json_object_begin(&j, NULL);
    json_string(&j, "checkpoint", a->checkpoint);
    json_string(&j, "uri", a->uri);
    json_string(&j, "split", split_names[a->split]);
    json_string(&j, "arch", spec->arch);
    json_int(&j, "channels", spec->channels);
    json_int(&j, "height", spec->height);
    json_int(&j, "width", spec->width);
    json_int(&j, "classes", K);
    json_int(&j, "batch", a->batch);
    json_int(&j, "threads", a->threads);
    json_string(&j, "device", a->device == MODEL_CUDA ? "cuda" : "cpu");
    json_string(&j, "blas", model_blas_core());
    cli_json_recipe(&j, spec);
    json_int(&j, "images", (long long)p->count);
    json_int(&j, "correct", (long long)sc->correct);
    json_number(&j, "accuracy", "%.6f",
                p->count ? (double)sc->correct / (double)p->count : 0.0);
    json_number(&j, "top5_accuracy", "%.6f",   /* null for 10 classes or fewer */
                K > 10 && p->count ? (double)sc->top5 / (double)p->count : NAN);
    json_number(&j, "macro_f1", "%.6f", confusion_macro_f1(sc->confusion, K));
    json_number(&j, "wall_seconds", "%.6f", wall);
    json_number(&j, "compute_seconds", "%.6f", sc->compute);
    json_number(&j, "images_per_s", "%.2f", wall > 0 ? (double)p->count / wall : 0.0);
    cli_json_class_metrics(&j, sc->confusion, K, info->class_names);
    json_array_begin(&j, "predictions");
    for (int64_t i = 0; i < p->count; i++) {
        json_raw(&j, "\n  ");
        json_object_begin(&j, NULL);
        json_int(&j, "index", (long long)p->index[i]);
        json_int(&j, "label", p->label[i]);
        json_int(&j, "class", p->class[i]);
        json_array_begin(&j, "logits");
        for (int k = 0; k < K; k++)   /* %.9g reads back as the same float32 */
            json_number(&j, NULL, "%.9g", p->logits[(size_t)i * K + k]);
        json_array_end(&j);
        json_object_end(&j);
    }
    json_raw(&j, "\n");
    json_array_end(&j);
    json_object_end(&j);
    return json_close_file(&j, f, path);
}

int cmd_predict(int argc, char **argv)
{
    PredictArgs a;
    int usage = parse_predict_args(argc, argv, &a);
    if (usage)
        return usage < 0 ? 0 : usage;

    CheckpointInfo info;
    Model *m = checkpoint_load(a.checkpoint, a.batch, &info);
    if (!m)
        return cli_error("predict", imgset_error());
    const ModelSpec *spec = &m->graph.spec;
    int K = spec->classes;
    LoaderOptions o;
    loader_options_default(&o);
    o.split = a.split;
    o.batch_size = a.batch;
    o.shuffle = 0;
    o.drop_last = 0;
    o.workers = a.workers;
    o.want_float = 1;
    o.height = spec->height;
    o.width = spec->width;
    memcpy(o.mean, spec->mean, sizeof o.mean);   /* as the model was trained */
    memcpy(o.std, spec->std, sizeof o.std);
    o.device = a.device == MODEL_CUDA ? LOADER_CUDA : LOADER_HOST;

    int status = 1;
    float *workspace = NULL, *logits = NULL;
    Predictions p = {0};
    PredictScores sc = {0};
    Loader *l = loader_open(a.uri, &o);
    if (!l)
        goto done;
    ImageShape shape = loader_shape(l);
    if (shape.channels != spec->channels) {
        imgset_fail("%s: the %s images have %d channels, the model takes %d", a.uri,
                    split_names[a.split], shape.channels, spec->channels);
        goto done;
    }
    int64_t n = loader_info(l)->split[a.split].count;
    size_t ws = model_inference_workspace_floats(&m->graph, a.batch);
    if (!ws || (a.threads > 1 && model_set_threads(m, a.threads) < 0) ||
        (a.device == MODEL_CUDA && model_use_device(m, MODEL_CUDA) < 0))
        goto done;
    workspace = malloc(ws * sizeof(float));
    logits = malloc(sizeof(float) * (size_t)a.batch * K);
    p.index = malloc(sizeof *p.index * (size_t)(n ? n : 1));
    p.label = malloc(sizeof *p.label * (size_t)(n ? n : 1));
    p.class = malloc(sizeof *p.class * (size_t)(n ? n : 1));
    p.logits = malloc(sizeof(float) * (size_t)(n ? n : 1) * K);
    sc.confusion = calloc((size_t)K * K, sizeof *sc.confusion);
    if (!workspace || !logits || !p.index || !p.label || !p.class || !p.logits ||
        !sc.confusion) {
        imgset_fail("out of memory for %lld predictions", (long long)n);
        goto done;
    }
    double t0 = monotonic_seconds();
    const Batch *b;
    int got;
    while ((got = loader_next(l, &b)) == 1) {
        if (interrupted()) {
            status = 130;
            goto done;
        }
        if (p.count + b->count > n) {
            imgset_fail("%s: the loader gave more than %lld images", a.uri, (long long)n);
            goto done;
        }
        double c0 = monotonic_seconds();
        const float *out = logits;
        if (a.device == MODEL_CUDA)
            out = model_forward(m, b->device_data, b->count, 0);
        else if (a.threads == 1)
            model_inference(&m->graph, m->params, b->data, b->count, workspace, logits);
        else
            out = model_forward(m, b->data, b->count, 0);
        if (!out)
            goto done;
        sc.compute += monotonic_seconds() - c0;
        for (int i = 0; i < b->count; i++) {
            int64_t j = p.count++;
            p.index[j] = b->indices[i];
            p.label[j] = b->labels[i];
            p.class[j] = metrics_argmax(out + (size_t)i * K, K);
            memcpy(p.logits + (size_t)j * K, out + (size_t)i * K, sizeof(float) * K);
            sc.correct += p.class[j] == p.label[j];
        }
        confusion_add_logits(sc.confusion, out, b->labels, b->count, K);
        sc.top5 += metrics_topk_hits(out, b->labels, b->count, K, 5);
    }
    double wall = sc.wall = monotonic_seconds() - t0;
    if (got < 0)
        goto done;
    char device_text[300];
    if (a.device == MODEL_CUDA) {
        char gpu[256] = "GPU";
#ifdef IMGSET_HAVE_CUDA
        gpu_describe(gpu, sizeof gpu);
#endif
        snprintf(device_text, sizeof device_text, "device cuda, %s", gpu);
    } else {
        snprintf(device_text, sizeof device_text, "threads %d, blas %s", a.threads,
                 model_blas_core());
    }
    printf("predict %s (%s %dx%dx%d, %d classes) on %s %s: %lld images, accuracy %.4f, "
           "%.2f s, %.0f images/s (batch %d, %s)\n",
           a.checkpoint, spec->arch, spec->height, spec->width, spec->channels, K, a.uri,
           split_names[a.split], (long long)p.count,
           p.count ? (double)sc.correct / (double)p.count : 0.0, wall,
           wall > 0 ? (double)p.count / wall : 0.0, a.batch, device_text);
    cli_print_recipe(stdout, spec);
    cli_print_class_summary(stdout, split_names[a.split], sc.confusion, K, info.class_names,
                            K > 10 && p.count ? (double)sc.top5 / (double)p.count : -1, 3);
    if (a.json && write_predict_json(a.json, &a, &info, spec, &p, &sc) < 0)
        goto done;
    status = 0;

done:
    if (status == 1)
        fprintf(stderr, "imgset predict: %s\n", imgset_error());
    free(workspace);
    free(logits);
    free(p.index);
    free(p.label);
    free(p.class);
    free(p.logits);
    free(sc.confusion);
    loader_close(l);
    model_free(m);
    checkpoint_info_free(&info);
    return status;
}
