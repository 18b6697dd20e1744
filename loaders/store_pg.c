/* store_pg.c — the `postgresql://…?dataset=NAME` store: pg_imgset tables through libpq. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "error.h"
#include "notice.h"
#include "store.h"
#include "../extension/imgtensor_wire.h"

/*
 * In the database (extension pg_imgset, schema imgset): imgset.datasets holds the name and
 * class names, imgset.splits one row per split (its table, count and shape), and each split
 * is a table (id bigint = index 0..N-1, label integer, img imgtensor).
 *
 * Writing: one transaction — imgset.create_dataset() makes the tables (it refuses an existing
 * name), each split is loaded with COPY … FROM STDIN (FORMAT binary), and COMMIT makes the data
 * set visible at once; abort (or a lost connection) rolls everything back.
 *
 * Servers: the URI may name several servers in libpq's multi-host form
 * (postgresql://h1,h2/db?dataset=NAME, or host=/dir1,/dir2&port=p1,p2 for Unix sockets),
 * typically a primary and its hot standbys. A reader uses one of them, server (reader mod
 * count) first, so the ranks and workers of a run spread over the replicas; when its server
 * goes away mid-read it moves to the next one that answers (a notice says so), checks that
 * it serves the same split tables, and sends the command again, so no batch is lost. When
 * none answers, the error carries every server's message. A writer connects the way libpq
 * does (the first server that answers).
 *
 * Reading: images come in blocks through imgset.imgset_batch_packed(split, ids): one bytea per
 * block in binary mode, parsed in place (the layout is in extension/imgtensor_wire.h).
 * A read that continues where the last block ended is sequential: one statement then asks for
 * several consecutive blocks (LATERAL over generate_series) and the rows stream in single-row
 * mode, so the server packs the next blocks while the client copies this one; the statement
 * after it is sent as soon as the last row arrives. Runs grow from 2 to STREAM_MAX_BLOCKS
 * blocks per statement, so a jump (which drains the rest of the statement) stays cheap.
 * A read elsewhere fetches just that image. read_batch() (the loaders' gather) is one
 * imgset_batch_packed(split, ids) call per batch (per 8 MB of pixels): the ids in the order
 * asked, pixels packed. read_batch_resized() (loaders of mixed sizes, or --size) is the same
 * call with a height and width: the server resizes + center-crops every image with the
 * loader's own transform, so one round trip brings the batch at the model's size.
 */

#define SCHEMA "imgset"
#define BLOCK_BYTES (8u << 20)      /* a sequential block holds about this many pixel bytes */
#define BLOCK_MAX_IMAGES 1024
#define RAGGED_BLOCK_IMAGES 64
#define STREAM_MAX_BLOCKS 16
#define COPY_BUFFER (1u << 20)

/* Binary parameter / result type OIDs (fixed in every PostgreSQL). */
#define OID_INT4 23
#define OID_INT8 20
#define OID_REGCLASS 2205
#define OID_INT8ARRAY 1016
/* read_batch asks for at most this many pixel bytes per call. Small enough that neither the
 * backend (whose malloc the extension keeps off mmap up to 32 MB) nor libpq maps and faults in
 * fresh memory for every answer: on 512x512 images a batch of 256 in one 200 MB answer read at
 * half the rate of the same batch in 8 MB answers. */
#define BATCH_CHUNK_BYTES ((size_t)8 << 20)

enum { READER_MAGIC = 0x70677264, WRITER_MAGIC = 0x70677772 };  /* "pgrd", "pgwr" */

/* One fetched block: images first..first+n-1 of a split, parsed out of its PGresult. */
typedef struct Block {
    int split;                /* -1 when empty */
    int64_t first;
    int n;
    PGresult *res;            /* owns the bytes pixels points into */
    int32_t *labels;          /* (n) */
    ImageShape *shapes;       /* (n) */
    size_t *offsets;          /* (n + 1) byte offsets into pixels */
    const uint8_t *pixels;
} Block;

/* The servers a URI names: per server, its own host, hostaddr and port entry. */
enum { FIELD_HOST, FIELD_HOSTADDR, FIELD_PORT, SERVER_FIELDS };
static const char *const server_keywords[SERVER_FIELDS] = {"host", "hostaddr", "port"};

typedef struct Servers {
    PQconninfoOption *options;     /* the URI's connection options (PQconninfoParse) */
    int count;                     /* >= 1 */
    char *list[SERVER_FIELDS];     /* each field's comma list, copied and cut at the commas */
    char **entry[SERVER_FIELDS];   /* (count) per field: that server's value; NULL when the
                                    * URI does not set the field */
} Servers;

typedef struct PgReader {
    uint32_t magic;           /* READER_MAGIC */
    PGconn *conn;
    Servers servers;
    int server;               /* the one conn talks to */
    int ready;                /* 1 once a server was set up: s->info and rel are known */
    char name[IMGSET_NAME_MAX];  /* the data set */
    uint32_t rel[SPLIT_COUNT];   /* the split tables' OIDs */
    int block_images[SPLIT_COUNT];
    Block cur;
    int streaming;            /* a statement is running; its rows are blocks */
    int stream_split;
    int64_t stream_next;      /* first image of its next row */
    int64_t stream_end;       /* one past its last image */
    int run;                  /* sequential statements in a row: sizes the next one */
} PgReader;

typedef struct PgWriter {
    uint32_t magic;           /* WRITER_MAGIC */
    PGconn *conn;
    char *table[SPLIT_COUNT];    /* the split tables' names as the server quotes them */
    int copying;              /* split being copied, or -1 */
    uint8_t *buf;             /* COPY data not yet sent */
    size_t used;
} PgWriter;

/* ---- connection -------------------------------------------------------------------------- */

/* The last notice or warning a server sent on this thread's connections ("terminating
 * connection due to administrator command" before it goes away), kept for the error message
 * instead of being printed: the library prints nothing. */
static __thread char last_notice[256];

static void remember_notice(void *arg, const PGresult *notice)
{
    (void)arg;
    const char *message = PQresultErrorField(notice, PG_DIAG_MESSAGE_PRIMARY);
    snprintf(last_notice, sizeof last_notice, "%s", message ? message : "");
    last_notice[strcspn(last_notice, "\n")] = '\0';
}

/* True when conn is gone. A command that found the server gone can leave the status OK until
 * libpq reads again: read once to find out. */
