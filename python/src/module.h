/* module.h — what the parts of the _imgset extension module share: its error, its types. */
#ifndef IMGSET_PY_MODULE_H
#define IMGSET_PY_MODULE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <sys/types.h>

#include "dataset.h"

/* The module's name: _imgset, or _imgset_emu for the build linked against the host emulation
 * of CUDA (test/gpu/emu), which the tests load beside it. */
#ifndef IMGSET_MODULE_NAME_BARE
#define IMGSET_MODULE_NAME_BARE _imgset
#endif
#define IMGSET_STRINGIFY(x) IMGSET_STRINGIFY_(x)
#define IMGSET_STRINGIFY_(x) #x
#define IMGSET_MODULE_NAME IMGSET_STRINGIFY(IMGSET_MODULE_NAME_BARE)

/* imgset.Error: what the C library reported (a file, index, value or server that was wrong). */
extern PyObject *imgset_py_error;

/* Raise imgset.Error with this thread's library message; returns NULL. */
PyObject *raise_library_error(void);

/* Raise RuntimeError when the object was made in another process (we are a fork()ed child):
 * threads, HDF5 handles and libpq connections do not survive a fork. `what` names the object
 * ("imgset.Loader"). 0 when pid is ours, else -1 with the exception set. */
int check_same_process(pid_t pid, const char *what);

/* A data set's metadata as a dict: {"name", "classes": [...], "splits": {"train": {"count",
 * "shape": (H, W, C) or None}, "test": {...}}}. New reference, NULL with an exception. */
PyObject *dataset_info_to_dict(const DatasetInfo *info);

/* The types, readied and added to the module by module.c. */
extern PyTypeObject LoaderType;      /* _imgset.Loader: the C loader, batches over DLPack */
extern PyTypeObject BatchArrayType;  /* _imgset.BatchArray: one tensor of a kept batch */
extern PyTypeObject StoreType;       /* _imgset.Store: random access to one store */
#ifdef IMGSET_HAVE_LIBPQ
extern PyTypeObject PgServerType;    /* _imgset.PgServer: a throwaway PostgreSQL cluster */
#endif

#endif
