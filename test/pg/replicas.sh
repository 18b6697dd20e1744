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
train=(--model cnn-small --batch 8 --epochs 2 --threads 1 --workers 1 --seed 3)
"$IMGSET" train "$A" "${train[@]}" --json "$WORK/mmap.json" >/dev/null 2>&1
"$IMGSET" train "postgresql:///imgset_cli?host=$SSOCK,$PGHOST&port=$SPORT,$PGPORT&user=$PGUSER&dataset=rep" \
    "${train[@]}" --json "$WORK/failover.json" >"$WORK/failover.out" 2>"$WORK/failover.err" &
trainer=$!
served=0
for _ in $(seq 400); do
    if [ "$(standby_q "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'imgset'
                        AND query LIKE '%imgset_batch_packed(\$1, \$2, \$3, \$4)%'")" -gt 0 ]; then
        served=1; break
    fi
    kill -0 "$trainer" 2>/dev/null || break
    sleep 0.02
done
kill -STOP "$trainer" 2>/dev/null
running=$(kill -0 "$trainer" 2>/dev/null && ! grep -q '^ *1 ' "$WORK/failover.out" && echo 1 || echo 0)
as_owner "$IMGSET_PG_BINDIR/pg_ctl" -D "$STANDBY/data" -m fast -w stop >/dev/null 2>&1
kill -CONT "$trainer" 2>/dev/null
wait "$trainer"
status=$?
if [ "$served" = 1 ] && [ "$running" = 1 ]; then ok "the standby stopped mid-run while the trainer read from it"
else not_ok "the standby stopped mid-run while the trainer read from it (served $served, running $running)"; fi
losses() { grep -o '"train_loss": [0-9.e+-]*' "$1"; }
if [ "$status" -eq 0 ] && [ -n "$(losses "$WORK/mmap.json")" ] &&
        [ "$(losses "$WORK/mmap.json")" = "$(losses "$WORK/failover.json")" ]; then
    ok "the trainer finished on the primary with the mmap run's losses: no batch lost"
else
    not_ok "the trainer finished on the primary with the mmap run's losses (status $status)"
    sed 's/^/# /' "$WORK/failover.err" | tail -5
fi
if [ "$(grep -c "lost server $SSOCK:$SPORT .*; reading from $PGHOST:$PGPORT" "$WORK/failover.err")" -ge 1 ]; then
    ok "a line on stderr says the reader moved from the standby to the primary"
else
    not_ok "a line on stderr says the reader moved from the standby to the primary"
    sed 's/^/# /' "$WORK/failover.err" | head -5
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