static int connection_lost(PGconn *conn)
{
    if (PQstatus(conn) == CONNECTION_OK)
        PQconsumeInput(conn);
    return PQstatus(conn) == CONNECTION_BAD;
}

/* libpq's last message for conn on one line (each run of line breaks, tabs and spaces as one
 * space, the trailing ones dropped), in a per-thread buffer; for a connection that is gone, its
 * first line (libpq's guesses follow it) and the server's last notice, if it sent one. */
static const char *conn_message(PGconn *conn)
{
    static __thread char msg[512];
    int lost = conn && connection_lost(conn);
    snprintf(msg, sizeof msg, "%s", conn ? PQerrorMessage(conn) : "out of memory");
    if (lost)
        msg[strcspn(msg, "\n")] = '\0';
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int space = msg[i] == '\n' || msg[i] == '\t' || msg[i] == ' ';
        if (!(space && k > 0 && msg[k - 1] == ' '))
            msg[k++] = space ? ' ' : msg[i];
    }
    msg[k] = '\0';
    if (lost && last_notice[0])
        snprintf(msg + k, sizeof msg - k, " (the server said: %s)", last_notice);
    return msg;
}

/* The primary message of a failed result (or of the connection), trimmed. */
static const char *result_message(PGconn *conn, const PGresult *res)
{
    static __thread char msg[512];
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!primary || (conn && connection_lost(conn)))
        return conn_message(conn);
    snprintf(msg, sizeof msg, "%s", primary);
    return msg;
}

/*
 * Split "//…?a=1&dataset=NAME&b=2" into a libpq URI without the dataset parameter
 * ("postgresql://…?a=1&b=2", malloc'd) and the percent-decoded name (cap bytes).
 */
static int parse_location(const char *uri, const char *location, char **conninfo, char *name,
                          size_t cap)
{
    const char *query = strchr(location, '?');
    size_t base = query ? (size_t)(query - location) : strlen(location);
    size_t total = strlen("postgresql:") + strlen(location) + 1;
    char *out = malloc(total);
    if (!out)
        return imgset_fail("out of memory");
    int len = snprintf(out, total, "postgresql:%.*s", (int)base, location);
    int found = 0;
    const char *p = query ? query + 1 : NULL;
    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t k = end ? (size_t)(end - p) : strlen(p);
        if (k > 8 && strncmp(p, "dataset=", 8) == 0) {
            size_t j = 0;
            for (size_t i = 8; i < k; i++) {
                int c = (unsigned char)p[i];
                if (c == '%' && i + 2 < k && imgtensor_hex_value(p[i + 1]) >= 0 &&
                    imgtensor_hex_value(p[i + 2]) >= 0) {
                    c = imgtensor_hex_value(p[i + 1]) * 16 + imgtensor_hex_value(p[i + 2]);
                    i += 2;
                }
                if (j + 1 >= cap || c == 0) {
                    free(out);
                    return imgset_fail("%s: the dataset name is too long or has a NUL byte "
                                       "(at most %zu bytes)", uri, cap - 1);
                }
                name[j++] = (char)c;
            }
            name[j] = '\0';
            found = 1;
        } else if (k > 0) {
            len += snprintf(out + len, total - (size_t)len, "%c%.*s",
                            strchr(out, '?') ? '&' : '?', (int)k, p);
        }
        p = end ? end + 1 : NULL;
    }
    if (!found) {
        free(out);
        return imgset_fail("%s: no data set named: add ?dataset=NAME to the URI", uri);
    }
    *conninfo = out;
    return 0;
}

/* A new connection: its server's notices kept for error messages, never printed, and the
 * database checked for the extension; 0, or -1 naming uri. */
static int check_extension(const char *uri, PGconn *conn)
{
    last_notice[0] = '\0';
    PQsetNoticeReceiver(conn, remember_notice, NULL);
    PGresult *res = PQexec(conn, "SELECT 1 FROM pg_catalog.pg_extension "
                                 "WHERE extname = 'pg_imgset'");
    int ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    if (!ok || PQntuples(res) != 1) {
        if (ok)
            imgset_fail("%s: the database has no pg_imgset extension (run CREATE EXTENSION "
                        "pg_imgset)", uri);
        else
            imgset_fail("%s: %s", uri, result_message(conn, res));
        PQclear(res);
        return -1;
    }
    PQclear(res);
    return 0;
}

/* Connect as libpq does (the first server that answers) and check that the database has the
 * extension; NULL with imgset_fail(). */
static PGconn *pg_connect(const char *uri, const char *conninfo)
{
    PGconn *conn = PQconnectdb(conninfo);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        imgset_fail("%s: cannot connect: %s", uri, conn_message(conn));
        PQfinish(conn);
        return NULL;
    }
    if (check_extension(uri, conn) < 0) {
        PQfinish(conn);
        return NULL;
    }
    return conn;
}

static void servers_free(Servers *sv)
{
    PQconninfoFree(sv->options);
    for (int f = 0; f < SERVER_FIELDS; f++) {
        free(sv->list[f]);
        free(sv->entry[f]);
    }
    memset(sv, 0, sizeof *sv);
}

/* Split conninfo's host, hostaddr and port lists into one entry per server (a field with one
 * value applies to every server, as in libpq); 0, or -1 naming the URI. */
static int servers_parse(const char *uri, const char *conninfo, Servers *sv)
{
    memset(sv, 0, sizeof *sv);
    char *err = NULL;
    if (!(sv->options = PQconninfoParse(conninfo, &err))) {
        imgset_fail("%s: %s", uri, err ? err : "out of memory");
        PQfreemem(err);
        return -1;
    }
    int values[SERVER_FIELDS] = {0};
    for (PQconninfoOption *o = sv->options; o->keyword; o++)
        for (int f = 0; f < SERVER_FIELDS; f++)
            if (strcmp(o->keyword, server_keywords[f]) == 0 && o->val) {
                if (!(sv->list[f] = strdup(o->val)))
                    goto oom;
                values[f] = 1;
                for (char *c = sv->list[f]; *c; c++)
                    values[f] += *c == ',';
            }
    sv->count = values[FIELD_HOST] ? values[FIELD_HOST] : values[FIELD_HOSTADDR];
    if (sv->count < 1)
        sv->count = 1;
    for (int f = 0; f < SERVER_FIELDS; f++) {
        if (!sv->list[f])
            continue;
        if (values[f] != 1 && values[f] != sv->count) {
            imgset_fail("%s: %d servers but %d %s entries", uri, sv->count, values[f],
                        server_keywords[f]);
            servers_free(sv);
            return -1;
        }
        if (!(sv->entry[f] = malloc(sizeof *sv->entry[f] * (size_t)sv->count)))
            goto oom;
        char *c = sv->list[f];
        for (int i = 0; i < sv->count; i++) {
            sv->entry[f][i] = c;
            char *comma = values[f] > 1 ? strchr(c, ',') : NULL;
            if (comma) {
                *comma = '\0';
                c = comma + 1;
            }
        }
    }
    return 0;
oom:
    servers_free(sv);
    return imgset_fail("out of memory");
}

