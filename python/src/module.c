/* module.c — the _imgset extension module: its error, its types, and the data-set functions
 * (convert, generate, digest) over the loaders library. */
#include "module.h"

#include <unistd.h>
#include <xxhash.h>

#include "clock.h"
#include "digest.h"
#include "error.h"
#include "generate.h"
#include "store.h"

PyObject *imgset_py_error;

PyObject *raise_library_error(void)
{
    const char *message = imgset_error();
    PyErr_SetString(imgset_py_error, message[0] ? message : "unknown error in the imgset library");
    return NULL;
}

int check_same_process(pid_t pid, const char *what)
{
    if (pid == getpid())
        return 0;
    PyErr_Format(PyExc_RuntimeError,
                 "%s was made in process %d and used in process %d after fork(): its threads, "
                 "HDF5 handles and PostgreSQL connections do not survive a fork; make one in "
                 "the child process instead", what, (int)pid, (int)getpid());
    return -1;
}

/* The image shape as (H, W, C), or None for a split whose sizes vary. */
static PyObject *shape_or_none(const SplitInfo *split)
{
    if (!split_is_fixed(split))
        Py_RETURN_NONE;
    return Py_BuildValue("(iii)", split->shape.height, split->shape.width,
                         split->shape.channels);
}

PyObject *dataset_info_to_dict(const DatasetInfo *info)
{
    PyObject *classes = PyList_New(info->num_classes);
    PyObject *splits = PyDict_New();
    if (!classes || !splits)
        goto fail;
    for (int32_t k = 0; k < info->num_classes; k++) {
        PyObject *name = PyUnicode_DecodeUTF8(info->class_names[k],
                                              (Py_ssize_t)strlen(info->class_names[k]),
                                              "replace");
        if (!name)
            goto fail;
        PyList_SET_ITEM(classes, k, name);
    }
    for (int s = 0; s < SPLIT_COUNT; s++) {
        PyObject *split = Py_BuildValue("{s:L,s:N}", "count", (long long)info->split[s].count,
                                        "shape", shape_or_none(&info->split[s]));
        if (!split || PyDict_SetItemString(splits, split_names[s], split) < 0) {
            Py_XDECREF(split);
            goto fail;
        }
        Py_DECREF(split);
    }
    return Py_BuildValue("{s:s,s:N,s:N}", "name", info->name, "classes", classes, "splits",
                         splits);

fail:
    Py_XDECREF(classes);
    Py_XDECREF(splits);
    return NULL;
}

/* The state of a copy running without the GIL: Ctrl-C is looked at a few times a second. */
typedef struct CopyProgress {
    PyThreadState *thread;
    double last_check;
    int interrupted;
} CopyProgress;

/* ProgressFn for store_copy: stop (with KeyboardInterrupt set) when a signal handler raised. */
static int copy_progress(void *ctx, int64_t done, int64_t total)
{
    CopyProgress *p = ctx;
    double now = monotonic_seconds();
    if (now - p->last_check < 0.2)
        return 0;
    p->last_check = now;
    PyEval_RestoreThread(p->thread);
    p->interrupted = PyErr_CheckSignals() < 0;
    p->thread = PyEval_SaveThread();
    return p->interrupted;
}

/* Copy src (closed here) into a new store at dst without the GIL; None or NULL. */
static PyObject *copy_store(Store *src, const char *dst)
{
    CopyProgress progress = {.last_check = monotonic_seconds()};
    progress.thread = PyEval_SaveThread();
    int rc = store_copy(src, dst, copy_progress, &progress);
    store_close(src);
    PyEval_RestoreThread(progress.thread);
    if (progress.interrupted)
        return NULL;   /* KeyboardInterrupt (or the handler's exception) is set */
    if (rc < 0)
        return raise_library_error();
    Py_RETURN_NONE;
}

static PyObject *py_convert(PyObject *self, PyObject *args)
{
    const char *src_uri, *dst_uri;
    if (!PyArg_ParseTuple(args, "ss:convert", &src_uri, &dst_uri))
        return NULL;
    Store *src;
    Py_BEGIN_ALLOW_THREADS
    src = store_open(src_uri);
    Py_END_ALLOW_THREADS
    if (!src)
        return raise_library_error();
    return copy_store(src, dst_uri);
}

static PyObject *py_generate(PyObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"like", "out", "train", "test", "seed", NULL};
    GenerateParams p = {.train = -1, .test = -1, .seed = 1};
    const char *out;
    unsigned long long seed = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "ss|LLK:generate", keywords, &p.like, &out,
                                     &p.train, &p.test, &seed))
        return NULL;
    p.seed = seed;
    Store *src = generate_open(&p);
    if (!src)
        return raise_library_error();
    return copy_store(src, out);
}

