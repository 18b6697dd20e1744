/* blas.c — OpenBLAS for the nn core inside a backend: dlopen'ed on first use with one thread
 * and the CLI's kernel choice, reached through hidden cblas_sgemm / openblas_* trampolines
 * (the module does not link libopenblas, whose constructor would pick a kernel and start
 * threads before any of our code runs). */
#include "postgres.h"

#include <dlfcn.h>

#include "blas.h"

#ifndef BLAS_LIBRARY
#define BLAS_LIBRARY "libopenblas.so.0"
#endif

/* The trampolines are hidden: the nn core in this module binds to them, nothing else does. */
#pragma GCC visibility push(hidden)
#include <cblas.h>

typedef void (*SgemmFunction) (const enum CBLAS_ORDER, const enum CBLAS_TRANSPOSE,
							   const enum CBLAS_TRANSPOSE, const blasint, const blasint,
							   const blasint, const float, const float *, const blasint,
							   const float *, const blasint, const float, float *,
							   const blasint);
typedef void (*SetThreadsFunction) (int);
typedef char *(*CorenameFunction) (void);

static void *blas_handle = NULL;
static SgemmFunction blas_sgemm = NULL;
static SetThreadsFunction blas_set_threads = NULL;
static CorenameFunction blas_corename = NULL;

/* Kernels OpenBLAS falls back to on CPUs it does not recognise (model.c's list). */
static const char *const fallback_cores[] = {"Prescott", "Core2", "Penryn", "Dunnington",
											 "Nehalem", "Atom", "Sandybridge"};

void
cblas_sgemm(const enum CBLAS_ORDER order, const enum CBLAS_TRANSPOSE trans_a,
			const enum CBLAS_TRANSPOSE trans_b, const blasint m, const blasint n,
			const blasint k, const float alpha, const float *a, const blasint lda,
			const float *b, const blasint ldb, const float beta, float *c, const blasint ldc)
{
	/* Only reachable after ImgsetBlasLoad(): every inference entry point calls it first. */
	if (blas_sgemm == NULL)
		elog(ERROR, "pg_imgset: cblas_sgemm called before OpenBLAS was loaded");
	blas_sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void
openblas_set_num_threads(int threads)
{
	/* The backend always runs OpenBLAS on one thread; model.c's calls change nothing. */
}

char *
openblas_get_corename(void)
{
	return blas_corename ? blas_corename() : "not loaded";
}
#pragma GCC visibility pop

/* 1 when core is a fallback kernel. */
static bool
IsFallbackCore(const char *core)
{
	for (int i = 0; core && i < lengthof(fallback_cores); i++)
		if (strcmp(core, fallback_cores[i]) == 0)
			return true;
	return false;
}

/* dlopen the library and resolve the three functions; false (handle closed) on failure. */
static bool
OpenLibrary(char *error, size_t error_len)
{
	const char *message;

	blas_handle = dlopen(BLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
	if (blas_handle == NULL)
	{
		message = dlerror();
		strlcpy(error, message ? message : "unknown error", error_len);
		return false;
	}
	blas_sgemm = (SgemmFunction) dlsym(blas_handle, "cblas_sgemm");
	blas_set_threads = (SetThreadsFunction) dlsym(blas_handle, "openblas_set_num_threads");
	blas_corename = (CorenameFunction) dlsym(blas_handle, "openblas_get_corename");
	if (blas_sgemm && blas_set_threads && blas_corename)
		return true;
	snprintf(error, error_len, "%s lacks cblas_sgemm, openblas_set_num_threads or "
			 "openblas_get_corename", BLAS_LIBRARY);
	dlclose(blas_handle);
	blas_handle = NULL;
	blas_sgemm = NULL;
	blas_set_threads = NULL;
	blas_corename = NULL;
	return false;
}

/* Set or unset (value NULL) an environment variable. */
static void
SetEnv(const char *name, const char *value)
{
	if (value)
		setenv(name, value, 1);
	else
		unsetenv(name);
}

void
ImgsetBlasLoad(void)
{
	char		error[512];
	char	   *saved_threads;
	const char *better = NULL;
	bool		opened;

	if (blas_handle != NULL)
		return;

	/* OpenBLAS reads its thread count when it loads: one, so it starts no thread here. */
	saved_threads = getenv("OPENBLAS_NUM_THREADS");
	if (saved_threads)
		saved_threads = pstrdup(saved_threads);
	setenv("OPENBLAS_NUM_THREADS", "1", 1);
	opened = OpenLibrary(error, sizeof(error));

	/*
	 * The CLI re-executes itself with a better kernel when OpenBLAS fell back to an old one
	 * (model_blas_reexec); a backend cannot, but it can unload the library and load it again.
	 */
#ifdef __x86_64__
	if (opened && getenv("OPENBLAS_CORETYPE") == NULL && IsFallbackCore(blas_corename()))
		better = __builtin_cpu_supports("avx512f") ? "SkylakeX" :
			__builtin_cpu_supports("avx2") ? "Haswell" : NULL;
#endif
	if (better)
	{
		/* (When another module keeps the library loaded, the reload returns that copy and
		 * its kernel: nothing better can be done without restarting the process.) */
		dlclose(blas_handle);
		blas_handle = NULL;
		setenv("OPENBLAS_CORETYPE", better, 1);
		opened = OpenLibrary(error, sizeof(error));
		unsetenv("OPENBLAS_CORETYPE");
	}
	SetEnv("OPENBLAS_NUM_THREADS", saved_threads);
	if (!opened)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FILE),
				 errmsg("pg_imgset: cannot load OpenBLAS for inference"),
				 errdetail("%s", error)));
	blas_set_threads(1);
}

const char *
ImgsetBlasCore(void)
{
	return blas_corename ? blas_corename() : "not loaded";
}