/* "host:port" of server i for messages, in a per-thread buffer. */
static const char *server_name(const Servers *sv, int i)
{
    static __thread char name[300];
    const char *host = sv->entry[FIELD_HOST] ? sv->entry[FIELD_HOST][i]
                       : sv->entry[FIELD_HOSTADDR] ? sv->entry[FIELD_HOSTADDR][i] : "";
    const char *port = sv->entry[FIELD_PORT] ? sv->entry[FIELD_PORT][i] : "";
    snprintf(name, sizeof name, "%s%s%s", *host ? host : "(default host)", *port ? ":" : "",
             port);
    return name;
}

/* Connect to server i alone: the URI's options with its own host, hostaddr and port. */
static PGconn *server_connect(const Servers *sv, int i)
{
    const char *keywords[64], *values[64];
    int n = 0, named = 0;
    for (const PQconninfoOption *o = sv->options; o->keyword && n < 62; o++) {
        if (!o->val)
            continue;
        keywords[n] = o->keyword;
        values[n] = o->val;
        for (int f = 0; f < SERVER_FIELDS; f++)
            if (strcmp(o->keyword, server_keywords[f]) == 0)
                values[n] = sv->entry[f][i];
        named |= strcmp(o->keyword, "application_name") == 0;
        n++;
    }
    if (!named) {   /* so that a server's pg_stat_activity shows who reads */
        keywords[n] = "fallback_application_name";
        values[n++] = "imgset";
    }
    keywords[n] = values[n] = NULL;
    return PQconnectdbParams(keywords, values, 0);
}

/* Run a command that returns no rows; 0 or -1 naming the URI. */
static int exec_command(PGconn *conn, const char *uri, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    int rc = 0;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = imgset_fail("%s: %s", uri, result_message(conn, res));
    PQclear(res);
    return rc;
}

/* The big-endian 32-bit value at p (binary results are in network order). */
#define get32 imgtensor_wire_get32

/* ---- reading ----------------------------------------------------------------------------- */

static int failover(Store *s);   /* below, with the connection's setup */

static void block_clear(Block *b)
{
    PQclear(b->res);
    free(b->labels);
    free(b->shapes);
    free(b->offsets);
    memset(b, 0, sizeof *b);
    b->split = -1;
}

static void pg_close(Store *s)
{
    PgReader *r = s->impl;
    if (!r)
        return;
    block_clear(&r->cur);
    PQfinish(r->conn);   /* ends a statement still streaming */
    servers_free(&r->servers);
    free(r);
    s->impl = NULL;
}

/* A packed batch (imgtensor_wire.h), checked against what was asked for; points into it. */
typedef struct PackedBatch {
    int n;
    int ragged;
    ImageShape shape;         /* the common shape (zeros when ragged) */
    const uint8_t *pixels;    /* pixel_bytes bytes */
    size_t pixel_bytes;
    const uint8_t *ids;       /* (n) int64, big-endian */
    const uint8_t *labels;    /* (n) int32, big-endian */
    const uint8_t *shapes;    /* (n, 3) int32, big-endian; NULL unless ragged */
} PackedBatch;

/* Parse a packed uint8 batch of n images whose ids must be ids[i] (or first + i when ids is
 * NULL); 0, or -1 naming what is wrong. */
static int parse_packed(Store *s, const uint8_t *p, size_t len, int n, const int64_t *ids,
                        int64_t first, PackedBatch *out)
{
    if (len < IMGBATCH_HEADER || memcmp(p, IMGBATCH_MAGIC, 4) != 0 || p[4] != IMGBATCH_VERSION)
        return imgset_fail("%s: the server sent something that is not an imgset batch", s->uri);
    if (p[5] != IMGTENSOR_UINT8)
        return imgset_fail("%s: the split holds %s images; this store reads uint8", s->uri,
                           p[5] == IMGTENSOR_FLOAT32 ? "float32" : "unknown");
    out->n = (int)get32(p + 8);
    out->ragged = p[6] & IMGBATCH_RAGGED;
    out->shape = (ImageShape){(int32_t)get32(p + 12), (int32_t)get32(p + 16),
                              (int32_t)get32(p + 20)};
    uint64_t pixel_bytes = (uint64_t)get32(p + 24) << 32 | get32(p + 28);
    size_t arrays = (size_t)n * (out->ragged ? 24 : 12);
    if (out->n != n || pixel_bytes > len || len - IMGBATCH_HEADER - pixel_bytes != arrays)
        return imgset_fail("%s: a batch of %d images has the wrong size (%zu bytes)", s->uri, n,
                           len);
    out->pixel_bytes = (size_t)pixel_bytes;
    out->pixels = p + IMGBATCH_HEADER;
    out->ids = out->pixels + pixel_bytes;
    out->labels = out->ids + 8 * (size_t)n;
    out->shapes = out->ragged ? out->labels + 4 * (size_t)n : NULL;
    if (!out->ragged && (!image_shape_valid(out->shape) ||
                         pixel_bytes != (uint64_t)n * image_shape_bytes(out->shape)))
        return imgset_fail("%s: a batch of %d images is not %d images of %dx%dx%d", s->uri, n, n,
                           out->shape.height, out->shape.width, out->shape.channels);
    for (int i = 0; i < n; i++) {
        const uint8_t *e = out->ids + 8 * (size_t)i;
        int64_t id = (int64_t)((uint64_t)get32(e) << 32 | get32(e + 4));
        if (id != (ids ? ids[i] : first + i))
            return imgset_fail("%s: image %d of a batch is id %" PRId64 ", not the one asked for",
                               s->uri, i, id);
    }
    return 0;
}

