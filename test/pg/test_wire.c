/* test_wire.c — imgtensor on the wire through libpq: binary send/recv round trips, COPY …
 * (FORMAT binary) round trips, recv validation, and a fuzz run of thousands of mutated text
 * and binary values that must end with the server alive. Prints TAP.
 * Usage: test_wire [FUZZ_COUNT]   (connects with the PG* environment variables) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "../../extension/imgtensor_wire.h"
#include "rng.h"
#include "tap.h"

static PGconn *conn;
static Oid imgtensor_oid;

/* Run SQL that must succeed; exits on failure (a broken setup, not a test result). */
static PGresult *must(const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        printf("Bail out! %s: %s", sql, PQerrorMessage(conn));
        exit(1);
    }
    return res;
}

/* A valid binary imgtensor of dtype and shape with random pixels; *len set. */
static uint8_t *make_value(Rng *rng, int dtype, int h, int w, int c, size_t *len)
{
    size_t bytes = (size_t)h * w * c * (dtype == IMGTENSOR_FLOAT32 ? 4 : 1);
    uint8_t *v = malloc(IMGTENSOR_WIRE_HEADER + bytes);
    imgtensor_wire_header(v, dtype, h, w, c);
    for (size_t i = 0; i < bytes; i++)
        v[IMGTENSOR_WIRE_HEADER + i] = (uint8_t)rng_next(rng);
    if (dtype == IMGTENSOR_FLOAT32)   /* finite floats, so text and binary agree trivially */
        for (size_t i = 0; i < bytes; i += 4)
            v[IMGTENSOR_WIRE_HEADER + i + 3] &= 0x3f;
    *len = IMGTENSOR_WIRE_HEADER + bytes;
    return v;
}

/* SELECT $1::imgtensor with a binary parameter and binary result. */
static PGresult *echo_binary(const uint8_t *v, size_t len)
{
    const char *values[1] = {(const char *)v};
    int lengths[1] = {(int)len}, formats[1] = {1};
    return PQexecParams(conn, "SELECT $1", 1, &imgtensor_oid, values, lengths, formats, 1);
}

/* The SQLSTATE of a failed result, "" when it succeeded. */
static const char *sqlstate(const PGresult *res)
{
    const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return PQresultStatus(res) == PGRES_TUPLES_OK || PQresultStatus(res) == PGRES_COMMAND_OK
               ? "" : s ? s : "?????";
}

/* Send a mutated binary value; expect success (then it must round-trip) or a clean error. */
static int expect_binary(const uint8_t *v, size_t len, const char *want_state)
{
    PGresult *res = echo_binary(v, len);
    const char *st = sqlstate(res);
    int good = strcmp(st, want_state) == 0;
    if (good && !*st)
        good = PQgetlength(res, 0, 0) == (int)len && memcmp(PQgetvalue(res, 0, 0), v, len) == 0;
    if (!good)
        printf("# got SQLSTATE '%s' (%s), wanted '%s'\n", st, PQresultErrorMessage(res),
               want_state);
    PQclear(res);
    return good;
}

