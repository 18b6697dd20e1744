#!/usr/bin/env bash
# replicas.sh — a data set served by a primary and its hot standby through one multi-host URI:
# readers spread over the servers by rank and read what the mmap store holds; stopping the
# standby mid-read moves its reader to the primary without losing a batch; when no server
# answers, the error names each of them. Prints TAP. Run by test/pg/run.sh with the PG*
# variables of its cluster (the primary, in directory $PRIMARY; database imgset_cli with the
# extension); needs $IMGSET and $WORK.
set -u
IMGSET=${IMGSET:?}
WORK=${WORK:?}
PRIMARY=${PRIMARY:?}
PSQL=${PSQL:-psql}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/tap.sh"
finish() { echo "1..$n"; [ "$failed" -eq 0 ]; exit $?; }

STANDBY=
trap '[ -n "$STANDBY" ] && "$ROOT/test/pgcluster.sh" stop "$STANDBY" >/dev/null 2>&1' EXIT
if ! STANDBY=$("$ROOT/test/pgcluster.sh" standby "$PRIMARY" 2>"$WORK/standby.err"); then
    STANDBY=
    not_ok "a hot standby of the test cluster starts (pg_basebackup -R)"
    sed 's/^/# /' "$WORK/standby.err" | tail -10
    finish
fi
ok "a hot standby of the test cluster starts (pg_basebackup -R)"
SSOCK=$STANDBY/sock SPORT=$(cat "$STANDBY/port")
# as_owner CMD... — run a server program as the clusters' OS user (postgres when root).
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
# Connections are logged: which server a reader used is read from the servers' logs.
for dir in "$PRIMARY" "$STANDBY"; do
    echo "log_connections = on" >>"$dir/data/postgresql.conf"
    as_owner "$IMGSET_PG_BINDIR/pg_ctl" -D "$dir/data" reload >/dev/null
done
standby_q() { "$PSQL" -X -At -h "$SSOCK" -p "$SPORT" -d imgset_cli -c "$1" 2>/dev/null; }
# connections DIR — how many connections the reader ("imgset") made to the server in DIR.
connections() { grep -c 'connection authorized.*application_name=imgset' "$1/server.log"; }

A="mmap:$WORK/rep-A"
URI="postgresql:///imgset_cli?host=$PGHOST,$SSOCK&port=$PGPORT,$SPORT&user=$PGUSER&dataset=rep"
"$IMGSET" gen --like cifar10 --train 512 --test 64 --seed 7 --out "$A" >/dev/null
t "the data set is loaded on the primary" "$IMGSET" convert "$A" "${URI%%\?*}?host=$PGHOST&port=$PGPORT&user=$PGUSER&dataset=rep"
for _ in $(seq 300); do
    [ "$(standby_q "SELECT count(*) FROM imgset.datasets WHERE name = 'rep'")" = 1 ] && break
    sleep 0.1
done
t "the standby replays it and is in recovery" \
    test "$(standby_q "SELECT pg_is_in_recovery() || ':' || (SELECT count(*) FROM imgset.datasets WHERE name = 'rep')")" = "true:1"

# read_digest URI RANK ARGS... — the batch digest of rank RANK of 2 reading URI.
read_digest() {
    local uri=$1 rank=$2; shift 2
    "$IMGSET" read "$uri" --rank "$rank" --world 2 --workers 1 --batch 8 --epochs 1 --digest "$@" |
        grep '^batch digest'
}
for rank in 0 1; do
    before_p=$(connections "$PRIMARY") before_s=$(connections "$STANDBY")
    want=$(read_digest "$A" "$rank")
    got=$(read_digest "$URI" "$rank")
    if [ -n "$want" ] && [ "$want" = "$got" ]; then ok "rank $rank of 2 reads the mmap store's batches through the two-server URI"
    else not_ok "rank $rank of 2 reads the mmap store's batches ($want) through the two-server URI ($got)"; fi
    on_p=$(($(connections "$PRIMARY") - before_p)) on_s=$(($(connections "$STANDBY") - before_s))
    server=$([ "$rank" = 0 ] && echo primary || echo standby)
    if { [ "$rank" = 0 ] && [ "$on_p" -gt 0 ] && [ "$on_s" -eq 0 ]; } ||
       { [ "$rank" = 1 ] && [ "$on_s" -gt 0 ] && [ "$on_p" -eq 0 ]; }; then
        ok "rank $rank read from the $server only"
    else
        not_ok "rank $rank read from the $server only ($on_p connections to the primary, $on_s to the standby)"
    fi