/* Start the statement that streams images first..end-1 of split, `block` images a row. */
static int start_stream(Store *s, int split, int64_t first, int64_t end, int block)
{
    PgReader *r = s->impl;
    uint8_t rel[4], from[8], step[8], to[8];
    imgtensor_wire_put32(rel, r->rel[split]);
    imgtensor_wire_put32(from, (uint32_t)((uint64_t)first >> 32));
    imgtensor_wire_put32(from + 4, (uint32_t)first);
    imgtensor_wire_put32(step, 0);
    imgtensor_wire_put32(step + 4, (uint32_t)block);
    imgtensor_wire_put32(to, (uint32_t)((uint64_t)end >> 32));
    imgtensor_wire_put32(to + 4, (uint32_t)end);
    const char *values[4] = {(const char *)rel, (const char *)from, (const char *)step,
                             (const char *)to};
    int lengths[4] = {4, 8, 8, 8};
    int formats[4] = {1, 1, 1, 1};
    if (!PQsendQueryPrepared(r->conn, "imgset_stream", 4, values, lengths, formats, 1) ||
        !PQsetSingleRowMode(r->conn))
        return imgset_fail("%s: sending a query failed: %s", s->uri, conn_message(r->conn));
    r->streaming = 1;
    r->stream_split = split;
    r->stream_next = first;
    r->stream_end = end;
    return 0;
}

/* Parse one streamed row (images want_first.., want_n of them) into b, which takes res. */
static int parse_block(Store *s, int split, int64_t want_first, int want_n, PGresult *res,
                       Block *b)
{
    b->res = res;
    b->split = split;
    b->first = want_first;
    b->n = want_n;
    b->labels = malloc(sizeof *b->labels * (size_t)want_n);
    b->shapes = malloc(sizeof *b->shapes * (size_t)want_n);
    b->offsets = malloc(sizeof *b->offsets * ((size_t)want_n + 1));
    if (!b->labels || !b->shapes || !b->offsets)
        return imgset_fail("out of memory");
    PackedBatch pb;
    if (PQntuples(res) != 1 || PQnfields(res) != 1 || PQgetisnull(res, 0, 0))
        return imgset_fail("%s: %s images %" PRId64 "..: unexpected result shape", s->uri,
                           split_names[split], want_first);
    if (parse_packed(s, (const uint8_t *)PQgetvalue(res, 0, 0), (size_t)PQgetlength(res, 0, 0),
                     want_n, NULL, want_first, &pb) < 0)
        return -1;
    b->offsets[0] = 0;
    for (int i = 0; i < want_n; i++) {
        b->labels[i] = (int32_t)get32(pb.labels + 4 * (size_t)i);
        if (pb.ragged) {
            const uint8_t *e = pb.shapes + 12 * (size_t)i;
            b->shapes[i] = (ImageShape){(int32_t)get32(e), (int32_t)get32(e + 4),
                                        (int32_t)get32(e + 8)};
        } else {
            b->shapes[i] = pb.shape;
        }
        size_t bytes = image_shape_bytes(b->shapes[i]);
        if (bytes == 0 || size_add(b->offsets[i], bytes, &b->offsets[i + 1]) < 0)
            return imgset_fail("%s: %s image %" PRId64 ": invalid shape %dx%dx%d", s->uri,
                               split_names[split], want_first + i, b->shapes[i].height,
                               b->shapes[i].width, b->shapes[i].channels);
    }
    if (b->offsets[want_n] != pb.pixel_bytes)
        return imgset_fail("%s: %s images %" PRId64 "..: %zu pixel bytes, the shapes need %zu",
                           s->uri, split_names[split], want_first, pb.pixel_bytes,
                           b->offsets[want_n]);
    b->pixels = pb.pixels;
    return 0;
}

/* Images first.. of split that one block holds. */
static int block_size(const PgReader *r, const Store *s, int split, int64_t first)
{
    int64_t left = s->info.split[split].count - first;
    return (int)(left < r->block_images[split] ? left : r->block_images[split]);
}

/*
 * The next row of the running statement into b (or dropped when b is NULL). Returns 1 with a
 * block, 0 when the statement has ended (the connection is idle again), -1 on failure.
 */
static int next_row(Store *s, Block *b)
{
    PgReader *r = s->impl;
    PGresult *res = PQgetResult(r->conn);
    if (!res) {
        r->streaming = 0;
        return 0;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_SINGLE_TUPLE && r->stream_next < r->stream_end) {
        int split = r->stream_split;
        int64_t first = r->stream_next;
        int64_t left = r->stream_end - first;
        int n = left < r->block_images[split] ? (int)left : r->block_images[split];
        r->stream_next += n;
        if (!b) {
            PQclear(res);
            return 1;
        }
        return parse_block(s, split, first, n, res, b) < 0 ? -1 : 1;
    }
    if (st == PGRES_TUPLES_OK) {   /* the end; NULL follows */
        PQclear(res);
        while ((res = PQgetResult(r->conn)) != NULL)
            PQclear(res);
        r->streaming = 0;
        return 0;
    }
    imgset_fail("%s: reading %s images %" PRId64 "..%" PRId64 ": %s", s->uri,
                split_names[r->stream_split], r->stream_next, r->stream_end - 1,
                st == PGRES_SINGLE_TUPLE ? "more rows than asked for"
                                         : result_message(r->conn, res));
    PQclear(res);
    while ((res = PQgetResult(r->conn)) != NULL)
        PQclear(res);
    r->streaming = 0;
    return -1;
}

/* Drain the running statement, if any (a jump: its remaining blocks are not wanted). */
static int stop_stream(Store *s)
{
    PgReader *r = s->impl;
    int rc;
    while (r->streaming && (rc = next_row(s, NULL)) != 0)
        if (rc < 0)
            return -1;
    return 0;
}

/* Send the sequential statement that follows images first.. of split. */
static int start_run(Store *s, int split, int64_t first)
{
    PgReader *r = s->impl;
    int blocks = r->run < 4 ? 2 << r->run : STREAM_MAX_BLOCKS;
    int block = block_size(r, s, split, first);
    int64_t end = first + (int64_t)blocks * r->block_images[split];
    if (end > s->info.split[split].count)
        end = s->info.split[split].count;
    r->run++;
    return start_stream(s, split, first, end, block);
}