static void test_round_trips(Rng *rng)
{
    static const int shapes[][4] = {{IMGTENSOR_UINT8, 1, 1, 1}, {IMGTENSOR_UINT8, 32, 32, 3},
                                    {IMGTENSOR_UINT8, 7, 13, 4}, {IMGTENSOR_FLOAT32, 5, 3, 2},
                                    {IMGTENSOR_UINT8, 300, 200, 3}, {IMGTENSOR_FLOAT32, 64, 64, 1}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        size_t len;
        uint8_t *v = make_value(rng, shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3], &len);
        ok(expect_binary(v, len, ""), "binary round trip %s %dx%dx%d",
           shapes[k][0] == IMGTENSOR_UINT8 ? "uint8" : "float32", shapes[k][1], shapes[k][2],
           shapes[k][3]);
        /* Text and binary agree: text of the binary value, read back in binary. */
        const char *values[1] = {(const char *)v};
        int lengths[1] = {(int)len}, formats[1] = {1};
        PGresult *res = PQexecParams(conn, "SELECT ($1::text)::imgset.imgtensor", 1,
                                     &imgtensor_oid, values, lengths, formats, 1);
        ok(PQresultStatus(res) == PGRES_TUPLES_OK && PQgetlength(res, 0, 0) == (int)len &&
               memcmp(PQgetvalue(res, 0, 0), v, len) == 0,
           "binary -> text -> binary is the identity for %dx%dx%d", shapes[k][1], shapes[k][2],
           shapes[k][3]);
        PQclear(res);
        free(v);
    }
    /* The payload bytes on the wire: uint8 raw; float32 little-endian IEEE. */
    PGresult *res = PQexecParams(conn, "SELECT 'float32:1x1x2:0000803f000000c0'::imgset.imgtensor",
                                 0, NULL, NULL, NULL, NULL, 1);
    const uint8_t want[] = {0x49, 1, 2, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0,
                            0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};
    ok(PQresultStatus(res) == PGRES_TUPLES_OK && PQgetlength(res, 0, 0) == (int)sizeof want &&
           memcmp(PQgetvalue(res, 0, 0), want, sizeof want) == 0,
       "binary layout: 20-byte big-endian header, then little-endian float32 (1.0, -2.0)");
    PQclear(res);
    /* A compressed value goes out decompressed. */
    res = PQexecParams(conn, "SELECT imgset.imgset_compress(imgset.imgtensor(array_fill(3, "
                             "ARRAY[4000]), 40, 100, 1), 'lz4')",
                       0, NULL, NULL, NULL, NULL, 1);
    int plain = PQresultStatus(res) == PGRES_TUPLES_OK && PQgetlength(res, 0, 0) == 20 + 4000;
    for (int i = 20; plain && i < 4020; i++)
        plain = PQgetvalue(res, 0, 0)[i] == 3;
    ok(plain && PQgetvalue(res, 0, 0)[3] == 0, "a compressed value is sent decompressed, codec 0");
    PQclear(res);
}

