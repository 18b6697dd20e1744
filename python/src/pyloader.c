/* pyloader.c — _imgset.Loader: the C loader from Python. Each batch is kept out of the ring
 * (loader_keep) and handed over without a copy as DLPack tensors (_imgset.BatchArray). */
#include "module.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dlpack.h"
#include "error.h"
#include "gpu.h"
#include "loader.h"

/*
 * A kept batch, shared by the BatchArray objects made for it and by every DLPack tensor
 * exported from them; whoever lets go last gives the buffers back to the loader's pool
 * (loader_release). It holds no Python object, so the DLPack deleter may run on any thread,
 * with or without the GIL, and even after the loader was closed.
 */
typedef struct HeldBatch {
    atomic_int refs;
    LoaderKept *kept;
    atomic_int nconsumers;      /* CUDA images exported and released: events below */
    GpuEvent *consumers[LOADER_MAX_CONSUMERS];  /* on each consumer's stream at its release */
    DLDevice image_device;
    DLDataType image_dtype;
    void *image_data;
    int64_t image_shape[4];     /* (N, H, W, C) uint8 or (N, C, H, W) float32 */
    int64_t image_strides[4];   /* in elements, C order */
    int64_t label_shape[1];     /* (N,) */
    int64_t label_strides[1];
    int64_t labels[];           /* (N,) the batch's labels as int64 */
} HeldBatch;

static void held_unref(HeldBatch *h)
{
    if (atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) == 1) {
        int n = atomic_load(&h->nconsumers);
        loader_release_after(h->kept, h->consumers, n < LOADER_MAX_CONSUMERS ? n
                                                       : LOADER_MAX_CONSUMERS);
        free(h);
    }
}

enum { ARRAY_IMAGES, ARRAY_LABELS };

/* _imgset.BatchArray: one tensor (the images or the labels) of a kept batch. */
typedef struct BatchArrayObject {
    PyObject_HEAD
    HeldBatch *held;
    int which;               /* ARRAY_IMAGES or ARRAY_LABELS */
} BatchArrayObject;

/* One export: the DLPack tensor, and the stream its consumer named (CUDA images). */
typedef struct Export {
    DLManagedTensor managed;     /* first: the consumer sees a DLManagedTensor */
    uintptr_t stream;
} Export;

/* The DLPack deleter: called by the consumer (torch, numpy) when its tensor dies, on any
 * thread. For GPU images the consumer's queued kernels may still read the batch: an event on
 * its stream makes the loader refill these buffers only after they ran. */
static void export_deleter(DLManagedTensor *m)
{
    Export *e = (Export *)m;
    HeldBatch *h = m->manager_ctx;
#ifdef IMGSET_HAVE_CUDA
    if (m->dl_tensor.device.device_type == kDLCUDA) {
        int i = atomic_fetch_add(&h->nconsumers, 1);
        GpuEvent *event = i < LOADER_MAX_CONSUMERS ? gpu_event_record(e->stream) : NULL;
        if (event)
            h->consumers[i] = event;
        else if (gpu_sync_consumer_stream(e->stream) < 0)
            fprintf(stderr, "imgset: %s\n", imgset_error());   /* nobody else to tell */
        if (!event && i < LOADER_MAX_CONSUMERS)
            atomic_fetch_sub(&h->nconsumers, 1);
    }
#endif
    free(e);
    held_unref(h);
}

/* A capsule nobody consumed (still named "dltensor") owns its tensor. */
static void capsule_destructor(PyObject *capsule)
{
    if (!PyCapsule_IsValid(capsule, "dltensor"))
        return;
    DLManagedTensor *m = PyCapsule_GetPointer(capsule, "dltensor");
    if (m && m->deleter)
        m->deleter(m);
}

/* The DLTensor describing one of the batch's arrays. */
static DLTensor array_tensor(const BatchArrayObject *a)
{
    const HeldBatch *h = a->held;
    if (a->which == ARRAY_IMAGES)
        return (DLTensor){
            .data = h->image_data, .device = h->image_device, .ndim = 4,
            .dtype = h->image_dtype, .shape = (int64_t *)h->image_shape,
            .strides = (int64_t *)h->image_strides,
        };
    return (DLTensor){
        .data = (void *)h->labels, .device = {kDLCPU, 0}, .ndim = 1,
        .dtype = {kDLInt, 64, 1}, .shape = (int64_t *)h->label_shape,
        .strides = (int64_t *)h->label_strides,
    };
}