/* Make r->cur hold image index of split, on the current connection. */
static int fetch_block(Store *s, int split, int64_t index)
{
    PgReader *r = s->impl;
    Block *cur = &r->cur;
    if (cur->split == split && index >= cur->first && index < cur->first + cur->n)
        return 0;
    int sequential = cur->split == split && index == cur->first + cur->n;
    block_clear(cur);

    if (!(r->streaming && r->stream_split == split && r->stream_next == index)) {
        if (stop_stream(s) < 0)
            return -1;
        if (sequential) {
            if (start_run(s, split, index) < 0)
                return -1;
        } else {
            r->run = 0;
            if (start_stream(s, split, index, index + 1, 1) < 0)
                return -1;
        }
    }
    int rc = next_row(s, cur);
    if (rc == 0)
        rc = imgset_fail("%s: %s image %" PRId64 " is missing from the answer", s->uri,
                         split_names[split], index);
    if (rc < 0) {
        block_clear(cur);
        stop_stream(s);
        return -1;
    }
    /* The statement's last block arrived: send the next one now, to overlap with our copy. */
    if (r->streaming && r->stream_next >= r->stream_end) {
        if (stop_stream(s) < 0)
            return -1;
        if (sequential && r->stream_end < s->info.split[split].count &&
            start_run(s, split, r->stream_end) < 0)
            return -1;
    }
    return 0;
}

/* Make r->cur hold image index of split, on another server when this one goes away. */
static int ensure_block(Store *s, int split, int64_t index)
{
    int rc;
    while ((rc = fetch_block(s, split, index)) < 0 && (rc = failover(s)) > 0)
        ;
    return rc < 0 ? -1 : 0;
}

static int pg_image_shape(Store *s, int split, int64_t index, ImageShape *shape)
{
    if (ensure_block(s, split, index) < 0)
        return -1;
    PgReader *r = s->impl;
    *shape = r->cur.shapes[index - r->cur.first];
    return 0;
}

static int pg_read_image(Store *s, int split, int64_t index, uint8_t *dst, size_t capacity,
                         ImageShape *shape, int32_t *label)
{
    if (ensure_block(s, split, index) < 0)
        return -1;
    PgReader *r = s->impl;
    int64_t k = index - r->cur.first;
    size_t bytes = r->cur.offsets[k + 1] - r->cur.offsets[k];
    if (bytes > capacity)
        return imgset_fail("%s: %s image %" PRId64 " has %zu bytes, the buffer %zu", s->uri,
                           split_names[split], index, bytes, capacity);
    memcpy(dst, r->cur.pixels + r->cur.offsets[k], bytes);
    *shape = r->cur.shapes[k];
    *label = r->cur.labels[k];
    return 0;
}

/* The error for a packed answer that is not pb->n images of `want`: it names the first image
 * with other channels when there is one. */
static int wrong_image(Store *s, int split, const PackedBatch *pb, const int64_t *indices,
                       ImageShape want)
{
    for (int i = 0; i < pb->n; i++) {
        const uint8_t *sh = pb->ragged ? pb->shapes + 12 * (size_t)i : NULL;
        ImageShape got = sh ? (ImageShape){(int32_t)get32(sh), (int32_t)get32(sh + 4),
                                           (int32_t)get32(sh + 8)}
                            : pb->shape;
        if (got.channels != want.channels)
            return imgset_fail("%s: %s image %lld has %d channels, the loader makes %d", s->uri,
                               split_names[split], (long long)indices[i], got.channels,
                               want.channels);
        if (!image_shape_equal(got, want))
            break;
    }
    return imgset_fail("%s: a batch of %s images is not %d images of %dx%dx%d", s->uri,
                       split_names[split], pb->n, want.height, want.width, want.channels);
}

/*
 * Gather images indices[0..n-1] into dst as `out` images: one imgset_batch_packed(split, ids,
 * height, width) call per BATCH_CHUNK_BYTES of pixels, binary in and out. out.height = 0: the
 * images as stored (a fixed-shape split); else the server resizes + center-crops each to
 * out.height x out.width with the loader's own transform.
 */
static int gather(Store *s, int split, const int64_t *indices, int n, ImageShape out,
                  uint8_t *dst, int32_t *labels)
{
    PgReader *r = s->impl;
    int resize = out.height > 0;
    ImageShape want = resize ? out : s->info.split[split].shape;
    size_t image_bytes = image_shape_bytes(want);
    int chunk = (int)(BATCH_CHUNK_BYTES / image_bytes);
    if (chunk < 1)
        chunk = 1;
    if (stop_stream(s) < 0 && failover(s) < 1)
        return -1;
    for (int done = 0; done < n;) {
        int m = n - done < chunk ? n - done : chunk;
        size_t arr_len = 20 + 12 * (size_t)m;
        uint8_t *arr = malloc(arr_len);
        if (!arr)
            return imgset_fail("out of memory");
        uint8_t rel[4], height[4], width[4];
        imgtensor_wire_put32(rel, r->rel[split]);
        imgtensor_wire_put32(height, (uint32_t)(resize ? out.height : 0));
        imgtensor_wire_put32(width, (uint32_t)(resize ? out.width : 0));
        imgtensor_wire_put32(arr, 1);              /* one dimension */
        imgtensor_wire_put32(arr + 4, 0);          /* no NULLs */
        imgtensor_wire_put32(arr + 8, OID_INT8);
        imgtensor_wire_put32(arr + 12, (uint32_t)m);
        imgtensor_wire_put32(arr + 16, 1);         /* lower bound */
        for (int i = 0; i < m; i++) {
            uint8_t *e = arr + 20 + 12 * (size_t)i;
            uint64_t id = (uint64_t)indices[done + i];
            imgtensor_wire_put32(e, 8);
            imgtensor_wire_put32(e + 4, (uint32_t)(id >> 32));
            imgtensor_wire_put32(e + 8, (uint32_t)id);
        }
        const char *values[4] = {(const char *)rel, (const char *)arr, (const char *)height,
                                 (const char *)width};
        int lengths[4] = {4, (int)arr_len, 4, 4};
        int formats[4] = {1, 1, 1, 1};
        PGresult *res = PQexecPrepared(r->conn, "imgset_ids", 4, values, lengths, formats, 1);
        free(arr);
        int rc = 0;
        PackedBatch pb;
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            rc = imgset_fail("%s: reading a batch of %d %s images: %s", s->uri, m,
                             split_names[split], result_message(r->conn, res));
        else if (PQntuples(res) != 1 || PQnfields(res) != 1 || PQgetisnull(res, 0, 0))
            rc = imgset_fail("%s: unexpected answer to a batch", s->uri);
        else if (parse_packed(s, (const uint8_t *)PQgetvalue(res, 0, 0),
                              (size_t)PQgetlength(res, 0, 0), m, indices + done, 0, &pb) < 0)
            rc = -1;
        else if (pb.ragged || !image_shape_equal(pb.shape, want))
            rc = wrong_image(s, split, &pb, indices + done, want);
        else {
            memcpy(dst + (size_t)done * image_bytes, pb.pixels, pb.pixel_bytes);
            for (int i = 0; i < m; i++)
                labels[done + i] = (int32_t)get32(pb.labels + 4 * (size_t)i);
        }
        PQclear(res);
        if (rc < 0 && failover(s) > 0)
            continue;   /* the same images again, from the server that took over */
        if (rc < 0)
            return -1;
        done += m;
    }
    return 0;
}

