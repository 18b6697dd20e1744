/* pgserver.h — an embedded, throwaway PostgreSQL cluster for the benchmark and the demo:
 * initdb into a temporary folder, a private Unix socket, no TCP, stopped and removed at the
 * end (also on error or Ctrl-C, through pgserver_stop_all at exit). */
#ifndef IMGSET_PGSERVER_H
#define IMGSET_PGSERVER_H

#include <limits.h>

typedef struct PgServer {
    char dir[PATH_MAX];      /* the cluster's folder: data/, sock/, server.log */
    char conninfo[PATH_MAX + 128];  /* libpq URI without dataset= ("postgresql:///postgres?…") */
    int port;
    int running;
} PgServer;

/*
 * initdb a cluster in a new folder under parent (e.g. "/tmp"), tuned for bulk reads
 * (shared_buffers as given, e.g. "2GB"; fsync off: the data is disposable), start it, and
 * CREATE EXTENSION pg_imgset in its postgres database. Run as root, the cluster belongs to the
 * `postgres` OS user (initdb refuses root). The server's programs come from $IMGSET_PG_BINDIR
 * when it is set, else from the PostgreSQL the build found. 0, or -1 with imgset_fail() saying what failed
 * (the server log's tail included); nothing is left behind on failure.
 */
int pgserver_start(PgServer *s, const char *parent, const char *shared_buffers);

/* Stop the server (fast shutdown, then a kill if it hangs) and remove its folder.
 * Safe to call twice and on a server that never started. */
void pgserver_stop(PgServer *s);

/* Stop every server this process started (registered with atexit by pgserver_start). */
void pgserver_stop_all(void);

#endif
