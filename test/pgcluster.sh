#!/usr/bin/env bash
# pgcluster.sh — a throwaway PostgreSQL cluster for tests: private Unix socket, no TCP, no service.
#
#   test/pgcluster.sh start [DIR]   initdb + start in DIR (default: a new mktemp dir under /tmp);
#                                   prints DIR on stdout
#   test/pgcluster.sh standby PRIMARY [DIR]
#                                   a hot standby of the cluster in PRIMARY (pg_basebackup -R,
#                                   streaming replication over its socket); prints DIR
#   test/pgcluster.sh env DIR       prints "export PGHOST=… PGPORT=… PGUSER=… PGDATABASE=…"
#   test/pgcluster.sh stop DIR      stop the server (even a half-started one) and remove DIR
#
# Run as root, the cluster belongs to the `postgres` OS user (initdb refuses root) and clients
# connect as the `postgres` superuser role; run as anyone else, it belongs to that user.
# Settings: PGCLUSTER_SHARED_BUFFERS (default 256MB); IMGSET_PG_BINDIR, the server's programs
# (test/run.sh points it at test/pgtree.sh's private installation; default: pg_config's).
# fsync is off: the data is disposable.
set -euo pipefail

PG_BINDIR=${IMGSET_PG_BINDIR:-$( (pg_config --bindir) 2>/dev/null || echo /usr/lib/postgresql/15/bin)}
[ -x "$PG_BINDIR/initdb" ] || PG_BINDIR=/usr/lib/postgresql/15/bin
MARKER=.imgset-pgcluster

die() { echo "pgcluster: $*" >&2; exit 1; }

# as_owner CMD... — run a command as the cluster's OS user.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# role — the superuser role initdb creates (the OS user that ran it).
role() {
    if [ "$(id -u)" -eq 0 ]; then echo postgres; else id -un; fi
}

# new_dir [DIR] — make (or check empty) a cluster directory with its socket folder and port
# file; prints its absolute path.
new_dir() {
    local dir=${1:-}
    if [ -z "$dir" ]; then
        dir=$(mktemp -d /tmp/imgset-pg.XXXXXX)
    else
        mkdir -p "$dir"
        [ -z "$(ls -A "$dir")" ] || die "start: $dir is not empty"
    fi
    dir=$(cd "$dir" && pwd)
    touch "$dir/$MARKER"
    mkdir -p "$dir/sock"
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || die "start: running as root but there is no postgres OS user"
        chown -R postgres: "$dir"
    fi
    chmod 700 "$dir"
    # The socket lives in our private directory, so any port number is free; pick one away
    # from 5432 so a stray client without PGPORT cannot reach it by accident.
    echo $((20000 + RANDOM % 40000)) >"$dir/port"
    echo "$dir"
}

# start_server DIR — start the server of DIR and wait until it accepts connections.
start_server() {
    local dir=$1
    if ! as_owner "$PG_BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
            >"$dir/pg_ctl.log" 2>&1; then
        cat "$dir/pg_ctl.log" "$dir/server.log" >&2 || true
        cmd_stop "$dir" || true
        die "start: the server did not start"
    fi
}

cmd_start() {
    local dir port
    dir=$(new_dir "${1:-}")
    port=$(cat "$dir/port")

    if ! as_owner "$PG_BINDIR/initdb" -D "$dir/data" --auth=trust --encoding=UTF8 \
            --locale=C --no-sync >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        die "start: initdb failed"
    fi
    cat >>"$dir/data/postgresql.conf" <<EOF
# pgcluster.sh: a disposable test cluster
listen_addresses = ''
unix_socket_directories = '$dir/sock'
port = $port
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = ${PGCLUSTER_SHARED_BUFFERS:-256MB}
max_connections = 40
log_min_messages = warning
log_line_prefix = '%m [%p] '
EOF
    start_server "$dir"
    echo "$dir"
}

cmd_standby() {
    local primary=${1:?usage: pgcluster.sh standby PRIMARY [DIR]} dir
    [ -f "$primary/$MARKER" ] || die "standby: $primary is not a pgcluster directory"
    dir=$(new_dir "${2:-}")
    # Local replication connections are trusted (initdb --auth=trust); -R writes
    # standby.signal and primary_conninfo, so the copy starts as a hot standby; -c fast: the
    # primary checkpoints at once rather than spread over minutes.
    if ! as_owner "$PG_BINDIR/pg_basebackup" -D "$dir/data" -R -X stream -c fast --no-sync \
            -h "$primary/sock" -p "$(cat "$primary/port")" -U "$(role)" \
            >"$dir/basebackup.log" 2>&1; then
        cat "$dir/basebackup.log" >&2
        rm -rf "$dir"
        die "standby: pg_basebackup failed"
    fi
    cat >>"$dir/data/postgresql.conf" <<EOF
# pgcluster.sh: a hot standby of $primary
unix_socket_directories = '$dir/sock'
port = $(cat "$dir/port")
EOF
    start_server "$dir"
    echo "$dir"
}

cmd_env() {
    local dir=${1:?usage: pgcluster.sh env DIR}
    [ -f "$dir/$MARKER" ] || die "env: $dir is not a pgcluster directory"
    echo "export PGHOST='$dir/sock' PGPORT=$(cat "$dir/port") PGUSER=$(role) PGDATABASE=postgres"
}

cmd_stop() {
    local dir=${1:?usage: pgcluster.sh stop DIR}
    [ -d "$dir" ] || return 0
    [ -f "$dir/$MARKER" ] || die "stop: $dir is not a pgcluster directory (refusing to remove it)"
    if [ -f "$dir/data/postmaster.pid" ]; then
        if ! as_owner "$PG_BINDIR/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1
        then
            # Half-started or hung: kill the postmaster named in its own pid file.
            local pid
            pid=$(head -1 "$dir/data/postmaster.pid" 2>/dev/null || true)
            if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
                kill -QUIT "$pid" 2>/dev/null || true
                sleep 1
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
    fi
    rm -rf "$dir"
}

case ${1:-} in
start) shift; cmd_start "$@" ;;
standby) shift; cmd_standby "$@" ;;
stop)  shift; cmd_stop "$@" ;;
env)   shift; cmd_env "$@" ;;
*)     die "usage: pgcluster.sh start [DIR] | standby PRIMARY [DIR] | env DIR | stop DIR" ;;
esac
