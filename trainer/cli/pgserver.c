/* pgserver.c — the embedded throwaway PostgreSQL cluster (see pgserver.h). */
#include "pgserver.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "fsutil.h"

#ifdef IMGSET_HAVE_LIBPQ
#include <libpq-fe.h>
#endif

#ifndef IMGSET_PG_BINDIR
#define IMGSET_PG_BINDIR "/usr/lib/postgresql/15/bin"
#endif

/* The server's binaries: $IMGSET_PG_BINDIR when set (the tests point it at the private
 * installation that holds the extension they just built, test/pgtree.sh), else the build's. */
static void server_program(char *path, size_t size, const char *name)
{
    const char *dir = getenv("IMGSET_PG_BINDIR");
    snprintf(path, size, "%s/%s", dir && *dir ? dir : IMGSET_PG_BINDIR, name);
}

#define MAX_SERVERS 4
static PgServer *started[MAX_SERVERS];

/* The OS user that owns the cluster: postgres when we are root, else ourselves. */
static int cluster_owner(uid_t *uid, gid_t *gid)
{
    if (geteuid() != 0) {
        *uid = geteuid();
        *gid = getegid();
        return 0;
    }
    struct passwd *pw = getpwnam("postgres");
    if (!pw)
        return imgset_fail("pgserver: running as root but there is no postgres OS user "
                           "(install postgresql-15)");
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 0;
}

/* Run argv (argv[0] a full path) as the cluster owner, output appended to log; its status. */
static int run_as_owner(char *const argv[], const char *log)
{
    uid_t uid;
    gid_t gid;
    if (cluster_owner(&uid, &gid) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return imgset_fail("pgserver: fork: %s", strerror(errno));
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        /* Leave the process group so the terminal's Ctrl-C reaches only us: we stop the
         * server ourselves, in order. */
        setsid();
        if (geteuid() == 0 && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0))
            _exit(126);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return imgset_fail("pgserver: waitpid: %s", strerror(errno));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The last lines of a file, for error messages. */
static void tail_of(const char *path, char *out, size_t n)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char buf[4096];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)sizeof buf - 1 ? size - (long)sizeof buf + 1 : 0, SEEK_SET);
    size_t got = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[got] = '\0';
    const char *start = buf;
    int lines = 0;
    for (char *p = buf + got; p > buf; p--)
        if (*p == '\n' && ++lines > 4) {
            start = p + 1;
            break;
        }
    size_t len = strlen(start) < n - 1 ? strlen(start) : n - 1;
    memcpy(out, start, len);
    out[len] = '\0';
    for (char *p = out; *p; p++)
        if (*p == '\n')
            *p = ' ';
}


/* chown every entry of the cluster folder to the owner. */
static uid_t chown_uid;
static gid_t chown_gid;
static int chown_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    return lchown(path, chown_uid, chown_gid);
}

/* Run pg_ctl with `action` (and extra args) on s; its exit status. */
static int pg_ctl(PgServer *s, const char *action, const char *mode)
{
    char pg_ctl_path[PATH_MAX];
    server_program(pg_ctl_path, sizeof pg_ctl_path, "pg_ctl");
    char data[PATH_MAX + 8], log[PATH_MAX + 16], ctl_log[PATH_MAX + 16];
    snprintf(data, sizeof data, "%s/data", s->dir);
    snprintf(log, sizeof log, "%s/server.log", s->dir);
    snprintf(ctl_log, sizeof ctl_log, "%s/pg_ctl.log", s->dir);
    char *argv[] = {pg_ctl_path, "-D", data, "-l", log, "-w", "-t", "60", "-m", (char *)mode,
                    (char *)action, NULL};
    return run_as_owner(argv, ctl_log);
}