static void test_recv_validation(Rng *rng)
{
    size_t len;
    uint8_t *good = make_value(rng, IMGTENSOR_UINT8, 4, 4, 3, &len);
    uint8_t *v = malloc(len + 16);
    struct {
        const char *what;
        int offset, value;   /* byte to set (offset < 0: none) */
        long delta;          /* change of length */
        const char *state;
    } cases[] = {
        {"an empty value", -1, 0, -(long)len, "22P03"},
        {"a truncated header", -1, 0, -(long)len + 10, "22P03"},
        {"a bad magic byte", 0, 0x48, 0, "22P03"},
        {"an unknown version", 1, 2, 0, "22P03"},
        {"an unknown dtype", 2, 3, 0, "22P03"},
        {"dtype 0", 2, 0, 0, "22P03"},
        {"a non-zero codec", 3, 1, 0, "22P03"},
        {"a non-zero reserved field", 19, 1, 0, "22P03"},
        {"a non-zero high reserved byte", 16, 0x80, 0, "22P03"},
        {"a payload one byte short", -1, 0, -1, "22P03"},
        {"a payload one byte long", -1, 0, 1, "22P03"},
        {"height 0", 7, 0, 0, "22023"},
        {"a negative width", 8, 0xff, 0, "22023"},
        {"5 channels", 15, 5, 0, "22023"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        memcpy(v, good, len);
        memset(v + len, 0, 16);
        if (cases[k].offset >= 0)
            v[cases[k].offset] = (uint8_t)cases[k].value;
        if (cases[k].offset == 7)
            v[4] = v[5] = v[6] = 0;
        ok(expect_binary(v, (size_t)((long)len + cases[k].delta), cases[k].state),
           "recv rejects %s with %s", cases[k].what, cases[k].state);
    }
    /* A header claiming 16384x16384x4 with a tiny payload: refused before allocating. */
    uint8_t huge[IMGTENSOR_WIRE_HEADER + 4];
    imgtensor_wire_header(huge, IMGTENSOR_FLOAT32, 16384, 16384, 4);
    ok(expect_binary(huge, sizeof huge, "54000"), "recv rejects a value over 1 GB with 54000");
    imgtensor_wire_header(huge, IMGTENSOR_UINT8, 16384, 16384, 3);
    ok(expect_binary(huge, sizeof huge, "22P03"),
       "recv rejects an 805 MB shape with a 4-byte payload (22P03, no allocation)");

    /* Typmod on binary input. */
    must("CREATE TEMP TABLE typed (img imgset.imgtensor(4,4,3))");
    const char *values[1] = {(const char *)good};
    int lengths[1] = {(int)len}, formats[1] = {1};
    PGresult *res = PQexecParams(conn, "INSERT INTO typed VALUES ($1)", 1, &imgtensor_oid,
                                 values, lengths, formats, 0);
    ok(PQresultStatus(res) == PGRES_COMMAND_OK, "binary input into imgtensor(4,4,3) with that shape");
    PQclear(res);
    uint8_t *other = make_value(rng, IMGTENSOR_UINT8, 4, 3, 4, &len);
    values[0] = (const char *)other;
    lengths[0] = (int)len;
    res = PQexecParams(conn, "INSERT INTO typed VALUES ($1)", 1, &imgtensor_oid, values, lengths,
                       formats, 0);
    ok(strcmp(sqlstate(res), "22000") == 0,
       "binary input of another shape into imgtensor(4,4,3): 22000 (%s)", sqlstate(res));
    PQclear(res);
    free(other);
    free(good);
    free(v);
}

/* COPY table TO STDOUT (FORMAT binary) into a malloc'd buffer. */
static uint8_t *copy_out(const char *sql, size_t *len)
{
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COPY_OUT) {
        printf("Bail out! %s: %s", sql, PQerrorMessage(conn));
        exit(1);
    }
    PQclear(res);
    size_t cap = 1 << 16, used = 0;
    uint8_t *buf = malloc(cap);
    char *chunk;
    int n;
    while ((n = PQgetCopyData(conn, &chunk, 0)) > 0) {
        while (used + (size_t)n > cap)
            buf = realloc(buf, cap *= 2);
        memcpy(buf + used, chunk, (size_t)n);
        used += (size_t)n;
        PQfreemem(chunk);
    }
    while ((res = PQgetResult(conn)) != NULL)
        PQclear(res);
    *len = used;
    return buf;
}

static void test_copy(Rng *rng)
{
    must("CREATE TEMP TABLE src (id bigint, img imgset.imgtensor)");
    must("CREATE TEMP TABLE dst (id bigint, img imgset.imgtensor)");
    Oid types[2] = {20, imgtensor_oid};
    for (int i = 0; i < 200; i++) {
        size_t len;
        int dtype = i % 5 == 4 ? IMGTENSOR_FLOAT32 : IMGTENSOR_UINT8;
        uint8_t *v = make_value(rng, dtype, 1 + (int)rng_below(rng, 40), 1 + (int)rng_below(rng, 40),
                                1 + (int)rng_below(rng, 4), &len);
        char id[32];
        snprintf(id, sizeof id, "%d", i);
        const char *values[2] = {id, (const char *)v};
        int lengths[2] = {0, (int)len}, formats[2] = {0, 1};
        PQclear(PQexecParams(conn, "INSERT INTO src VALUES ($1, $2)", 2, types, values, lengths,
                             formats, 0));
        free(v);
    }
    must("INSERT INTO src SELECT 1000, imgset.imgset_compress(imgset.imgtensor(array_fill(1, "
         "ARRAY[5000]), 50, 100, 1), 'zlib')");
    size_t len;
    uint8_t *data = copy_out("COPY src TO STDOUT (FORMAT binary)", &len);
    PGresult *res = PQexec(conn, "COPY dst FROM STDIN (FORMAT binary)");
    int sent = PQresultStatus(res) == PGRES_COPY_IN;
    PQclear(res);
    for (size_t off = 0; sent && off < len; off += 8192)
        sent = PQputCopyData(conn, (const char *)data + off,
                             (int)(len - off < 8192 ? len - off : 8192)) == 1;
    sent = sent && PQputCopyEnd(conn, NULL) == 1;
    res = PQgetResult(conn);
    sent = sent && PQresultStatus(res) == PGRES_COMMAND_OK && strcmp(PQcmdTuples(res), "201") == 0;
    PQclear(res);
    while ((res = PQgetResult(conn)) != NULL)
        PQclear(res);
    ok(sent, "COPY FROM STDIN (FORMAT binary) reads what COPY TO wrote (201 rows)");
    res = must("SELECT count(*) FROM src JOIN dst USING (id) WHERE src.img = dst.img "
               "AND src.img::text = dst.img::text");
    ok(strcmp(PQgetvalue(res, 0, 0), "201") == 0, "every value survives the binary COPY round trip");
    PQclear(res);
    size_t len2;
    uint8_t *again = copy_out("COPY dst TO STDOUT (FORMAT binary)", &len2);
    ok(len2 == len && memcmp(again, data, len) == 0, "COPY TO of the copy gives the same bytes");
    free(again);
    free(data);
}