/* __dlpack__(stream=None, max_version=None, dl_device=None, copy=None): a "dltensor" capsule
 * viewing the batch's memory. The batch is complete before it is handed out (the loader
 * waited for its CUDA stream), so any consumer stream may read it at once. */
static PyObject *batch_array_dlpack(BatchArrayObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"stream", "max_version", "dl_device", "copy", NULL};
    PyObject *stream = Py_None, *max_version = Py_None, *dl_device = Py_None, *copy = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O$OOO:__dlpack__", keywords, &stream,
                                     &max_version, &dl_device, &copy))
        return NULL;
    if (copy == Py_True) {
        PyErr_SetString(PyExc_BufferError,
                        "imgset batches are shared without a copy (copy=True is not offered)");
        return NULL;
    }
    /* DLPack: None means the consumer did not say; assume the legacy default stream (1). */
    uintptr_t consumer_stream = 1;
    if (stream != Py_None) {
        consumer_stream = (uintptr_t)PyLong_AsUnsignedLongLongMask(stream);
        if (PyErr_Occurred())
            return NULL;
    }
    Export *e = calloc(1, sizeof *e);
    if (!e)
        return PyErr_NoMemory();
    DLManagedTensor *m = &e->managed;
    m->dl_tensor = array_tensor(self);
    m->manager_ctx = self->held;
    m->deleter = export_deleter;
    e->stream = consumer_stream;
    atomic_fetch_add_explicit(&self->held->refs, 1, memory_order_relaxed);
    PyObject *capsule = PyCapsule_New(m, "dltensor", capsule_destructor);
    if (!capsule)
        export_deleter(m);
    return capsule;
}

static PyObject *batch_array_dlpack_device(BatchArrayObject *self, PyObject *unused)
{
    DLTensor t = array_tensor(self);
    return Py_BuildValue("(ii)", (int)t.device.device_type, (int)t.device.device_id);
}

static PyObject *batch_array_shape(BatchArrayObject *self, void *closure)
{
    DLTensor t = array_tensor(self);
    PyObject *shape = PyTuple_New(t.ndim);
    for (int i = 0; shape && i < t.ndim; i++)
        PyTuple_SET_ITEM(shape, i, PyLong_FromLongLong(t.shape[i]));
    return shape;
}

static PyObject *batch_array_dtype(BatchArrayObject *self, void *closure)
{
    DLTensor t = array_tensor(self);
    return PyUnicode_FromString(t.dtype.code == kDLFloat ? "float32"
                                : t.dtype.code == kDLUInt ? "uint8" : "int64");
}

static PyObject *batch_array_data_ptr(BatchArrayObject *self, void *closure)
{
    return PyLong_FromVoidPtr(array_tensor(self).data);
}

