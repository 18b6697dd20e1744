/* json.c — the JSON writer (see json.h). */
#include "json.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

void json_start(Json *j, FILE *f, int compact)
{
    memset(j, 0, sizeof *j);
    j->f = f;
    j->compact = compact;
}

/* Append n bytes. */
static void put(Json *j, const char *s, size_t n)
{
    if (j->failed)
        return;
    if (j->f) {
        if (fwrite(s, 1, n, j->f) != n)
            j->failed = 1;
        return;
    }
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap ? j->cap : 1024;
        while (cap < j->len + n + 1)
            cap *= 2;
        char *bigger = realloc(j->text, cap);
        if (!bigger) {
            j->failed = 1;
            return;
        }
        j->text = bigger, j->cap = cap;
    }
    memcpy(j->text + j->len, s, n);
    j->len += n;
    j->text[j->len] = '\0';
}

static void puts_(Json *j, const char *s)
{
    put(j, s, strlen(s));
}

/* s as a JSON string literal. */
static void quoted(Json *j, const char *s)
{
    put(j, "\"", 1);
    const char *run = s;   /* bytes that need no escape are written in runs */
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c != '"' && *c != '\\' && *c >= 0x20)
            continue;
        put(j, run, (size_t)((const char *)c - run));
        char esc[8];
        if (*c == '"' || *c == '\\')
            esc[0] = '\\', esc[1] = (char)*c, esc[2] = '\0';
        else
            snprintf(esc, sizeof esc, "\\u%04x", *c);
        puts_(j, esc);
        run = (const char *)c + 1;
    }
    puts_(j, run);
    put(j, "\"", 1);
}

/* The comma before a value (when one came before at this depth) and its key. */
static void value_start(Json *j, const char *key)
{
    if (j->started[j->depth])
        puts_(j, j->compact ? "," : ", ");
    j->started[j->depth] = 1;
    if (key) {
        quoted(j, key);
        puts_(j, j->compact ? ":" : ": ");
    }
}

static void open_(Json *j, const char *key, const char *bracket)
{
    value_start(j, key);
    puts_(j, bracket);
    if (j->depth + 1 >= JSON_MAX_DEPTH) {
        j->failed = 1;
        return;
    }
    j->started[++j->depth] = 0;
}

static void close_(Json *j, const char *bracket)
{
    if (j->depth > 0)
        j->depth--;
    puts_(j, bracket);
}

void json_object_begin(Json *j, const char *key)
{
    open_(j, key, "{");
}

void json_object_end(Json *j)
{
    close_(j, "}");
}

void json_array_begin(Json *j, const char *key)
{
    open_(j, key, "[");
}

void json_array_end(Json *j)
{
    close_(j, "]");
}

void json_string(Json *j, const char *key, const char *value)
{
    value_start(j, key);
    if (value)
        quoted(j, value);
    else
        puts_(j, "null");
}

void json_int(Json *j, const char *key, long long value)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", value);
    value_start(j, key);
    puts_(j, buf);
}

void json_uint(Json *j, const char *key, unsigned long long value)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%llu", value);
    value_start(j, key);
    puts_(j, buf);
}

void json_number(Json *j, const char *key, const char *format, double value)
{
    char buf[64];
    value_start(j, key);
    if (!isfinite(value)) {
        puts_(j, "null");
        return;
    }
    snprintf(buf, sizeof buf, format, value);
    puts_(j, buf);
}

void json_bool(Json *j, const char *key, int value)
{
    value_start(j, key);
    puts_(j, value ? "true" : "false");
}

void json_raw(Json *j, const char *text)
{
    puts_(j, text);
}

int json_end(const Json *j)
{
    return j->failed || j->depth != 0 ? -1 : 0;
}

int json_close_file(Json *j, FILE *f, const char *path)
{
    json_raw(j, "\n");
    int bad = json_end(j) < 0;
    if (fclose(f) != 0 || bad)
        return imgset_fail("%s: write failed", path);
    return 0;
}
