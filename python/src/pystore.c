/* pystore.c — _imgset.Store: one image at a time from any store, for imgset.Dataset and
 * imgset.open(). */
#include "module.h"

#include <pthread.h>
#include <unistd.h>

#include "error.h"
#include "store.h"

typedef struct StoreObject {
    PyObject_HEAD
    Store *store;            /* NULL once closed */
    pid_t pid;               /* the process that opened it */
    pthread_mutex_t lock;    /* a Store is used by one thread at a time */
} StoreObject;

static int store_usable(StoreObject *self)
{
    if (check_same_process(self->pid, "imgset.Store") < 0)
        return -1;
    if (!self->store) {
        PyErr_SetString(PyExc_ValueError, "imgset.Store is closed");
        return -1;
    }
    return 0;
}

static PyObject *store_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    StoreObject *self = (StoreObject *)type->tp_alloc(type, 0);
    if (self)
        pthread_mutex_init(&self->lock, NULL);
    return (PyObject *)self;
}

static int store_init(StoreObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"uri", NULL};
    const char *uri;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "s:Store", keywords, &uri))
        return -1;
    if (self->store) {
        PyErr_SetString(PyExc_RuntimeError, "imgset.Store is already open");
        return -1;
    }
    Store *s;
    Py_BEGIN_ALLOW_THREADS
    s = store_open(uri);
    Py_END_ALLOW_THREADS
    if (!s) {
        raise_library_error();
        return -1;
    }
    self->store = s;
    self->pid = getpid();
    return 0;
}

/* Split number from its name, or -1 with ValueError. */
static int parse_split(const char *name)
{
    int split = split_from_name(name);
    if (split < 0)
        PyErr_Format(PyExc_ValueError, "split must be 'train' or 'test', not '%s'", name);
    return split;
}

/* read(split, index) -> (bytearray of H*W*C pixels, (H, W, C), label) */
static PyObject *store_py_read(StoreObject *self, PyObject *args)
{
    const char *split_name;
    long long index;
    if (!PyArg_ParseTuple(args, "sL:read", &split_name, &index) || store_usable(self) < 0)
        return NULL;
    int split = parse_split(split_name);
    if (split < 0)
        return NULL;
    int64_t count = self->store->info.split[split].count;
    if (index < 0 || index >= count) {
        PyErr_Format(PyExc_IndexError, "%s: %s image %lld is out of range 0..%lld",
                     self->store->uri, split_names[split], index, (long long)count - 1);
        return NULL;
    }
    ImageShape shape;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->lock);
    rc = store_image_shape(self->store, split, index, &shape);
    pthread_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return raise_library_error();
    size_t bytes = image_shape_bytes(shape);
    PyObject *pixels = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)bytes);
    if (!pixels)
        return NULL;
    uint8_t *dst = (uint8_t *)PyByteArray_AS_STRING(pixels);
    int32_t label;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->lock);
    rc = store_read_image(self->store, split, index, dst, bytes, &shape, &label);
    pthread_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        Py_DECREF(pixels);
        return raise_library_error();
    }
    return Py_BuildValue("(N(iii)i)", pixels, shape.height, shape.width, shape.channels, label);
}

static PyObject *store_py_info(StoreObject *self, PyObject *unused)
{
    if (store_usable(self) < 0)
        return NULL;
    return dataset_info_to_dict(&self->store->info);
}

static PyObject *store_py_close(StoreObject *self, PyObject *unused)
{
    if (!self->store)
        Py_RETURN_NONE;
    if (store_usable(self) < 0)
        return NULL;
    Store *s = self->store;
    self->store = NULL;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->lock);
    store_close(s);
    pthread_mutex_unlock(&self->lock);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static void store_dealloc(StoreObject *self)
{
    /* In a fork()ed child the store is the parent's (a libpq connection on a shared socket):
     * closing it here would end the parent's session, so it is left alone. */
    if (self->store && self->pid == getpid())
        store_close(self->store);
    pthread_mutex_destroy(&self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef store_methods[] = {
    {"read", (PyCFunction)store_py_read, METH_VARARGS,
     "read(split, index) -> (bytearray, (H, W, C), label): one image, channels-last uint8."},
    {"info", (PyCFunction)store_py_info, METH_NOARGS, "info() -> the data set's metadata."},
    {"close", (PyCFunction)store_py_close, METH_NOARGS, "close(): close the store."},
    {NULL, NULL, 0, NULL},
};

PyTypeObject StoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "imgset._imgset.Store",
    .tp_doc = "Store(uri): random access to the images of a data set in any store.",
    .tp_basicsize = sizeof(StoreObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = store_new,
    .tp_init = (initproc)store_init,
    .tp_dealloc = (destructor)store_dealloc,
    .tp_methods = store_methods,
};
