/* cublas_v2.h (test/gpu/emu) — cublasSgemm on the host: OpenBLAS in column-major order, with
 * cuBLAS's argument checks and the emulator's check that every matrix is device memory. */
#ifndef IMGSET_EMU_CUBLAS_V2_H
#define IMGSET_EMU_CUBLAS_V2_H

#include "cuda_runtime.h"

typedef struct EmuBlas *cublasHandle_t;
typedef int cublasStatus_t;
enum { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_INVALID_VALUE = 7 };
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;

cublasStatus_t cublasCreate(cublasHandle_t *);
cublasStatus_t cublasDestroy(cublasHandle_t);
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t);
const char *cublasGetStatusString(cublasStatus_t);
cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t, cublasOperation_t, int m, int n,
                           int k, const float *alpha, const float *A, int lda, const float *B,
                           int ldb, const float *beta, float *C, int ldc);

#endif
