/* test_json.c — the one JSON writer: escaping, commas, nesting, non-finite numbers and the
 * failures it reports instead of writing a broken text. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "tap.h"

/* The text of a writer that wrote one top-level value with `write`. */
static char *text_of(void (*write)(Json *j), int compact, int *status)
{
    Json j;
    json_start(&j, NULL, compact);
    write(&j);
    *status = json_end(&j);
    return j.text;
}

static void escapes(Json *j)
{
    json_object_begin(j, NULL);
    json_string(j, "q\"k", "a\"b\\c\n\t\x01 \xc3\xa9");
    json_string(j, "none", NULL);
    json_object_end(j);
}

static void numbers(Json *j)
{
    json_array_begin(j, NULL);
    json_int(j, NULL, -3);
    json_uint(j, NULL, 18446744073709551615ull);
    json_number(j, NULL, "%.3f", 0.5);
    json_number(j, NULL, "%.3f", NAN);
    json_number(j, NULL, "%.3f", INFINITY);
    json_bool(j, NULL, 1);
    json_bool(j, NULL, 0);
    json_array_end(j);
}

static void nested(Json *j)
{
    json_object_begin(j, NULL);
    json_array_begin(j, "a");
    json_object_begin(j, NULL);
    json_int(j, "x", 1);
    json_object_end(j);
    json_object_begin(j, NULL);
    json_object_end(j);
    json_array_end(j);
    json_array_begin(j, "empty");
    json_array_end(j);
    json_int(j, "last", 2);
    json_object_end(j);
}

static void too_deep(Json *j)
{
    for (int i = 0; i < JSON_MAX_DEPTH + 1; i++)
        json_array_begin(j, NULL);
    for (int i = 0; i < JSON_MAX_DEPTH + 1; i++)
        json_array_end(j);
}

static void unclosed(Json *j)
{
    json_object_begin(j, NULL);
}

int main(void)
{
    int status;
    char *t = text_of(escapes, 0, &status);
    ok(status == 0 && t &&
           strcmp(t, "{\"q\\\"k\": \"a\\\"b\\\\c\\u000a\\u0009\\u0001 \xc3\xa9\", \"none\": null}") == 0,
       "quotes, backslashes and control characters escaped, UTF-8 kept, NULL is null: %s", t);
    free(t);
    t = text_of(numbers, 1, &status);
    ok(status == 0 && t &&
           strcmp(t, "[-3,18446744073709551615,0.500,null,null,true,false]") == 0,
       "integers exact, the format applied, NaN and infinity null, compact separators: %s", t);
    free(t);
    t = text_of(nested, 0, &status);
    ok(status == 0 && t &&
           strcmp(t, "{\"a\": [{\"x\": 1}, {}], \"empty\": [], \"last\": 2}") == 0,
       "commas between values only, at every depth: %s", t);
    free(t);
    t = text_of(too_deep, 0, &status);
    ok(status < 0, "nesting deeper than %d is a failure, not a corrupt text", JSON_MAX_DEPTH);
    free(t);
    t = text_of(unclosed, 0, &status);
    ok(status < 0, "an object left open is a failure");
    free(t);

    FILE *f = tmpfile();
    Json j;
    json_start(&j, f, 0);
    escapes(&j);
    char buf[256] = {0};
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    ok(json_end(&j) == 0 && n > 0 && strstr(buf, "\"a\\\"b\\\\c\\u000a"),
       "a FILE writer writes the same text: %s", buf);
    fclose(f);
    return tap_done();
}