static int pg_read_batch(Store *s, int split, const int64_t *indices, int n, uint8_t *dst,
                         int32_t *labels)
{
    return gather(s, split, indices, n, (ImageShape){0, 0, 0}, dst, labels);
}

static int pg_read_batch_resized(Store *s, int split, const int64_t *indices, int n,
                                 ImageShape out, uint8_t *dst, int32_t *labels)
{
    return gather(s, split, indices, n, out, dst, labels);
}

/* Fill s->info's class names from imgset.datasets. */
static int read_classes(Store *s, PgReader *r, const char *name)
{
    const char *params[1] = {name};
    PGresult *res = PQexecParams(
        r->conn,
        "SELECT c FROM " SCHEMA ".datasets d, unnest(d.class_names) WITH ORDINALITY u(c, i) "
        "WHERE d.name = $1 ORDER BY i",
        1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        imgset_fail("%s: %s", s->uri, result_message(r->conn, res));
        PQclear(res);
        return -1;
    }
    int n = PQntuples(res);
    if (n == 0) {
        PQclear(res);
        return imgset_fail("%s: data set \"%s\" does not exist in this database", s->uri, name);
    }
    const char **names = malloc(sizeof *names * (size_t)n);
    if (!names) {
        PQclear(res);
        return imgset_fail("out of memory");
    }
    for (int i = 0; i < n; i++)
        names[i] = PQgetvalue(res, i, 0);
    int rc = dataset_info_set_classes(&s->info, n, names);
    free(names);
    PQclear(res);
    if (rc < 0)
        return -1;
    dataset_info_set_name(&s->info, name);
    return 0;
}

/* Fill s->info's splits from imgset.splits and r->rel from the split tables; with check, the
 * server must report what s->info and r->rel already hold (a replica taking over). */
static int read_splits(Store *s, PgReader *r, const char *name, int check)
{
    const char *params[1] = {name};
    PGresult *res = PQexecParams(r->conn,
                       "SELECT split, rel::oid, count, coalesce(height, 0), coalesce(width, 0), "
                       "coalesce(channels, 0) FROM " SCHEMA ".splits WHERE dataset = $1",
                       1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        imgset_fail("%s: %s", s->uri, result_message(r->conn, res));
        PQclear(res);
        return -1;
    }
    int seen = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        int split = split_from_name(PQgetvalue(res, i, 0));
        if (split < 0) {
            PQclear(res);
            return imgset_fail_prefix("%s: ", s->uri);
        }
        SplitInfo *si = &s->info.split[split];
        uint32_t rel = (uint32_t)strtoul(PQgetvalue(res, i, 1), NULL, 10);
        int64_t count = strtoll(PQgetvalue(res, i, 2), NULL, 10);
        ImageShape shape = {atoi(PQgetvalue(res, i, 3)), atoi(PQgetvalue(res, i, 4)),
                            atoi(PQgetvalue(res, i, 5))};
        if (check && (rel != r->rel[split] || count != si->count ||
                      !image_shape_equal(shape, si->shape))) {
            PQclear(res);
            return imgset_fail("%s: server %s holds another %s split of data set \"%s\" "
                               "(table %u, %lld images) than the first one read (table %u, "
                               "%lld images)", s->uri, server_name(&r->servers, r->server),
                               split_names[split], name, rel, (long long)count, r->rel[split],
                               (long long)si->count);
        }
        r->rel[split] = rel;
        si->count = count;
        si->shape = shape;
        size_t bytes = image_shape_bytes(si->shape);
        int images = bytes ? (int)(BLOCK_BYTES / bytes) : RAGGED_BLOCK_IMAGES;
        r->block_images[split] = images < 1 ? 1 : images > BLOCK_MAX_IMAGES ? BLOCK_MAX_IMAGES
                                                                             : images;
        seen |= 1 << split;
    }
    PQclear(res);
    if (seen != (1 << SPLIT_COUNT) - 1)
        return imgset_fail("%s: data set \"%s\" lacks a train or test split", s->uri, name);
    return 0;
}

/* Make the connected server ready to read: the extension, the data set's metadata (read on
 * the first server, checked on the others) and the prepared statements. */
static int reader_setup(Store *s, PgReader *r, int first)
{
    if (check_extension(s->uri, r->conn) < 0 ||
        (first && read_classes(s, r, r->name) < 0) || read_splits(s, r, r->name, !first) < 0)
        return -1;
    /* One row per block: ids first..first+step-1, first+step.., up to end-1. */
    Oid types[4] = {OID_REGCLASS, OID_INT8, OID_INT8, OID_INT8};
    PGresult *res = PQprepare(
        r->conn, "imgset_stream",
        "SELECT " SCHEMA ".imgset_batch_packed($1, ARRAY(SELECT generate_series(f, "
        "LEAST(f + $3, $4) - 1))) FROM generate_series($2, $4 - 1, $3) f",
        4, types);
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        Oid batch_types[4] = {OID_REGCLASS, OID_INT8ARRAY, OID_INT4, OID_INT4};
        res = PQprepare(r->conn, "imgset_ids",
                        "SELECT " SCHEMA ".imgset_batch_packed($1, $2, $3, $4)",
                        4, batch_types);
    }
    int rc = 0;
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = imgset_fail("%s: %s", s->uri, result_message(r->conn, res));
    PQclear(res);
    return rc;
}

