/* json.h — the one JSON writer: every JSON text the project writes (checkpoint headers, the
 * --json reports of read / train / predict, the bench's results.json) goes through it, so
 * every string is escaped by one rule and every non-finite number becomes null. */
#ifndef IMGSET_JSON_H
#define IMGSET_JSON_H

#include <stddef.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16

/*
 * A writer appends to a FILE (reports) or to a growing text in memory (checkpoint headers).
 * Inside an object every value takes its key; inside an array (or at the top) the key is
 * NULL. Commas come by themselves. `compact` separates with "," and ":" (the checkpoint
 * header's bytes), otherwise with ", " and ": ". A failure (out of memory, a write error,
 * nesting deeper than JSON_MAX_DEPTH) is remembered and reported by json_end().
 */
typedef struct Json {
    FILE *f;                    /* the file written to, or NULL: the text below */
    char *text;                 /* malloc'ed, NUL-terminated; the caller frees it */
    size_t len, cap;
    int compact;
    int failed;
    int depth;
    unsigned char started[JSON_MAX_DEPTH];   /* 1 once a value was written at that depth */
} Json;

/* Start a writer into f, or into memory when f is NULL. */
void json_start(Json *j, FILE *f, int compact);

void json_object_begin(Json *j, const char *key);
void json_object_end(Json *j);
void json_array_begin(Json *j, const char *key);
void json_array_end(Json *j);

/* A string value, escaped ("\"", "\\" and control characters); NULL writes null. */
void json_string(Json *j, const char *key, const char *value);

/* Integers, exactly. */
void json_int(Json *j, const char *key, long long value);
void json_uint(Json *j, const char *key, unsigned long long value);

/* A number printed with a printf format for one double (e.g. "%.6f", "%.9g"); NaN and
 * infinities become null (JSON has neither). */
void json_number(Json *j, const char *key, const char *format, double value);

void json_bool(Json *j, const char *key, int value);

/* Raw text appended as it is (padding after a closed top-level value). */
void json_raw(Json *j, const char *text);

/* 0 when everything was written, -1 otherwise (nothing is printed). Does not close a FILE. */
int json_end(const Json *j);

/* Finish a report written to f (a final newline) and close f: 0, or -1 with imgset_fail()
 * naming path when any write failed. */
int json_close_file(Json *j, FILE *f, const char *path);

#endif
