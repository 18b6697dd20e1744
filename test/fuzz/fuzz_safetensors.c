/* fuzz_safetensors.c — libFuzzer target: the safetensors header parser and the checkpoint
 * readers on top of it, fed arbitrary bytes (they must fail cleanly, never crash). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t arena_len = safetensors_arena_size(data, size);
    void *arena = malloc(arena_len);
    Safetensors st;
    if (!arena || safetensors_parse(&st, data, size, arena, arena_len, "fuzz") != 0) {
        free(arena);
        return 0;
    }
    /* every parsed tensor is findable and inside the data */
    for (int i = 0; i < st.num_tensors; i++) {
        const SafetensorsTensor *t = safetensors_find(&st, st.tensors[i].name);
        if (t != &st.tensors[i] || t->end > st.data_len || t->begin > t->end)
            abort();
        if (strcmp(t->dtype, "F32") == 0 && t->end - t->begin <= 4096) {
            float buf[1024];
            safetensors_read_f32(&st, t, buf, (size_t)(t->end - t->begin) / 4, "fuzz");
        }
    }
    ModelSpec spec;
    uint64_t seed;
    TrainState state;
    if (checkpoint_read_info(&st, &spec, &seed, &state, "fuzz") == 0) {
        const char *names = safetensors_meta(&st, "class_names");
        if (names && spec.classes <= 4096) {
            size_t cap = strlen(names) + 1;
            char *buf = malloc(cap);
            const char **ptrs = malloc(sizeof(char *) * (size_t)spec.classes);
            if (buf && ptrs)
                checkpoint_decode_class_names(names, buf, cap, ptrs, spec.classes, "fuzz");
            free(buf);
            free(ptrs);
        }
        static ModelGraph graph;   /* large; kept off the stack */
        if (model_graph_build(&graph, &spec) == 0 &&
            graph.param_floats <= ((size_t)1 << 20)) {
            float *params = malloc(sizeof(float) * graph.param_floats);
            float *velocity = malloc(sizeof(float) * graph.param_floats);
            if (params && velocity)
                checkpoint_read_tensors(&st, &graph, params, velocity, "fuzz");
            free(params);
            free(velocity);
        }
    }
    free(arena);
    return 0;
}