static void batch_array_dealloc(BatchArrayObject *self)
{
    if (self->held)
        held_unref(self->held);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef batch_array_methods[] = {
    {"__dlpack__", (PyCFunction)(void (*)(void))batch_array_dlpack,
     METH_VARARGS | METH_KEYWORDS, "A DLPack capsule viewing this array (no copy)."},
    {"__dlpack_device__", (PyCFunction)batch_array_dlpack_device, METH_NOARGS,
     "(device type, device id) as DLPack numbers them: (1, 0) CPU, (2, N) CUDA device N."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef batch_array_getset[] = {
    {"shape", (getter)batch_array_shape, NULL, "the array's shape", NULL},
    {"dtype", (getter)batch_array_dtype, NULL, "'uint8', 'float32' or 'int64'", NULL},
    {"data_ptr", (getter)batch_array_data_ptr, NULL, "the address of the first element", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject BatchArrayType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "imgset._imgset.BatchArray",
    .tp_doc = "One array of a batch (images or labels), exported through DLPack without a "
              "copy: torch.from_dlpack(a) or numpy.from_dlpack(a). The memory stays valid "
              "while this object or any tensor made from it lives.",
    .tp_basicsize = sizeof(BatchArrayObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)batch_array_dealloc,
    .tp_methods = batch_array_methods,
    .tp_getset = batch_array_getset,
};

/* A new BatchArray holding a reference on h. */
static PyObject *batch_array_new(HeldBatch *h, int which)
{
    BatchArrayObject *a = PyObject_New(BatchArrayObject, &BatchArrayType);
    if (!a)
        return NULL;
    atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
    a->held = h;
    a->which = which;
    return (PyObject *)a;
}

/* ---- the loader ------------------------------------------------------------------------- */

typedef struct LoaderObject {
    PyObject_HEAD
    Loader *loader;          /* NULL once closed */
    pid_t pid;               /* the process that opened it */
    int busy;                /* a call runs inside the C loader without the GIL */
    int want_float;
    int device;              /* LOADER_HOST or LOADER_CUDA */
    int device_id;           /* the CUDA device of the batches, with LOADER_CUDA */
    int64_t *indices;        /* (batch_size,) the last batch's positions in the split */
    int count;               /* images in the last batch */
} LoaderObject;

/* Refuse a closed loader, one from before a fork(), and a second thread while one waits. */
static int loader_usable(LoaderObject *self)
{
    if (check_same_process(self->pid, "imgset.Loader") < 0)
        return -1;
    if (!self->loader) {
        PyErr_SetString(PyExc_ValueError, "imgset.Loader is closed");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError,
                        "imgset.Loader is in use by another thread (one loader, one thread)");
        return -1;
    }
    return 0;
}

/* Copy up to IMGSET_MAX_CHANNELS floats from a sequence (one value means every channel). */
static int parse_channels(PyObject *seq, float *out, const char *name)
{
    if (seq == Py_None)
        return 0;
    PyObject *fast = PySequence_Fast(seq, "imgset.Loader: mean and std must be sequences");
    if (!fast)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n < 1 || n > IMGSET_MAX_CHANNELS) {
        Py_DECREF(fast);
        PyErr_Format(PyExc_ValueError, "imgset.Loader: %s has %zd values; give 1 to %d (one "
                     "per channel)", name, n, IMGSET_MAX_CHANNELS);
        return -1;
    }
    for (int k = 0; k < IMGSET_MAX_CHANNELS; k++) {
        double v = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, k < n ? k : n - 1));
        if (v == -1.0 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
        out[k] = (float)v;
    }
    Py_DECREF(fast);
    return 0;
}

/* loader_open on CUDA device `cuda_device` (-1: the calling thread's), leaving the calling
 * thread's device as it was. Runs without the GIL. */
static Loader *open_on_device(const char *uri, const LoaderOptions *o, int cuda_device,
                              int *device_id)
{
    *device_id = 0;
#ifdef IMGSET_HAVE_CUDA
    if (o->device == LOADER_CUDA) {
        int previous = gpu_current_device();
        if (cuda_device >= 0 && gpu_use_device(cuda_device) < 0)
            return NULL;
        *device_id = gpu_current_device();
        Loader *l = loader_open(uri, o);
        if (previous >= 0)
            gpu_use_device(previous);
        return l;
    }
#endif
    return loader_open(uri, o);
}

static int loader_init(LoaderObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"uri", "split", "batch_size", "shuffle", "seed", "drop_last",
                               "height", "width", "augment", "want_float", "mean", "std",
                               "workers", "rank", "world", "device", "cuda_device", "slots",
                               NULL};
    const char *uri, *split = "train", *device = "cpu";
    LoaderOptions o;
    loader_options_default(&o);
    unsigned long long seed = o.seed;
    PyObject *mean = Py_None, *std = Py_None;
    int cuda_device = -1;
    if (self->loader) {
        PyErr_SetString(PyExc_RuntimeError, "imgset.Loader is already open");
        return -1;
    }
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s|$sipKpiippOOiiisii:Loader", keywords,
                                     &uri, &split, &o.batch_size, &o.shuffle, &seed,
                                     &o.drop_last, &o.height, &o.width, &o.augment,
                                     &o.want_float, &mean, &std, &o.workers, &o.rank, &o.world,
                                     &device, &cuda_device, &o.slots))
        return -1;
    o.seed = seed;
    if ((o.split = split_from_name(split)) < 0) {
        PyErr_Format(PyExc_ValueError, "imgset.Loader: split must be 'train' or 'test', not "
                     "'%s'", split);
        return -1;
    }
    if (strcmp(device, "cpu") == 0) {
        o.device = LOADER_HOST;
    } else if (strcmp(device, "cuda") == 0) {
        o.device = LOADER_CUDA;
    } else {
        PyErr_Format(PyExc_ValueError, "imgset.Loader: device must be 'cpu' or 'cuda', not "
                     "'%s'", device);
        return -1;
    }
    if (parse_channels(mean, o.mean, "mean") < 0 || parse_channels(std, o.std, "std") < 0)
        return -1;
    if (o.batch_size < 1) {
        PyErr_Format(PyExc_ValueError, "imgset.Loader: batch_size must be at least 1, not %d",
                     o.batch_size);
        return -1;
    }
    if (!(self->indices = malloc((size_t)o.batch_size * sizeof *self->indices))) {
        PyErr_NoMemory();
        return -1;
    }
    Loader *l;
    int device_id;
    Py_BEGIN_ALLOW_THREADS
    l = open_on_device(uri, &o, cuda_device, &device_id);
    Py_END_ALLOW_THREADS
    if (!l) {
        raise_library_error();
        return -1;
    }
    self->loader = l;
    self->pid = getpid();
    self->want_float = o.want_float;
    self->device = o.device;
    self->device_id = device_id;
    return 0;
}