/*
 * Connect r to the first server that answers, trying them in turn from server `from`, and
 * set it up (reader_setup; a server lost during the setup counts as not answering). lost
 * names the server just lost and why (a failover), or is NULL (opening). When that was not
 * the first server tried, one notice says which server reads now and why the others were
 * passed over. -1 when none answers: the error carries each server's message; or when a
 * server answers but does not serve the data set.
 */
static int reader_connect(Store *s, int from, const char *lost)
{
    PgReader *r = s->impl;
    const Servers *sv = &r->servers;
    char passed[1024] = "";
    size_t used = 0;
    if (lost)
        used = (size_t)snprintf(passed, sizeof passed, "%s", lost);
    for (int k = 0; k < sv->count; k++) {
        int i = (from + k) % sv->count;
        PGconn *conn = server_connect(sv, i);
        if (conn && PQstatus(conn) == CONNECTION_OK) {
            r->conn = conn;
            r->server = i;
            if (reader_setup(s, r, !r->ready) == 0) {
                r->ready = 1;
                if (used > 0)
                    imgset_notice("%s: %s; reading from %s", s->uri, passed, server_name(sv, i));
                return 0;
            }
            if (sv->count == 1 || !connection_lost(conn))
                return -1;   /* it answers, but not with the data set */
            r->conn = NULL;
            if (used < sizeof passed)
                used += (size_t)snprintf(passed + used, sizeof passed - used,
                                         "%slost server %s (%s)", used ? "; " : "",
                                         server_name(sv, i), conn_message(conn));
            PQfinish(conn);
            continue;
        }
        if (used < sizeof passed && sv->count == 1)
            used += (size_t)snprintf(passed, sizeof passed, "%s", conn_message(conn));
        else if (used < sizeof passed)
            used += (size_t)snprintf(passed + used, sizeof passed - used,
                                     "%sserver %s does not answer (%s)", used ? "; " : "",
                                     server_name(sv, i), conn_message(conn));
        PQfinish(conn);
    }
    return imgset_fail("%s: cannot connect: %s", s->uri, passed);
}

/*
 * After a failed command: when the connection is gone and the URI names other servers, move
 * to the next server that answers (a notice says so) and return 1 — the caller sends the
 * command again. 0: the connection is fine, or there is no other server (the caller reports
 * its failure); -1: no server answers (imgset_fail() says so).
 */
static int failover(Store *s)
{
    PgReader *r = s->impl;
    if (r->servers.count < 2 || !connection_lost(r->conn))
        return 0;
    char lost[600];
    snprintf(lost, sizeof lost, "lost server %s (%s)", server_name(&r->servers, r->server),
             conn_message(r->conn));
    block_clear(&r->cur);
    r->streaming = 0;
    r->run = 0;
    PQfinish(r->conn);
    r->conn = NULL;
    return reader_connect(s, r->server + 1, lost) < 0 ? -1 : 1;
}

static int pg_open(Store *s, const char *location)
{
    PgReader *r = calloc(1, sizeof *r);
    if (!r)
        return imgset_fail("out of memory");
    r->magic = READER_MAGIC;
    r->cur.split = -1;
    s->impl = r;
    char *conninfo = NULL;
    if (parse_location(s->uri, location, &conninfo, r->name, sizeof r->name) < 0 ||
        servers_parse(s->uri, conninfo, &r->servers) < 0) {
        free(conninfo);
        pg_close(s);
        return -1;
    }
    free(conninfo);
    if (reader_connect(s, s->reader % r->servers.count, NULL) < 0) {
        pg_close(s);
        return -1;
    }
    return 0;
}

/* ---- writing ----------------------------------------------------------------------------- */

static void writer_free(PgWriter *w)
{
    PQfinish(w->conn);
    for (int i = 0; i < SPLIT_COUNT; i++)
        free(w->table[i]);
    free(w->buf);
    free(w);
}

static void pg_abort(Store *s)
{
    PgWriter *w = s->impl;
    if (!w)
        return;
    /* Ending a COPY with an error message makes the server fail it; then roll back. Closing
     * the connection would roll back too, but say so explicitly. */
    if (w->copying >= 0 && PQputCopyEnd(w->conn, "imgset: load aborted") == 1) {
        PGresult *res;
        while ((res = PQgetResult(w->conn)) != NULL)
            PQclear(res);
    }
    PQclear(PQexec(w->conn, "ROLLBACK"));
    writer_free(w);
    s->impl = NULL;
}

/* Send what is buffered; 0 or -1. */
static int flush_copy(Store *s)
{
    PgWriter *w = s->impl;
    if (w->used > 0 && PQputCopyData(w->conn, (const char *)w->buf, (int)w->used) != 1)
        return imgset_fail("%s: sending COPY data failed: %s", s->uri, conn_message(w->conn));
    w->used = 0;
    return 0;
}

/* Append bytes to the COPY buffer, sending it when full. */
static int copy_append(Store *s, const void *data, size_t n)
{
    PgWriter *w = s->impl;
    if (w->used + n > COPY_BUFFER) {
        if (flush_copy(s) < 0)
            return -1;
        if (n > COPY_BUFFER) {   /* a large image goes out on its own */
            if (PQputCopyData(w->conn, data, (int)n) != 1)
                return imgset_fail("%s: sending COPY data failed: %s", s->uri,
                                   conn_message(w->conn));
            return 0;
        }
    }
    memcpy(w->buf + w->used, data, n);
    w->used += n;
    return 0;
}

/* Start COPY … FROM STDIN (FORMAT binary) into a split's table. */
static int start_copy(Store *s, int split)
{
    PgWriter *w = s->impl;
    char sql[512];
    snprintf(sql, sizeof sql, "COPY %s (id, label, img) FROM STDIN (FORMAT binary)",
             w->table[split]);
    PGresult *res = PQexec(w->conn, sql);
    int ok = PQresultStatus(res) == PGRES_COPY_IN;
    if (!ok)
        imgset_fail("%s: %s", s->uri, result_message(w->conn, res));
    PQclear(res);
    if (!ok)
        return -1;
    w->copying = split;
    static const uint8_t header[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0};
    return copy_append(s, header, sizeof header);   /* signature, flags 0, extension 0 */
}