/* Change a valid value a little: flip, set, insert or cut bytes, often in the header. */
static size_t mutate(Rng *rng, uint8_t *v, size_t len, size_t cap)
{
    int edits = 1 + (int)rng_below(rng, 4);
    for (int e = 0; e < edits; e++) {
        size_t at = rng_below(rng, 4) == 0 || len == 0 ? rng_below(rng, len + 1)
                                                        : rng_below(rng, len < 24 ? len + 1 : 24);
        switch (rng_below(rng, 6)) {
        case 0:
            if (at < len)
                v[at] ^= (uint8_t)(1u << rng_below(rng, 8));
            break;
        case 1:
            if (at < len)
                v[at] = (uint8_t)rng_next(rng);
            break;
        case 2:
            if (at < len)
                v[at] = rng_below(rng, 2) ? 0xff : 0;
            break;
        case 3:
            len = at;   /* truncate */
            break;
        case 4:
            if (len < cap) {   /* insert a byte */
                memmove(v + at + 1, v + at, len - at);
                v[at] = (uint8_t)rng_next(rng);
                len++;
            }
            break;
        default:
            if (len + 4 <= cap) {   /* append */
                for (int i = 0; i < 4; i++)
                    v[len++] = (uint8_t)rng_next(rng);
            }
        }
    }
    return len;
}

static int allowed_state(const char *st)
{
    static const char *const states[] = {"", "22P02", "22P03", "22023", "54000", "22000", "22021",
                                         NULL};
    for (int i = 0; states[i]; i++)
        if (strcmp(st, states[i]) == 0)
            return 1;
    return 0;
}