/* The shared record of a batch just kept: what its BatchArrays export. NULL with
 * imgset_fail(). Runs without the GIL. */
static HeldBatch *held_new(const LoaderObject *self, LoaderKept *kept, const Batch *b)
{
    HeldBatch *h = malloc(sizeof *h + (size_t)b->count * sizeof h->labels[0]);
    if (!h)
        return imgset_fail("out of memory for a batch's labels"), NULL;
    atomic_init(&h->refs, 1);
    atomic_init(&h->nconsumers, 0);
    h->kept = kept;
    int64_t n = b->count, H = b->shape.height, W = b->shape.width, C = b->shape.channels;
    int cuda = self->device == LOADER_CUDA;
    h->image_device = (DLDevice){cuda ? kDLCUDA : kDLCPU, cuda ? self->device_id : 0};
    if (self->want_float) {
        h->image_data = cuda ? (void *)b->device_data : (void *)b->data;
        h->image_dtype = (DLDataType){kDLFloat, 32, 1};
        int64_t shape[4] = {n, C, H, W}, strides[4] = {C * H * W, H * W, W, 1};
        memcpy(h->image_shape, shape, sizeof shape);
        memcpy(h->image_strides, strides, sizeof strides);
    } else {
        h->image_data = cuda ? (void *)b->device_pixels : (void *)b->pixels;
        h->image_dtype = (DLDataType){kDLUInt, 8, 1};
        int64_t shape[4] = {n, H, W, C}, strides[4] = {H * W * C, W * C, C, 1};
        memcpy(h->image_shape, shape, sizeof shape);
        memcpy(h->image_strides, strides, sizeof strides);
    }
    h->label_shape[0] = n;
    h->label_strides[0] = 1;
    for (int i = 0; i < b->count; i++)
        h->labels[i] = b->labels[i];
    return h;
}

/* next() -> (images, labels) as BatchArrays, or None at the end of the epoch. */
static PyObject *loader_py_next(LoaderObject *self, PyObject *unused)
{
    if (loader_usable(self) < 0)
        return NULL;
    self->busy = 1;
    int rc;
    HeldBatch *h = NULL;
    Py_BEGIN_ALLOW_THREADS
    const Batch *next;
    rc = loader_next(self->loader, &next);
    if (rc == 1) {
        Batch b;
        LoaderKept *kept = loader_keep(self->loader, &b);
        if (!kept || !(h = held_new(self, kept, &b))) {
            loader_release(kept);
            rc = -1;
        } else {
            memcpy(self->indices, b.indices, (size_t)b.count * sizeof *self->indices);
            self->count = b.count;
        }
    }
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (rc < 0)
        return raise_library_error();
    if (rc == 0)
        Py_RETURN_NONE;
    PyObject *images = batch_array_new(h, ARRAY_IMAGES);
    PyObject *labels = images ? batch_array_new(h, ARRAY_LABELS) : NULL;
    held_unref(h);   /* the arrays hold it now */
    if (!labels) {
        Py_XDECREF(images);
        return NULL;
    }
    return Py_BuildValue("(NN)", images, labels);
}

static PyObject *loader_py_start_epoch(LoaderObject *self, PyObject *args)
{
    unsigned long long epoch;
    long long batch = 0;
    if (!PyArg_ParseTuple(args, "K|L:start_epoch", &epoch, &batch) || loader_usable(self) < 0)
        return NULL;
    int rc;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    rc = loader_start_epoch(self->loader, epoch, batch);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    if (rc < 0)
        return raise_library_error();
    self->count = 0;
    Py_RETURN_NONE;
}