int pgserver_start(PgServer *s, const char *parent, const char *shared_buffers)
{
    memset(s, 0, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s/imgset-pg.XXXXXX", parent);
    if (!mkdtemp(s->dir))
        return imgset_fail("pgserver: cannot make a folder in %s: %s", parent, strerror(errno));
    char path[PATH_MAX + 64], log[PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/sock", s->dir);
    mkdir(path, 0700);
    uid_t uid;
    gid_t gid;
    if (cluster_owner(&uid, &gid) < 0)
        goto fail;
    chown_uid = uid;
    chown_gid = gid;
    nftw(s->dir, chown_entry, 8, FTW_PHYS);
    chmod(s->dir, 0700);

    char initdb[PATH_MAX];
    server_program(initdb, sizeof initdb, "initdb");
    if (access(initdb, X_OK) != 0) {
        imgset_fail("pgserver: %s not found (install postgresql-15)", initdb);
        goto fail;
    }
    char data[PATH_MAX + 8];
    snprintf(data, sizeof data, "%s/data", s->dir);
    snprintf(log, sizeof log, "%s/initdb.log", s->dir);
    char *argv[] = {initdb, "-D", data, "--auth=trust", "--encoding=UTF8", "--locale=C",
                    "--no-sync", "-U", "postgres", NULL};
    if (run_as_owner(argv, log) != 0) {
        char tail[600];
        tail_of(log, tail, sizeof tail);
        imgset_fail("pgserver: initdb failed: %.590s", tail);
        goto fail;
    }
    /* The socket is private to our folder, so any port number is free: derive one. */
    s->port = 20000 + (int)((getpid() * 7919u + (unsigned)time(NULL)) % 40000u);
    snprintf(path, sizeof path, "%s/data/postgresql.conf", s->dir);
    FILE *conf = fopen(path, "a");
    if (!conf) {
        imgset_fail("pgserver: cannot append to %s: %s", path, strerror(errno));
        goto fail;
    }
    fprintf(conf,
            "\n# imgset's embedded benchmark cluster: disposable data, tuned for bulk reads\n"
            "listen_addresses = ''\nunix_socket_directories = '%s/sock'\nport = %d\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            "shared_buffers = %s\nwork_mem = '64MB'\nmaintenance_work_mem = '512MB'\n"
            "max_wal_size = '8GB'\nwal_level = minimal\nmax_wal_senders = 0\n"
            "checkpoint_timeout = '30min'\njit = off\nmax_connections = 50\n"
            "log_min_messages = warning\n",
            s->dir, s->port, shared_buffers);
    fclose(conf);
    if (pg_ctl(s, "start", "fast") != 0) {
        char tail[600];
        snprintf(log, sizeof log, "%s/server.log", s->dir);
        tail_of(log, tail, sizeof tail);
        imgset_fail("pgserver: the server did not start: %.590s", tail);
        goto fail;
    }
    s->running = 1;
    for (int i = 0; i < MAX_SERVERS; i++)
        if (!started[i]) {
            started[i] = s;
            break;
        }
    static int registered;
    if (!registered++)
        atexit(pgserver_stop_all);
    snprintf(s->conninfo, sizeof s->conninfo,
             "postgresql:///postgres?host=%s/sock&port=%d&user=postgres", s->dir, s->port);
#ifdef IMGSET_HAVE_LIBPQ
    char plain[sizeof s->conninfo];
    snprintf(plain, sizeof plain, "host=%s/sock port=%d user=postgres dbname=postgres", s->dir,
             s->port);
    PGconn *conn = PQconnectdb(plain);
    if (PQstatus(conn) != CONNECTION_OK) {
        imgset_fail("pgserver: cannot connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        goto fail;
    }
    PGresult *r = PQexec(conn, "CREATE EXTENSION IF NOT EXISTS pg_imgset");
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        imgset_fail("pgserver: CREATE EXTENSION pg_imgset failed (is it installed? run make "
                    "install as root): %s", PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(conn);
        goto fail;
    }
    PQclear(r);
    PQfinish(conn);
#endif
    return 0;

fail:
    pgserver_stop(s);
    return -1;
}

void pgserver_stop(PgServer *s)
{
    if (!s->dir[0])
        return;
    if (s->running && pg_ctl(s, "stop", "fast") != 0) {
        /* Hung or half-started: kill the postmaster its pid file names. */
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/data/postmaster.pid", s->dir);
        FILE *f = fopen(path, "r");
        long pid = 0;
        if (f && fscanf(f, "%ld", &pid) == 1 && pid > 1) {
            kill((pid_t)pid, SIGQUIT);
            sleep(1);
            kill((pid_t)pid, SIGKILL);
        }
        if (f)
            fclose(f);
    }
    s->running = 0;
    (void)fs_remove_tree(s->dir);   /* cleanup: the server is stopped either way */
    s->dir[0] = '\0';
    for (int i = 0; i < MAX_SERVERS; i++)
        if (started[i] == s)
            started[i] = NULL;
}

void pgserver_stop_all(void)
{
    for (int i = 0; i < MAX_SERVERS; i++)
        if (started[i])
            pgserver_stop(started[i]);
}
