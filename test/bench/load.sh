#!/usr/bin/env bash
# load.sh — the extension under load and at speed, on a throwaway cluster (a benchmark: it
# prints numbers and fails only when something breaks, never on a time).
#   1. a cifar10-shaped set (TRAIN images, default 50,000) generated and loaded through the CLI;
#   2. bench_batch: one epoch via COPY, the batch functions and one SELECT per image;
#   3. pgbench: CLIENTS clients × CALLS shuffled imgset_batch_packed calls each (built and
#      measured in the server: bench_batch has the transfers), with the private memory (RssAnon) of every pgbench backend
#      sampled once a second: its value after the first 10 s and at the end, and the largest
#      growth between them over all backends ("flat" is a few hundred kB); then the failed
#      calls and the server log's errors.
# Usage: test/bench/load.sh   (env: TRAIN, CLIENTS=16, CALLS=10000, BATCH=256, SHAPE=cifar10,
#        SKIP_BENCH=1 to go straight to pgbench)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
IMGSET=${IMGSET:-$ROOT/build/imgset}
SHAPE=${SHAPE:-cifar10}
TRAIN=${TRAIN:-50000}
CLIENTS=${CLIENTS:-16}
CALLS=${CALLS:-10000}
BATCH=${BATCH:-256}
BINDIR=$(pg_config --bindir)

[ -x "$IMGSET" ] || { echo "load.sh: build the CLI first ($IMGSET)" >&2; exit 1; }
WORK=$(mktemp -d /tmp/imgset-load.XXXXXX)
CLUSTER=
trap '[ -n "$CLUSTER" ] && test/pgcluster.sh stop "$CLUSTER"; rm -rf "$WORK"' EXIT
# The cluster runs this build's extension from a private installation (nothing installed).
export IMGSET_PG_BINDIR=${IMGSET_PG_BINDIR:-$(test/pgtree.sh build/pg)}
CLUSTER=$(PGCLUSTER_SHARED_BUFFERS=${SHARED_BUFFERS:-1GB} test/pgcluster.sh start)
eval "$(test/pgcluster.sh env "$CLUSTER")"
"$BINDIR/psql" -Xq -c "CREATE EXTENSION pg_imgset"

echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo), $(uname -r); PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}'), shared_buffers ${SHARED_BUFFERS:-1GB}"
echo "# load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
start=$SECONDS
"$IMGSET" gen --like "$SHAPE" --train "$TRAIN" --test 100 --seed 1 --out "mmap:$WORK/set" >/dev/null
"$IMGSET" convert "mmap:$WORK/set" "postgresql:///postgres?host=$PGHOST&port=$PGPORT&dataset=load" >/dev/null
"$BINDIR/psql" -Xq -c "VACUUM ANALYZE imgset.load_train"
echo "# generated and loaded $TRAIN $SHAPE images in $((SECONDS - start)) s"

[ -x build/bench/bench_batch ] || { echo "load.sh: run make first (build/bench/bench_batch)" >&2; exit 1; }
[ -n "${SKIP_BENCH:-}" ] || build/bench/bench_batch "host=$PGHOST port=$PGPORT dbname=postgres" load "$BATCH" 4 10000 5

# pgbench: random batches of random epochs, every client in its own backend.
batches=$("$BINDIR/psql" -XAtc "SELECT imgset.imgset_batch_count(count, $BATCH) FROM imgset.splits WHERE dataset = 'load' AND split = 'train'")
cat >"$WORK/batch.sql" <<EOF
\set b random(0, $((batches - 1)))
\set e random(0, 1000000)
SELECT length(imgset.imgset_batch_packed('imgset.load_train'::regclass, 42, :e, :b, $BATCH));
EOF
sample_memory() {   # pid RssAnon(kB) of every pgbench backend, once a second
    while :; do
        for pid in $("$BINDIR/psql" -XAtc "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench'" 2>/dev/null); do
            echo "$SECONDS $pid $(awk '/RssAnon/ {print $2}' /proc/$pid/status 2>/dev/null)"
        done
        sleep 1
    done
}
sample_memory >"$WORK/memory.log" &
sampler=$!
start=$SECONDS
"$BINDIR/pgbench" -n -c "$CLIENTS" -j 2 -t "$CALLS" -f "$WORK/batch.sql" postgres >"$WORK/pgbench.out" 2>&1 || true
grep -E "transactions|failed|latency|tps" "$WORK/pgbench.out" | sed 's/^/# pgbench: /'
grep -iE "error|abort" "$WORK/pgbench.out" | head -5 | sed 's/^/# pgbench: /' || true
kill "$sampler"
echo "# $CLIENTS clients x $CALLS calls of $BATCH images in $((SECONDS - start)) s"
# Per backend: RssAnon once the first 10 s have passed, at the end, and the largest value.
awk -v t0="$start" 'NF == 3 && $3 != "" && $1 >= t0 + 10 {
         if (!($2 in first)) first[$2] = $3; last[$2] = $3; if ($3 > max[$2]) max[$2] = $3 }
     END { for (p in first) { g = last[p] - first[p]; if (g > growth) growth = g
                              printf "# backend %s: RssAnon %d kB after 10 s, %d kB at the end, max %d kB\n", p, first[p], last[p], max[p] }
           printf "# RssAnon growth from 10 s to the end, largest over %d backends: %d kB\n", length(first), growth }' \
    "$WORK/memory.log" | sort
echo "# server log lines with ERROR, FATAL, PANIC or terminated: $(grep -cE 'ERROR|FATAL|PANIC|terminated' "$CLUSTER/server.log" || true)"
