#!/usr/bin/env bash
# faults.sh — TAP: the extension and the postgresql:// store when something breaks, on a
# throwaway cluster of its own (it gets killed, filled, abandoned and shut down):
#   1. the server killed (immediate shutdown) during `imgset train` from a postgresql:// store:
#      the trainer stops with one line naming the lost connection, its last checkpoint is
#      intact, and --resume after a restart ends with the uninterrupted run's weights;
#   2. a disk that fills during `imgset convert … postgresql://` (a tablespace on a small
#      tmpfs when this runs as root; otherwise a server whose files may not pass 40 MB):
#      nothing is left visible, the server stays up, and the space comes back;
#   3. a client that goes away in the middle of a large imgset_batch_packed — killed while the
#      server computes, or gone while it sends: the backend ends cleanly, soon;
#   4. pg_cancel_backend from another client, and a fast shutdown, during the forward pass of
#      one 1,024-image group: each stops it within a tenth of the group's uncancelled time.
# Env: IMGSET (the CLI), IMGSET_PG_BINDIR (the server's programs, test/pgtree.sh), BINDIR
# (psql), WORK (scratch).
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
. test/pg/tap.sh
ms() { echo $(( $(date +%s%N) / 1000000 )); }
as_owner() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
psql_q() { "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
value() { "$BINDIR/psql" -X -Atc "$1" "${@:2}"; }

CLUSTER=
FILL=
cleanup() {
    [ -n "$FILL" ] && { umount "$FILL" 2>/dev/null; rmdir "$FILL" 2>/dev/null; }
    [ -n "${FILLCLUSTER:-}" ] && "$ROOT/test/pgcluster.sh" stop "$FILLCLUSTER" >/dev/null 2>&1
    [ -n "$CLUSTER" ] && "$ROOT/test/pgcluster.sh" stop "$CLUSTER" >/dev/null 2>&1
}
trap cleanup EXIT
CLUSTER=$(test/pgcluster.sh start) || { not_ok "a cluster for the faults starts"; echo "1..$n"; exit 1; }
eval "$(test/pgcluster.sh env "$CLUSTER")"
PG_CTL() { as_owner "$IMGSET_PG_BINDIR/pg_ctl" -D "$CLUSTER/data" "$@"; }
psql_q -c "CREATE EXTENSION pg_imgset"
# started_at — when the postmaster started: a crash and restart would change it.
started_at() { value "SELECT pg_postmaster_start_time()"; }
cd "$WORK"

# 1. The server killed during training.
"$IMGSET" gen --like cifar10 --train 3000 --test 300 --seed 5 --out mmap:c >/dev/null
URI="postgresql:///postgres?host=$PGHOST&port=$PGPORT&dataset=c"
t "a data set in the server" "$IMGSET" convert mmap:c "$URI"
common=(--epochs 3 --batch 64 --threads 2 --workers 1 --seed 3)
t "an uninterrupted training run from postgresql://" "$IMGSET" train "$URI" "${common[@]}" --save full.ckpt
("$IMGSET" train "$URI" "${common[@]}" --save part.ckpt >part.out 2>part.err; echo $? >part.status) &
for _ in $(seq 1 1200); do [ -f part.ckpt ] && break; sleep 0.05; done
sleep 0.3   # into the next epoch
cp part.ckpt kept.ckpt 2>/dev/null
PG_CTL -m immediate stop >/dev/null 2>&1
wait
if [ -f kept.ckpt ] && [ "$(cat part.status)" != 0 ] && [ "$(wc -l <part.err)" -eq 1 ] &&
        grep -q "server closed the connection unexpectedly (the server said: terminating connection due to immediate shutdown command)" part.err; then
    ok "the server killed after the first epoch's checkpoint: the trainer stops with one line naming the lost connection"
else
    not_ok "the server killed after the first epoch's checkpoint: the trainer stops with one line naming the lost connection"
    echo "# status $(cat part.status 2>/dev/null); stderr:"; sed 's/^/#   /' part.err
fi
echo "# $(cat part.err)"
t "the server restarts" PG_CTL -l "$CLUSTER/server.log" -w start
t "the last checkpoint is intact (the client's and the server's parsers take it)" \
    "$IMGSET" model push part.ckpt --db "host=$PGHOST port=$PGPORT dbname=postgres" --name kept
t "--resume from it" "$IMGSET" train "$URI" "${common[@]}" --save part.ckpt --resume part.ckpt
t "ends with the uninterrupted run's weights, byte for byte" cmp full.ckpt part.ckpt
before=$(started_at)

# 2. A disk that fills during a convert.
"$IMGSET" gen --like cifar10 --train 12000 --test 100 --seed 6 --out mmap:fill >/dev/null
FILL=$(mktemp -d /tmp/imgset-fill.XXXXXX)
chmod 755 "$FILL"
if [ "$(id -u)" -eq 0 ] && mount -t tmpfs -o size=24m tmpfs "$FILL" 2>/dev/null; then
    chown postgres: "$FILL"
    how="a 24 MB tmpfs tablespace"
    psql_q -c "CREATE TABLESPACE imgset_small LOCATION '$FILL'" \
           -c "CREATE DATABASE imgset_fill TABLESPACE imgset_small" &&
        psql_q -d imgset_fill -c "CREATE EXTENSION pg_imgset"
    FILLDB=imgset_fill
else
    # Not root: the same server under a file size limit (RLIMIT_FSIZE) on a second cluster.
    how="a server whose files may not pass 40 MB"
    rmdir "$FILL"; FILL=
    FILLCLUSTER=$(ulimit -f 40960; "$ROOT/test/pgcluster.sh" start)
    FILLDB=postgres
    psql_q -h "$FILLCLUSTER/sock" -p "$(cat "$FILLCLUSTER/port")" -d postgres -c "CREATE EXTENSION pg_imgset"
fi
FILLURI="postgresql:///$FILLDB?host=$PGHOST&port=$PGPORT&dataset=fill"
[ -n "${FILLCLUSTER:-}" ] && FILLURI="postgresql:///postgres?host=$FILLCLUSTER/sock&port=$(cat "$FILLCLUSTER/port")&dataset=fill"
fillq() {
    if [ -n "${FILLCLUSTER:-}" ]; then "$BINDIR/psql" -X -Atc "$1" -h "$FILLCLUSTER/sock" -p "$(cat "$FILLCLUSTER/port")" -d postgres
    else value "$1" -d "$FILLDB"; fi
}
fill_started=$(fillq "SELECT pg_postmaster_start_time()")
"$IMGSET" convert mmap:fill "$FILLURI" >convert.out 2>convert.err
status=$?
if [ "$status" -ne 0 ] && [ "$(wc -l <convert.err)" -eq 1 ] &&
        grep -qE "No space left on device|File too large" convert.err; then
    ok "a 37 MB convert into $how fails with one line saying why"
else
    not_ok "a 37 MB convert into $how fails with one line saying why"; echo "# status $status"; sed 's/^/#   /' convert.err
fi
echo "# $(cat convert.err)"
[ "$(fillq "SELECT count(*) FROM imgset.datasets WHERE name = 'fill'")|$(fillq "SELECT to_regclass('imgset.fill_train') IS NULL")" = "0|t" ] &&
    ok "nothing of it is visible: no catalogue row, no table" ||
    not_ok "nothing of it is visible: no catalogue row, no table"
[ "$(fillq "SELECT pg_postmaster_start_time()")" = "$fill_started" ] &&
    ok "the server stayed up (not restarted)" || not_ok "the server stayed up (not restarted)"
"$IMGSET" gen --like cifar10 --train 300 --test 30 --seed 7 --out mmap:small >/dev/null
t "the space came back: a small convert there works" "$IMGSET" convert mmap:small "$FILLURI"
if [ -n "${FILLCLUSTER:-}" ]; then
    "$ROOT/test/pgcluster.sh" stop "$FILLCLUSTER" >/dev/null 2>&1
    FILLCLUSTER=
else
    psql_q -c "DROP DATABASE imgset_fill" -c "DROP TABLESPACE imgset_small"
fi

# 3. A client that goes away in the middle of a large batch: 300 images resized to 512x512
# (236 MB packed).
BIG="SELECT imgset.imgset_batch_packed('imgset.c_train', 1, 0, 0, 300, 0, 1, 512, 512)"
# backend_of APPNAME — the pid of the backend serving that application, once it is active.
backend_of() {
    local pid
    for _ in $(seq 1 400); do
        pid=$(value "SELECT pid FROM pg_stat_activity WHERE application_name = '$1' AND state = 'active'")
        [ -n "$pid" ] && { echo "$pid"; return; }
        sleep 0.05
    done
}
# gone_within PID SECONDS — true once the backend has exited, within that time.
gone_within() {
    local t0; t0=$(ms)
    while [ $(( $(ms) - t0 )) -lt $(( $2 * 1000 )) ]; do
        [ -z "$(value "SELECT 1 FROM pg_stat_activity WHERE pid = $1")" ] && return 0
        sleep 0.05
    done
    return 1
}
PGAPPNAME=fault_killed PGOPTIONS="-c client_connection_check_interval=100ms" \
    "$BINDIR/psql" -X -Atc "COPY ($BIG) TO STDOUT (FORMAT binary)" >/dev/null 2>&1 &
client=$!
pid=$(backend_of fault_killed)
kill -KILL $client; wait $client 2>/dev/null
killed_at=$(ms)
if [ -n "$pid" ] && gone_within "$pid" 10; then
    ok "a client killed while the server computes a 236 MB batch: its backend ends within $(( $(ms) - killed_at )) ms (client_connection_check_interval = 100ms)"
else
    not_ok "a client killed while the server computes a 236 MB batch: its backend ends"
fi
PGAPPNAME=fault_pipe "$BINDIR/psql" -X -Atc "COPY ($BIG) TO STDOUT (FORMAT binary)" 2>/dev/null | head -c 1000000 >/dev/null &
pid=$(backend_of fault_pipe)
wait
if [ -n "$pid" ] && gone_within "$pid" 60; then
    ok "a client gone after the first MB of that batch: its backend ends"
else
    not_ok "a client gone after the first MB of that batch: its backend ends"
fi
grep -qE "could not send data to client|connection to client lost" "$CLUSTER/server.log" &&
    ok "the server log says the client went away" || not_ok "the server log says the client went away"
[ "$(started_at)" = "$before" ] && ! grep -qE "terminated by signal|PANIC" "$CLUSTER/server.log" &&
    ok "no backend crashed, the server was not restarted" ||
    { not_ok "no backend crashed, the server was not restarted"; grep -E "terminated by signal|PANIC" "$CLUSTER/server.log" | head -3 | sed 's/^/# /'; }

# 4. Cancel and shutdown during one 1,024-image group of cnn-small at 96x96.
psql_q >/dev/null <<EOF
\i $ROOT/test/pg/checkpoint.psql
SELECT imgset.add_model('cnn96', pg_temp.cnn_small_checkpoint(96));
CREATE TABLE group1024 AS
SELECT '\x494d474201010000000004000000000100000001000000030000000000000c00'::bytea
       || decode(repeat('7f', 1024 * 3), 'hex') || decode(repeat('00', 1024 * 12), 'hex') AS packed;
EOF
GROUP="SELECT length(imgset.imgset_predict_batch('cnn96', (SELECT packed FROM group1024), 1024)::text)"
t0=$(ms); value "$GROUP" >/dev/null; full=$(( $(ms) - t0 ))
bound=$(( full / 10 > 1000 ? full / 10 : 1000 ))
# In the middle of the group: a third of its time after it became active.
PGAPPNAME=fault_cancel "$BINDIR/psql" -X -Atc "$GROUP" >cancel.out 2>cancel.err &
client=$!
pid=$(backend_of fault_cancel)
sleep "$(awk -v f="$full" 'BEGIN { printf "%.2f", f / 3000 }')"
t0=$(ms)
value "SELECT pg_cancel_backend($pid)" >/dev/null
wait $client
took=$(( $(ms) - t0 ))
if grep -q "canceling statement due to user request" cancel.err && [ "$took" -lt "$bound" ]; then
    ok "pg_cancel_backend from another client stops the group (${full} ms in all) in $took ms"
else
    not_ok "pg_cancel_backend from another client stops the group (${full} ms in all) within $bound ms: $took ms"
    sed 's/^/#   /' cancel.err
fi
PGAPPNAME=fault_shutdown "$BINDIR/psql" -X -Atc "$GROUP" >shutdown.out 2>shutdown.err &
client=$!
pid=$(backend_of fault_shutdown)
sleep "$(awk -v f="$full" 'BEGIN { printf "%.2f", f / 3000 }')"
t0=$(ms)
PG_CTL -m fast -w stop >/dev/null 2>&1
took=$(( $(ms) - t0 ))
wait $client
if grep -q "terminating connection due to administrator command" shutdown.err && [ "$took" -lt "$bound" ]; then
    ok "a fast shutdown during the group completes in $took ms"
else
    not_ok "a fast shutdown during the group completes within $bound ms: $took ms"
    sed 's/^/#   /' shutdown.err
fi
echo "1..$n"
[ "$failed" -eq 0 ]
