/* dlpack.h — the DLPack 0.6 structures (dmlc/dlpack's include/dlpack/dlpack.h, the unversioned
 * ABI that torch.from_dlpack and numpy.from_dlpack read from a "dltensor" capsule). */
#ifndef IMGSET_PY_DLPACK_H
#define IMGSET_PY_DLPACK_H

#include <stdint.h>

typedef enum {
    kDLCPU = 1,
    kDLCUDA = 2,
} DLDeviceType;

typedef struct {
    DLDeviceType device_type;
    int32_t device_id;
} DLDevice;

typedef enum {
    kDLInt = 0,
    kDLUInt = 1,
    kDLFloat = 2,
} DLDataTypeCode;

typedef struct {
    uint8_t code;    /* DLDataTypeCode */
    uint8_t bits;
    uint16_t lanes;
} DLDataType;

typedef struct {
    void *data;
    DLDevice device;
    int32_t ndim;
    DLDataType dtype;
    int64_t *shape;     /* (ndim,) */
    int64_t *strides;   /* (ndim,) in elements */
    uint64_t byte_offset;
} DLTensor;

/* The consumer calls deleter(self) when it no longer needs the memory. */
typedef struct DLManagedTensor {
    DLTensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;

#endif
