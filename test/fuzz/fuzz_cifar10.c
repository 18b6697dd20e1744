/* fuzz_cifar10.c — libFuzzer target for the CIFAR-10 batch check, record conversion and meta. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "import.h"

/* The whole input is tried as a batch file and as batches.meta.txt. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t records;
    if (cifar10_check_batch(data, size, "fuzz", &records) == 0) {
        if (records < 0 || (size_t)records * CIFAR10_RECORD != size)
            abort();
        uint8_t image[CIFAR10_SIDE * CIFAR10_SIDE * 3];
        for (int64_t r = 0; r < records; r++) {
            int32_t label;
            cifar10_record_to_hwc(data + (size_t)r * CIFAR10_RECORD, image, &label);
            if (label < 0 || label >= CIFAR10_CLASSES || image[0] != data[r * CIFAR10_RECORD + 1])
                abort();
        }
    }
    DatasetInfo info;
    memset(&info, 0, sizeof info);
    if (cifar10_parse_meta(data, size, "fuzz", &info) == 0) {
        if (info.num_classes != CIFAR10_CLASSES)
            abort();
        for (int i = 0; i < info.num_classes; i++)
            if (!info.class_names[i][0] || strchr(info.class_names[i], '/'))
                abort();
    }
    dataset_info_free(&info);
    return 0;
}