static PyObject *loader_py_close(LoaderObject *self, PyObject *unused)
{
    if (!self->loader)
        Py_RETURN_NONE;
    if (loader_usable(self) < 0)
        return NULL;
    Loader *l = self->loader;
    self->loader = NULL;
    Py_BEGIN_ALLOW_THREADS
    loader_close(l);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *loader_py_indices(LoaderObject *self, PyObject *unused)
{
    return PyBytes_FromStringAndSize((const char *)self->indices,
                                     (Py_ssize_t)self->count * (Py_ssize_t)sizeof(int64_t));
}

static PyObject *loader_py_buffer_counts(LoaderObject *self, PyObject *unused)
{
    if (loader_usable(self) < 0)
        return NULL;
    int kept, spare;
    loader_buffer_counts(self->loader, &kept, &spare);
    return Py_BuildValue("(ii)", kept, spare);
}

static PyObject *loader_py_info(LoaderObject *self, PyObject *unused)
{
    if (loader_usable(self) < 0)
        return NULL;
    return dataset_info_to_dict(loader_info(self->loader));
}

static PyObject *loader_get_batches(LoaderObject *self, void *closure)
{
    if (loader_usable(self) < 0)
        return NULL;
    return PyLong_FromLongLong(loader_batches(self->loader));
}

static PyObject *loader_get_shape(LoaderObject *self, void *closure)
{
    if (loader_usable(self) < 0)
        return NULL;
    ImageShape s = loader_shape(self->loader);
    return Py_BuildValue("(iii)", s.height, s.width, s.channels);
}

static PyObject *loader_get_closed(LoaderObject *self, void *closure)
{
    return PyBool_FromLong(self->loader == NULL);
}

static void loader_dealloc(LoaderObject *self)
{
    /* In a fork()ed child the loader is the parent's: its threads do not exist here and its
     * connections are shared with the parent, so it is left alone (not closed). */
    if (self->loader && self->pid == getpid()) {
        Loader *l = self->loader;
        Py_BEGIN_ALLOW_THREADS
        loader_close(l);
        Py_END_ALLOW_THREADS
    }
    free(self->indices);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef loader_methods[] = {
    {"next", (PyCFunction)loader_py_next, METH_NOARGS,
     "next() -> (images, labels) BatchArrays, or None after the epoch's last batch. Waits "
     "without the GIL."},
    {"start_epoch", (PyCFunction)loader_py_start_epoch, METH_VARARGS,
     "start_epoch(epoch, batch=0): go to batch `batch` of epoch `epoch`."},
    {"close", (PyCFunction)loader_py_close, METH_NOARGS,
     "close(): stop the workers and close the store; batches handed out stay valid."},
    {"indices", (PyCFunction)loader_py_indices, METH_NOARGS,
     "indices() -> bytes: the last batch's positions in the split (int64, native order)."},
    {"buffer_counts", (PyCFunction)loader_py_buffer_counts, METH_NOARGS,
     "buffer_counts() -> (kept, spare): batches still viewed by arrays or tensors, and spare "
     "buffer sets."},
    {"info", (PyCFunction)loader_py_info, METH_NOARGS, "info() -> the data set's metadata."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef loader_getset[] = {
    {"batches", (getter)loader_get_batches, NULL, "batches per epoch for this rank", NULL},
    {"shape", (getter)loader_get_shape, NULL, "(H, W, C) of every image after transforms",
     NULL},
    {"closed", (getter)loader_get_closed, NULL, "True after close()", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject LoaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "imgset._imgset.Loader",
    .tp_doc = "Loader(uri, *, split='train', batch_size=256, shuffle=True, seed=1, "
              "drop_last=False, height=0, width=0, augment=False, want_float=False, mean=None, "
              "std=None, workers=0, rank=0, world=1, device='cpu', cuda_device=-1, slots=0): "
              "the C loader (loaders/loader.h); imgset.Loader is the interface for users.",
    .tp_basicsize = sizeof(LoaderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)loader_init,
    .tp_dealloc = (destructor)loader_dealloc,
    .tp_methods = loader_methods,
    .tp_getset = loader_getset,
};
