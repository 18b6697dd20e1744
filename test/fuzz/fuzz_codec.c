/* fuzz_codec.c — libFuzzer target for the PNG / JPEG header probe and decoders: any bytes give
 * a shape and pixels that agree with the probe, or a clean error; never a crash. */
#include <stdint.h>
#include <stdlib.h>

#include "codec.h"

/* Images larger than this are probed but not decoded (keeps each run fast and small). */
#define DECODE_MAX_BYTES ((size_t)4 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static CodecScratch scratch;
    for (int want = 0; want <= 3; want += 3) {
        ImageShape probed;
        int native;
        if (codec_probe_memory(data, size, "fuzz", want, &probed, &native) != 0)
            continue;
        size_t bytes = image_shape_bytes(probed);
        if (bytes == 0)
            abort();   /* the probe promised a valid shape */
        if (bytes > DECODE_MAX_BYTES)
            continue;
        uint8_t *pixels = malloc(bytes);
        ImageShape decoded;
        if (codec_decode_memory(&scratch, data, size, "fuzz", want, pixels, bytes, &decoded) == 0 &&
            !image_shape_equal(decoded, probed))
            abort();   /* a decode that succeeds has the shape the header said */
        free(pixels);
    }
    return 0;
}