done
t "the sequential reader (verify) gives the mmap digests from the standby" \
    "$IMGSET" verify "$A" "postgresql:///imgset_cli?host=$SSOCK,$PGHOST&port=$SPORT,$PGPORT&user=$PGUSER&dataset=rep"

# Stop the standby mid-epoch while a training run reads from it (the standby first in the
# URI): the trainer is paused (SIGSTOP) once the standby has served it a batch, the standby
# stops, the trainer goes on from the primary. Its losses equal those of the same run on the
# mmap store only if it got every batch, in order.
# served_by_standby PID — wait until the standby shows a reader's batch statement while PID
# runs, then a little more (the prepared statement shows from its preparation on); prints 1,
# or 0 when PID ended first.
served_by_standby() {
    for _ in $(seq 400); do
        if [ "$(standby_q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'imgset'
                AND query LIKE '%imgset_batch_packed(\$1, \$2, \$3, \$4)%'")" -gt 0 ]; then
            sleep 0.1; echo 1; return
        fi
        kill -0 "$1" 2>/dev/null || break
        sleep 0.02
    done
    echo 0
}
# stop_standby_paused PID... — pause the processes (SIGSTOP), stop the standby, let them go
# on; prints 1 when every one was still running (stopped, not exited) when the standby went.
stop_standby_paused() {
    local pid running=1
    kill -STOP "$@" 2>/dev/null
    for pid in "$@"; do   # the signal lands asynchronously: wait for the stopped state
        for _ in $(seq 100); do
            grep -qE '^[0-9]+ \(.*\) T' "/proc/$pid/stat" 2>/dev/null && break
            sleep 0.01
        done
        grep -qE '^[0-9]+ \(.*\) T' "/proc/$pid/stat" 2>/dev/null || running=0
    done
    as_owner "$IMGSET_PG_BINDIR/pg_ctl" -D "$STANDBY/data" -m fast -w stop >/dev/null 2>&1
    kill -CONT "$@" 2>/dev/null
    echo "$running"
}
# same_losses DESCRIPTION STATUS WANT.json GOT.json ERRORS — the run exited 0 and every
# epoch's loss is the reference run's, to the printed digit.
losses() { grep -o '"train_loss": [0-9.e+-]*' "$1"; }
same_losses() {
    if [ "$2" -eq 0 ] && [ -n "$(losses "$3")" ] && [ "$(losses "$3")" = "$(losses "$4")" ]; then
        ok "$1"
    else
        not_ok "$1 (status $2)"; sed 's/^/# /' "$5" | tail -8
    fi
}
train=(--model cnn-small --batch 8 --epochs 2 --threads 1 --workers 1 --seed 3)
"$IMGSET" train "$A" "${train[@]}" --json "$WORK/mmap.json" >/dev/null 2>&1
"$IMGSET" train "postgresql:///imgset_cli?host=$SSOCK,$PGHOST&port=$SPORT,$PGPORT&user=$PGUSER&dataset=rep" \
    "${train[@]}" --json "$WORK/failover.json" >"$WORK/failover.out" 2>"$WORK/failover.err" &
trainer=$!
served=$(served_by_standby "$trainer")
running=$(stop_standby_paused "$trainer")
wait "$trainer"
status=$?
if [ "$served" = 1 ] && [ "$running" = 1 ]; then ok "the standby stopped mid-run while the trainer read from it"
else not_ok "the standby stopped mid-run while the trainer read from it (served $served, running $running)"; fi
same_losses "the trainer finished on the primary with the mmap run's losses: no batch lost" \
    "$status" "$WORK/mmap.json" "$WORK/failover.json" "$WORK/failover.err"
