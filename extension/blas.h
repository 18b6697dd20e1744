/* blas.h — OpenBLAS inside a backend: loaded on first use, single-threaded, with the same CPU
 * kernel the imgset CLI picks (model_blas_reexec), behind the cblas symbols the nn core calls. */
#ifndef IMGSET_BLAS_H
#define IMGSET_BLAS_H

/*
 * Load OpenBLAS (BLAS_LIBRARY, by default libopenblas.so.0) unless it is loaded already:
 * with OPENBLAS_NUM_THREADS=1, so it starts no thread in the backend, and — when OpenBLAS
 * falls back to an old kernel on a CPU it does not know, as model_blas_reexec() detects —
 * loaded a second time with OPENBLAS_CORETYPE=SkylakeX (or Haswell), exactly the kernel the
 * CLI re-executes itself with. The backend's environment is left as it was. Ereports
 * (58P01 / 58000) when the library cannot be loaded.
 */
extern void ImgsetBlasLoad(void);

/* The OpenBLAS kernel in use ("SkylakeX", ...), or "not loaded". */
extern const char *ImgsetBlasCore(void);

#endif