/* Finish the COPY in progress; 0 or -1 with the server's message. */
static int end_copy(Store *s)
{
    PgWriter *w = s->impl;
    static const uint8_t trailer[2] = {0xff, 0xff};
    if (copy_append(s, trailer, 2) < 0 || flush_copy(s) < 0)
        return -1;
    w->copying = -1;
    if (PQputCopyEnd(w->conn, NULL) != 1)
        return imgset_fail("%s: ending COPY failed: %s", s->uri, conn_message(w->conn));
    PGresult *res;
    int rc = 0;
    while ((res = PQgetResult(w->conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK && rc == 0)
            rc = imgset_fail("%s: %s", s->uri, result_message(w->conn, res));
        PQclear(res);
    }
    return rc;
}

/* The text form of an integer array {a,b,c} or NULL for a ragged split. */
static void shape_param(const SplitInfo *si, char *out, size_t cap)
{
    snprintf(out, cap, "{%d,%d,%d}", si->shape.height, si->shape.width, si->shape.channels);
}

/* The class names as a text[] literal: every element double-quoted, \ and " escaped. */
static char *class_array(const DatasetInfo *info)
{
    size_t cap = 3;
    for (int32_t i = 0; i < info->num_classes; i++)
        cap += 2 * strlen(info->class_names[i]) + 3;
    char *out = malloc(cap), *p = out;
    if (!out)
        return NULL;
    *p++ = '{';
    for (int32_t i = 0; i < info->num_classes; i++) {
        if (i)
            *p++ = ',';
        *p++ = '"';
        for (const char *c = info->class_names[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                *p++ = '\\';
            *p++ = *c;
        }
        *p++ = '"';
    }
    *p++ = '}';
    *p = '\0';
    return out;
}

static int pg_create(Store *s, const char *location, const DatasetInfo *info)
{
    char name[IMGSET_NAME_MAX];
    char *conninfo = NULL;
    if (parse_location(s->uri, location, &conninfo, name, sizeof name) < 0)
        return -1;
    PgWriter *w = calloc(1, sizeof *w);
    if (!w || !(w->buf = malloc(COPY_BUFFER))) {
        free(w);
        free(conninfo);
        return imgset_fail("out of memory");
    }
    w->magic = WRITER_MAGIC;
    w->copying = -1;
    s->impl = w;
    w->conn = pg_connect(s->uri, conninfo);
    free(conninfo);
    if (!w->conn || exec_command(w->conn, s->uri, "BEGIN") < 0)
        goto fail;

    char counts[SPLIT_COUNT][24], shapes[SPLIT_COUNT][48];
    const char *params[6] = {name, NULL, counts[0], counts[1], NULL, NULL};
    char *classes = class_array(info);
    if (!classes) {
        imgset_fail("out of memory");
        goto fail;
    }
    params[1] = classes;
    for (int i = 0; i < SPLIT_COUNT; i++) {
        snprintf(counts[i], sizeof counts[i], "%" PRId64, info->split[i].count);
        if (split_is_fixed(&info->split[i])) {
            shape_param(&info->split[i], shapes[i], sizeof shapes[i]);
            params[4 + i] = shapes[i];
        }
    }
    PGresult *res = PQexecParams(w->conn,
                                 "SELECT split, rel::text FROM " SCHEMA ".create_dataset("
                                 "$1, $2::text[], $3::bigint, $4::bigint, $5::integer[], "
                                 "$6::integer[])",
                                 6, NULL, params, NULL, NULL, 0);
    free(classes);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        imgset_fail("%s: %s", s->uri, result_message(w->conn, res));
        PQclear(res);
        goto fail;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        int split = split_from_name(PQgetvalue(res, i, 0));
        if (split < 0 || !(w->table[split] = strdup(PQgetvalue(res, i, 1)))) {
            imgset_fail("%s: unexpected answer from create_dataset", s->uri);
            PQclear(res);
            goto fail;
        }
    }
    PQclear(res);
    for (int i = 0; i < SPLIT_COUNT; i++)
        if (!w->table[i]) {
            imgset_fail("%s: create_dataset made no %s table", s->uri, split_names[i]);
            goto fail;
        }
    return 0;

fail:
    pg_abort(s);
    return -1;
}

static int pg_write_image(Store *s, int split, const uint8_t *pixels, ImageShape shape,
                          int32_t label)
{
    PgWriter *w = s->impl;
    if (w->copying != split) {
        if (w->copying >= 0 && end_copy(s) < 0)
            return -1;
        if (start_copy(s, split) < 0)
            return -1;
    }
    size_t bytes = image_shape_bytes(shape);
    uint8_t row[2 + 4 + 8 + 4 + 4 + 4 + IMGTENSOR_WIRE_HEADER];
    uint64_t id = (uint64_t)s->written[split];   /* ids are the image indexes 0..N-1 */
    row[0] = 0;
    row[1] = 3;                                  /* three fields */
    imgtensor_wire_put32(row + 2, 8);
    imgtensor_wire_put32(row + 6, (uint32_t)(id >> 32));
    imgtensor_wire_put32(row + 10, (uint32_t)id);
    imgtensor_wire_put32(row + 14, 4);
    imgtensor_wire_put32(row + 18, (uint32_t)label);
    imgtensor_wire_put32(row + 22, (uint32_t)(IMGTENSOR_WIRE_HEADER + bytes));
    imgtensor_wire_header(row + 26, IMGTENSOR_UINT8, shape.height, shape.width, shape.channels);
    if (copy_append(s, row, sizeof row) < 0 || copy_append(s, pixels, bytes) < 0)
        return -1;
    return 0;
}

static int pg_commit(Store *s)
{
    PgWriter *w = s->impl;
    if (w->copying >= 0 && end_copy(s) < 0)
        return -1;
    if (exec_command(w->conn, s->uri, "COMMIT") < 0)
        return -1;
    writer_free(w);
    s->impl = NULL;
    return 0;
}

const StoreOps store_pg_ops = {
    .scheme = "postgresql",
    .alias = "postgres",
    .summary = "postgresql://…?dataset=NAME — tables of the pg_imgset extension (libpq URI; "
               "host=/socket/dir for a Unix socket; h1,h2 for replicas)",
    .open = pg_open,
    .image_shape = pg_image_shape,
    .read_image = pg_read_image,
    .close = pg_close,
    .create = pg_create,
    .write_image = pg_write_image,
    .commit = pg_commit,
    .abort = pg_abort,
    .read_batch = pg_read_batch,
    .read_batch_resized = pg_read_batch_resized,
};