static PyObject *py_digest(PyObject *self, PyObject *args)
{
    const char *uri;
    if (!PyArg_ParseTuple(args, "s:digest", &uri))
        return NULL;
    SplitDigest d[SPLIT_COUNT];
    int rc = -1;
    Py_BEGIN_ALLOW_THREADS
    Store *s = store_open(uri);
    if (s) {
        rc = 0;
        for (int split = 0; split < SPLIT_COUNT && rc == 0; split++)
            rc = digest_split(s, split, &d[split], NULL, NULL);
        store_close(s);
    }
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return raise_library_error();
    return Py_BuildValue("{s:s,s:s}", split_names[SPLIT_TRAIN], d[SPLIT_TRAIN].hex,
                         split_names[SPLIT_TEST], d[SPLIT_TEST].hex);
}

/* XXH3-128 of a buffer as 32 hex digits, as `imgset read --digest` prints it (for tests that
 * compare a batch sequence with the CLI's). */
static PyObject *py_xxh3_128_hex(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    XXH128_hash_t h;
    Py_BEGIN_ALLOW_THREADS
    h = XXH3_128bits(view.buf, (size_t)view.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    char hex[33];
    snprintf(hex, sizeof hex, "%016llx%016llx", (unsigned long long)h.high64,
             (unsigned long long)h.low64);
    return PyUnicode_FromString(hex);
}

static PyObject *py_backends(PyObject *self, PyObject *unused)
{
    PyObject *list = PyList_New(0);
    for (const StoreOps *const *b = store_backends(); list && *b; b++) {
        PyObject *name = PyUnicode_FromString((*b)->scheme);
        if (!name || PyList_Append(list, name) < 0) {
            Py_XDECREF(name);
            Py_CLEAR(list);
        }
        Py_XDECREF(name);
    }
    return list;
}

static PyObject *py_shape_names(PyObject *self, PyObject *unused)
{
    PyObject *list = PyList_New(0);
    for (const char *const *n = generate_shape_names(); list && *n; n++) {
        PyObject *name = PyUnicode_FromString(*n);
        if (!name || PyList_Append(list, name) < 0)
            Py_CLEAR(list);
        Py_XDECREF(name);
    }
    return list;
}

static PyMethodDef module_methods[] = {
    {"convert", py_convert, METH_VARARGS,
     "convert(src, dst): copy every image, label and class name of the data set at URI src "
     "into a new store at URI dst (which appears only when complete)."},
    {"generate", (PyCFunction)(void (*)(void))py_generate, METH_VARARGS | METH_KEYWORDS,
     "generate(like, out, train=-1, test=-1, seed=1): a synthetic data set of shape `like` "
     "written to URI out (-1: the shape's default count)."},
    {"digest", py_digest, METH_VARARGS,
     "digest(uri) -> {'train': hex, 'test': hex}: each split's content digest, as `imgset "
     "verify` prints it (equal in every store holding the same data set)."},
    {"xxh3_128_hex", py_xxh3_128_hex, METH_O,
     "xxh3_128_hex(buffer) -> str: XXH3-128 of the bytes, as `imgset read --digest` prints it."},
    {"backends", py_backends, METH_NOARGS, "backends() -> the store schemes this build reads."},
    {"shape_names", py_shape_names, METH_NOARGS,
     "shape_names() -> the shapes generate() makes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = IMGSET_MODULE_NAME,
    .m_doc = "The C side of the imgset package: the loaders library (see the imgset package).",
    .m_size = -1,
    .m_methods = module_methods,
};

/* The module's init function is named after the module (_imgset, or _imgset_emu for the
 * build linked against the host emulation of CUDA). */
#define INIT_NAME(name) INIT_NAME_(name)
#define INIT_NAME_(name) PyInit_##name
PyMODINIT_FUNC INIT_NAME(IMGSET_MODULE_NAME_BARE)(void);

PyMODINIT_FUNC INIT_NAME(IMGSET_MODULE_NAME_BARE)(void)
{
    if (PyType_Ready(&LoaderType) < 0 || PyType_Ready(&BatchArrayType) < 0 ||
        PyType_Ready(&StoreType) < 0)
        return NULL;
#ifdef IMGSET_HAVE_LIBPQ
    if (PyType_Ready(&PgServerType) < 0)
        return NULL;
#endif
    PyObject *m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    imgset_py_error = PyErr_NewExceptionWithDoc(
        "imgset.Error",
        "What the imgset library reported: the file, index, value or server that was wrong.",
        PyExc_RuntimeError, NULL);
#ifdef IMGSET_HAVE_CUDA
    int have_cuda = 1;
#else
    int have_cuda = 0;
#endif
    if (!imgset_py_error || PyModule_AddObjectRef(m, "Error", imgset_py_error) < 0 ||
        PyModule_AddObjectRef(m, "Loader", (PyObject *)&LoaderType) < 0 ||
        PyModule_AddObjectRef(m, "BatchArray", (PyObject *)&BatchArrayType) < 0 ||
        PyModule_AddObjectRef(m, "Store", (PyObject *)&StoreType) < 0 ||
        PyModule_AddIntConstant(m, "HAVE_CUDA", have_cuda) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#ifdef IMGSET_HAVE_LIBPQ
    if (PyModule_AddObjectRef(m, "PgServer", (PyObject *)&PgServerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    return m;
}