static void test_fuzz(Rng *rng, int count)
{
    PGresult *res = must("SELECT pg_postmaster_start_time()::text");
    char started[64];
    snprintf(started, sizeof started, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);

    int bad_binary = 0, accepted_binary = 0, bad_text = 0, accepted_text = 0;
    uint8_t *v = malloc(1 << 16);
    char *text = malloc(1 << 17);
    for (int i = 0; i < count; i++) {
        size_t len;
        uint8_t *base = make_value(rng, rng_below(rng, 3) ? IMGTENSOR_UINT8 : IMGTENSOR_FLOAT32,
                                   1 + (int)rng_below(rng, 9), 1 + (int)rng_below(rng, 9),
                                   1 + (int)rng_below(rng, 4), &len);
        memcpy(v, base, len);
        free(base);
        len = mutate(rng, v, len, 1 << 16);
        res = echo_binary(v, len);
        const char *st = sqlstate(res);
        if (!allowed_state(st)) {
            if (bad_binary++ < 5)
                printf("# binary case %d: SQLSTATE %s: %s", i, st, PQresultErrorMessage(res));
        } else if (!*st) {
            accepted_binary++;
            if (PQgetlength(res, 0, 0) != (int)len || memcmp(PQgetvalue(res, 0, 0), v, len) != 0) {
                if (bad_binary++ < 5)
                    printf("# binary case %d: accepted but not echoed back unchanged\n", i);
            }
        }
        PQclear(res);
        if (PQstatus(conn) != CONNECTION_OK)
            break;

        /* The same idea in text: mutate the literal of a valid value. */
        static const char *const seeds[] = {"uint8:2x3x1:00010203fffe", "float32:1x1x2:0000803f000000c0",
                                            "uint8:1x1x4:deadBEEF", " uint8:3x1x1:0a0b0c "};
        const char *seed = seeds[rng_below(rng, 4)];
        size_t tl = strlen(seed);
        memcpy(text, seed, tl);
        static const char alphabet[] = "0123456789abcdefxX:ABCDEF ufint -+\t\n\\\"'";
        int edits = 1 + (int)rng_below(rng, 3);
        for (int e = 0; e < edits; e++) {
            size_t at = rng_below(rng, tl + 1);
            switch (rng_below(rng, 4)) {
            case 0:
                if (at < tl)
                    text[at] = alphabet[rng_below(rng, sizeof alphabet - 1)];
                break;
            case 1:
                tl = at;
                break;
            case 2:
                memmove(text + at + 1, text + at, tl - at);
                text[at] = alphabet[rng_below(rng, sizeof alphabet - 1)];
                tl++;
                break;
            default:
                if (at < tl && tl < 60) {   /* grow a number: huge or overflowing shapes */
                    memmove(text + at + 3, text + at, tl - at);
                    memcpy(text + at, "999", 3);
                    tl += 3;
                }
            }
        }
        text[tl] = '\0';
        const char *values[1] = {text};
        res = PQexecParams(conn, "SELECT $1::imgset.imgtensor::text", 1, NULL, values, NULL, NULL,
                           0);
        st = sqlstate(res);
        if (!allowed_state(st)) {
            if (bad_text++ < 5)
                printf("# text case %d \"%s\": SQLSTATE %s: %s", i, text, st,
                       PQresultErrorMessage(res));
        } else if (!*st) {
            accepted_text++;
            /* Accepted text must read back as the same value. */
            const char *out[1] = {PQgetvalue(res, 0, 0)};
            Oid text_oid = 25;
            PGresult *again = PQexecParams(conn, "SELECT $1::imgset.imgtensor::text = $1", 1,
                                           &text_oid, out, NULL, NULL, 0);
            if (PQresultStatus(again) != PGRES_TUPLES_OK || strcmp(PQgetvalue(again, 0, 0), "t"))
                if (bad_text++ < 5)
                    printf("# text case %d: output \"%s\" does not read back\n", i, out[0]);
            PQclear(again);
        }
        PQclear(res);
        if (PQstatus(conn) != CONNECTION_OK)
            break;
    }
    free(v);
    free(text);
    ok(bad_binary == 0, "fuzz: %d mutated binary values, each accepted and echoed (%d) or refused "
       "with a data SQLSTATE", count, accepted_binary);
    ok(bad_text == 0, "fuzz: %d mutated text literals, each accepted and re-read (%d) or refused "
       "with a data SQLSTATE", count, accepted_text);
    ok(PQstatus(conn) == CONNECTION_OK, "fuzz: the connection survived");
    PGconn *fresh = PQconnectdb("");
    res = PQexec(fresh, "SELECT pg_postmaster_start_time()::text");
    ok(PQresultStatus(res) == PGRES_TUPLES_OK && strcmp(PQgetvalue(res, 0, 0), started) == 0,
       "fuzz: the server is alive and did not restart (no backend crashed)");
    PQclear(res);
    PQfinish(fresh);
}

int main(int argc, char **argv)
{
    int fuzz_count = argc > 1 ? atoi(argv[1]) : 3000;
    conn = PQconnectdb("");
    if (PQstatus(conn) != CONNECTION_OK) {
        printf("Bail out! cannot connect: %s", PQerrorMessage(conn));
        return 1;
    }
    PQclear(must("SET search_path = public, imgset"));
    PGresult *res = must("SELECT 'imgset.imgtensor'::regtype::oid");
    imgtensor_oid = (Oid)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    Rng rng = rng_make(20240601, 0);
    test_round_trips(&rng);
    test_recv_validation(&rng);
    test_copy(&rng);
    test_fuzz(&rng, fuzz_count);
    PQfinish(conn);
    return tap_done();
}
