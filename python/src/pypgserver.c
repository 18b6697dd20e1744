/* pypgserver.c — _imgset.PgServer: the benchmark's throwaway PostgreSQL cluster (the CLI's
 * embedded one, trainer/cli/pgserver.c) for python -m imgset.bench. */
#include "module.h"

#ifdef IMGSET_HAVE_LIBPQ
#include <stdlib.h>
#include <unistd.h>

#include "error.h"
#include "pgserver.h"

typedef struct PgServerObject {
    PyObject_HEAD
    PgServer *server;        /* NULL until started and after stop() */
    pid_t pid;
} PgServerObject;

static int pgserver_init(PgServerObject *self, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"parent", "shared_buffers", NULL};
    const char *parent = "/tmp", *shared_buffers = "1GB";
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|ss:PgServer", keywords, &parent,
                                     &shared_buffers))
        return -1;
    if (self->server) {
        PyErr_SetString(PyExc_RuntimeError, "imgset.PgServer is already started");
        return -1;
    }
    PgServer *s = calloc(1, sizeof *s);
    if (!s) {
        PyErr_NoMemory();
        return -1;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pgserver_start(s, parent, shared_buffers);
    Py_END_ALLOW_THREADS
    if (rc < 0) {
        free(s);
        raise_library_error();
        return -1;
    }
    self->server = s;
    self->pid = getpid();
    return 0;
}

/* Stop and remove the cluster (only from the process that started it). */
static void pgserver_release(PgServerObject *self)
{
    PgServer *s = self->server;
    self->server = NULL;
    if (!s || self->pid != getpid())
        return;
    Py_BEGIN_ALLOW_THREADS
    pgserver_stop(s);
    Py_END_ALLOW_THREADS
    free(s);
}

static PyObject *pgserver_py_stop(PgServerObject *self, PyObject *unused)
{
    pgserver_release(self);
    Py_RETURN_NONE;
}

static PyObject *pgserver_get_uri(PgServerObject *self, void *closure)
{
    if (!self->server) {
        PyErr_SetString(PyExc_ValueError, "imgset.PgServer is stopped");
        return NULL;
    }
    return PyUnicode_FromString(self->server->conninfo);
}

static void pgserver_dealloc(PgServerObject *self)
{
    pgserver_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef pgserver_methods[] = {
    {"stop", (PyCFunction)pgserver_py_stop, METH_NOARGS,
     "stop(): stop the server and remove its folder (idempotent)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef pgserver_getset[] = {
    {"uri", (getter)pgserver_get_uri, NULL,
     "postgresql:///postgres?host=…&port=…&user=postgres (add &dataset=NAME)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject PgServerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "imgset._imgset.PgServer",
    .tp_doc = "PgServer(parent='/tmp', shared_buffers='1GB'): initdb and start a throwaway "
              "cluster with pg_imgset in its postgres database (as the postgres OS user when "
              "root; programs from $IMGSET_PG_BINDIR when set); stop() or the end of the "
              "process removes it.",
    .tp_basicsize = sizeof(PgServerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)pgserver_init,
    .tp_dealloc = (destructor)pgserver_dealloc,
    .tp_methods = pgserver_methods,
    .tp_getset = pgserver_getset,
};
#endif