if [ "$(grep -c "lost server $SSOCK:$SPORT .*; reading from $PGHOST:$PGPORT" "$WORK/failover.err")" -ge 1 ]; then
    ok "a line on stderr says the reader moved from the standby to the primary"
else
    not_ok "a line on stderr says the reader moved from the standby to the primary"
    sed 's/^/# /' "$WORK/failover.err" | head -5
fi

# Two ranks under MPI, rank 0 reading from the primary and rank 1 from the standby; the
# standby stops mid-epoch (both ranks paused meanwhile) and rank 1 goes on from the primary:
# the losses are those of the same 2-rank run on the mmap store.
if ! command -v mpirun >/dev/null 2>&1 || ! ldd "$IMGSET" 2>/dev/null | grep -q libmpi; then
    ok "2 ranks, one on each server, the standby stopped mid-epoch # SKIP no MPI (mpirun, or an imgset built with mpicc)"
elif ! as_owner "$IMGSET_PG_BINDIR/pg_ctl" -D "$STANDBY/data" -l "$STANDBY/server.log" -w start >/dev/null 2>&1; then
    not_ok "the standby starts again"
else
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    mpi=(timeout 120 mpirun --oversubscribe -np 2)
    "${mpi[@]}" "$IMGSET" train "$A" "${train[@]}" --json "$WORK/mmap2.json" >/dev/null 2>&1
    "${mpi[@]}" "$IMGSET" train "$URI" "${train[@]}" --json "$WORK/mpi.json" \
        >"$WORK/mpi.out" 2>"$WORK/mpi.err" &
    launcher=$!
    served=$(served_by_standby "$launcher")
    mpirun_pid=$(pgrep -P "$launcher" -x mpirun)
    ranks=$(pgrep -P "${mpirun_pid:-0}" -x imgset | tr '\n' ' ')
    running=0
    [ "$(echo $ranks | wc -w)" -eq 2 ] && running=$(stop_standby_paused $ranks)
    wait "$launcher"
    status=$?
    if [ "$served" = 1 ] && [ "$running" = 1 ]; then ok "the standby stopped while both ranks trained"
    else not_ok "the standby stopped while both ranks trained (served $served, ranks: $ranks)"; fi
    same_losses "2 ranks on primary + standby give the 2-rank mmap run's losses: no batch lost" \
        "$status" "$WORK/mmap2.json" "$WORK/mpi.json" "$WORK/mpi.err"
    if grep -q "^imgset: rank 1: .*lost server $SSOCK:$SPORT .*; reading from $PGHOST:$PGPORT" "$WORK/mpi.err" &&
            ! grep -q "^imgset: rank 0: .*lost server" "$WORK/mpi.err"; then
        ok "rank 1 read from the standby and moved to the primary; rank 0 read from the primary"
    else
        not_ok "rank 1 read from the standby and moved to the primary; rank 0 read from the primary"
        sed 's/^/# /' "$WORK/mpi.err" | head -5
    fi
fi

# No server answers: the error names each.
NONE="postgresql:///imgset_cli?host=$WORK/nosock1,$SSOCK&port=5,$SPORT&user=$PGUSER&dataset=rep"
"$IMGSET" read "$NONE" --epochs 1 >"$WORK/none.out" 2>&1
status=$?
if [ "$status" -eq 1 ] && grep -q "cannot connect: server $WORK/nosock1:5 does not answer (.*); server $SSOCK:$SPORT does not answer" "$WORK/none.out"; then
    ok "when no server answers, the error names both"
else
    not_ok "when no server answers, the error names both (status $status)"; sed 's/^/# /' "$WORK/none.out" | head -5
fi
"$IMGSET" read "postgresql:///imgset_cli?host=$PGHOST,$PGHOST,$PGHOST&port=1,2&dataset=rep" \
    --epochs 1 >"$WORK/ports.out" 2>&1
status=$?
if [ "$status" -eq 1 ] && grep -q "3 servers but 2 port entries" "$WORK/ports.out"; then
    ok "3 hosts with 2 ports is refused, naming both counts"
else
    not_ok "3 hosts with 2 ports is refused, naming both counts (status $status)"
    sed 's/^/# /' "$WORK/ports.out" | head -5
fi
finish
