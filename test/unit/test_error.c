/* test_error.c — unit tests of the library's runtime (loaders/error.c): messages stay valid
 * UTF-8 however they are cut, and the interrupt hook is called by the nn core between ops, by
 * the resize per row and by the safetensors parser, and may jump out of them (as the
 * extension's does on a cancel) leaving nothing behind. */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "graph.h"
#include "pass.h"
#include "safetensors.h"
#include "tap.h"
#include "transform.h"

/* 1 when s is valid UTF-8 (no overlong forms, surrogates or code points past U+10FFFF). */
static int valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 1 : (*p >= 0xc2 && *p <= 0xdf) ? 2 : (*p >= 0xe0 && *p <= 0xef) ? 3
              : (*p >= 0xf0 && *p <= 0xf4) ? 4 : 0;
        if (n == 0)
            return 0;
        for (int i = 1; i < n; i++)
            if ((p[i] & 0xc0) != 0x80)
                return 0;
        p += n;
    }
    return 1;
}

static int hook_calls, hook_jump_at;
static jmp_buf hook_jump;

/* Counts its calls; jumps out on call hook_jump_at (0: never), as a cancel would. */
static void counting_hook(void)
{
    if (++hook_calls == hook_jump_at)
        longjmp(hook_jump, 1);
}

static void test_messages(void)
{
    char name[64] = "x";
    for (int i = 0; i < 20; i++)
        strcat(name, "\xc3\xa9");   /* é */
    imgset_fail("key \"%.10s\"", name);   /* x + 4.5 characters */
    ok(valid_utf8(imgset_error()) && strcmp(imgset_error(), "key \"x\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9?\"") == 0,
       "a %%.*s cut in the middle of a character leaves '?' in its place: %s", imgset_error());

    char long_text[2048];
    memset(long_text, 'a', 1021);
    long_text[1021] = '\0';
    strcat(long_text, "\xe2\x82\xac\xe2\x82\xac");   /* two €, the first across byte 1023 */
    imgset_fail("%s", long_text);
    ok(valid_utf8(imgset_error()) && strlen(imgset_error()) == 1023,
       "a message cut at the buffer's end is valid UTF-8 (%zu bytes)", strlen(imgset_error()));
    imgset_fail("\xff tensor \xc0\x80 \xed\xa0\x80 \xf4\x90\x80\x80 ok \xe2\x82\xac");
    ok(valid_utf8(imgset_error()) && strstr(imgset_error(), "ok \xe2\x82\xac"),
       "stray, overlong, surrogate and out-of-range bytes are replaced, valid characters kept: %s",
       imgset_error());
    imgset_fail("%s", "inner");
    imgset_fail_prefix("%.2s", "\xc3\xa9\xc3\xa9");
    ok(valid_utf8(imgset_error()) && strcmp(imgset_error(), "\xc3\xa9inner") == 0,
       "a prefix is repaired too: %s", imgset_error());
}

static void test_nn_hook(void)
{
    ModelGraph g;
    ModelSpec spec;
    model_spec_default(&spec, "cnn-small", 3, 32, 32, 10);
    if (!ok(model_graph_build(&g, &spec) == 0, "cnn-small graph"))
        return;
    int N = 4;
    float *params = calloc(g.param_floats, sizeof(float));
    float *x = calloc((size_t)N * 3 * 32 * 32, sizeof(float));
    float *ws = malloc(model_inference_workspace_floats(&g, N) * sizeof(float));
    float logits[4 * 10];

    imgset_set_interrupt_hook(counting_hook);
    hook_calls = 0, hook_jump_at = 0;
    model_inference(&g, params, x, N, ws, logits);
    int per_pass = hook_calls;
    ok(per_pass >= g.num_ops, "a forward pass calls the hook between its ops (%d calls, %d ops)",
       per_pass, g.num_ops);

    hook_calls = 0, hook_jump_at = per_pass / 2;
    int jumped = setjmp(hook_jump);
    if (!jumped)
        model_inference(&g, params, x, N, ws, logits);
    ok(jumped && hook_calls == per_pass / 2, "the hook can jump out of a pass half-way (call %d)",
       hook_calls);
    float again[4 * 10];
    hook_calls = 0, hook_jump_at = 0;
    model_inference(&g, params, x, N, ws, again);
    ok(memcmp(logits, again, sizeof logits) == 0,
       "and the next pass over the same memory gives the same logits (nothing left behind)");

    imgset_set_interrupt_hook(NULL);
    hook_calls = 0;
    model_inference(&g, params, x, N, ws, again);
    ok(hook_calls == 0, "without a hook nothing is called");
    free(params);
    free(x);
    free(ws);
}

static void test_other_hooks(void)
{
    uint8_t src[3 * 4 * 3] = {0}, dst[50 * 40 * 3];
    imgset_set_interrupt_hook(counting_hook);
    hook_calls = 0, hook_jump_at = 0;
    transform_resize(dst, 50, 40, src, 3, 4, 3);
    ok(hook_calls == 50, "transform_resize calls the hook once per output row (%d)", hook_calls);

    /* A header with 3 tensors: the parser calls the hook between entries. */
    const char *json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                       "\"c\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
    size_t hl = strlen(json), len = 8 + hl + 12;
    uint8_t *file = calloc(1, len);
    for (int i = 0; i < 8; i++)
        file[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(file + 8, json, hl);
    size_t arena_len = safetensors_arena_size(file, len);
    void *arena = malloc(arena_len);
    Safetensors st;
    hook_calls = 0;
    int rc = safetensors_parse(&st, file, len, arena, arena_len, "test");
    ok(rc == 0 && hook_calls >= 3, "safetensors_parse calls the hook between entries (%d calls)",
       hook_calls);
    imgset_set_interrupt_hook(NULL);
    free(arena);
    free(file);
}

int main(void)
{
    test_messages();
    test_nn_hook();
    test_other_hooks();
    return tap_done();
}
