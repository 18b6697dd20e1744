#!/usr/bin/env bash
# bench_predict.sh — in-database inference throughput (a benchmark that prints numbers, never a
# test): images/s of SELECT imgset_predict('m', img) FROM <test split> and of the batched form
# over imgset_batch_packed, serial and with a parallel worker, next to the client path (the
# split read through the postgresql:// loader, predicted in the imgset process) and PyTorch's
# CPU inference of the same network when torch is installed. Also the first-call cost (OpenBLAS
# + model load) against the cached cost. Starts and stops its own throwaway cluster.
#
# usage: test/bench/bench_predict.sh [--test N] [--arch cnn-small] [--runs 3] [--batch 64]
set -euo pipefail
cd "$(dirname "$0")/../.."
IMGSET=${IMGSET:-build/imgset}
N=10000 ARCH=cnn-small RUNS=3 BATCH=64
while [ $# -gt 0 ]; do
    case $1 in
    --test) N=$2; shift 2 ;;
    --arch) ARCH=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    *) echo "usage: $0 [--test N] [--arch A] [--runs R] [--batch B]" >&2; exit 2 ;;
    esac
done
"$IMGSET" predict --help >/dev/null 2>&1 || { echo "bench_predict: $IMGSET has no predict command" >&2; exit 1; }

WORK=$(mktemp -d /tmp/imgset-bench-predict.XXXXXX)
chmod 755 "$WORK"
CLUSTER=
cleanup() { [ -n "$CLUSTER" ] && test/pgcluster.sh stop "$CLUSTER" >/dev/null 2>&1; rm -rf "$WORK"; }
trap cleanup EXIT
# The cluster runs this build's extension from a private installation (nothing installed).
export IMGSET_PG_BINDIR=${IMGSET_PG_BINDIR:-$(test/pgtree.sh build/pg)}
CLUSTER=$(test/pgcluster.sh start)
eval "$(test/pgcluster.sh env "$CLUSTER")"
CONN="dbname=bench host=$PGHOST port=$PGPORT user=$PGUSER"
URI="postgresql:///bench?host=$PGHOST&port=$PGPORT&user=$PGUSER&dataset=bench"
psql -X -q -c "CREATE DATABASE bench" >/dev/null
psql -X -q -d bench -c "CREATE EXTENSION pg_imgset" >/dev/null

echo "preparing: cifar10-shaped set with $N test images, $ARCH trained for one epoch ..." >&2
"$IMGSET" gen --like cifar10 --train 2000 --test "$N" --seed 1 --out "mmap:$WORK/data" >/dev/null
"$IMGSET" train "mmap:$WORK/data" --model "$ARCH" --epochs 1 --save "$WORK/m.safetensors" >/dev/null
"$IMGSET" convert "mmap:$WORK/data" "$URI" >/dev/null
"$IMGSET" model push "$WORK/m.safetensors" --db "$CONN" --name m >/dev/null
psql -X -q -d bench -c "VACUUM ANALYZE imgset.bench_test" \
    -c "CREATE TABLE bench_batches WITH (fillfactor = 10) AS
        SELECT id / $BATCH AS b, array_agg(id ORDER BY id) AS ids FROM imgset.bench_test GROUP BY 1" \
    -c "VACUUM ANALYZE bench_batches"

# median_ms SETTINGS QUERY — run QUERY once to warm up, then RUNS times, in one session; the
# median of the timed runs in ms.
median_ms() {
    { echo "$1"; echo '\timing on'; for _ in $(seq 0 "$RUNS"); do echo "$2;"; done; } |
        psql -X -q -d bench 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | tail -n "$RUNS" |
        sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
SERIAL="SET max_parallel_workers_per_gather = 0;"
# Two processes on two cores: the leader and one worker, whatever the cost model thinks.
PARALLEL="SET max_parallel_workers_per_gather = 1; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0;
          SET min_parallel_table_scan_size = 0; SET parallel_leader_participation = on;"
report() {   # LABEL MS
    awk -v label="$1" -v ms="$2" -v n="$N" 'BEGIN { printf "  %-62s %8.0f images/s  (%.0f ms)\n", label, n / (ms / 1000), ms }'
}

cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
blas=$(psql -X -At -d bench -c "SELECT imgset.imgset_predict('m', img) FROM imgset.bench_test WHERE id = 0" \
            -c "SELECT blas FROM imgset.imgset_model_cache()" | tail -1)
echo "machine: $cpu, $(nproc) cores; $(psql -X -At -d bench -c 'SHOW server_version'); OpenBLAS kernel $blas; load average $(cut -d' ' -f1 /proc/loadavg)"
echo "model $ARCH on 32x32x3, $N test images, warm cache, median of $RUNS runs"
echo
echo "first call against cached call (a new session; OpenBLAS is loaded and the model parsed once per backend):"
psql -X -q -d bench >"$WORK/first.out" 2>&1 <<EOF
\\timing on
SELECT imgset.imgset_predict('m', img) FROM imgset.bench_test WHERE id = 0;
SELECT imgset.imgset_predict('m', img) FROM imgset.bench_test WHERE id = 1;
SELECT imgset.imgset_predict('m', img) FROM imgset.bench_test WHERE id = 2;
\\timing off
SELECT 'load ' || round(load_ms::numeric, 2) || ' ms, ' || pg_size_pretty(bytes) FROM imgset.imgset_model_cache();
EOF
times=($(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' "$WORK/first.out"))
echo "  first call ${times[0]} ms (model $(grep -o 'load .*' "$WORK/first.out")); cached calls ${times[1]} ms, ${times[2]} ms"
echo
echo "in the database (no image leaves the server):"
report "SELECT imgset_predict('m', img) FROM split, serial" \
    "$(median_ms "$SERIAL" "SELECT sum(imgset.imgset_predict('m', img)) FROM imgset.bench_test")"
report "SELECT imgset_predict('m', img) FROM split, 2 processes" \
    "$(median_ms "$PARALLEL" "SELECT sum(imgset.imgset_predict('m', img)) FROM imgset.bench_test")"
for g in 1 "$BATCH"; do
    q="SELECT sum(cardinality(imgset.imgset_predict_batch('m', imgset.imgset_batch_packed('imgset.bench_test', ids), $g))) FROM bench_batches"
    report "imgset_predict_batch(batches of $BATCH, group $g), serial" "$(median_ms "$SERIAL" "$q")"
    report "imgset_predict_batch(batches of $BATCH, group $g), 2 processes" "$(median_ms "$PARALLEL" "$q")"
done
echo
echo "client path (the split read through the postgresql:// loader, predicted in imgset):"
for args in "--batch 1 --threads 1" "--batch $BATCH --threads 1" "--batch $BATCH --threads 2"; do
    "$IMGSET" predict "$WORK/m.safetensors" "$URI" $args >/dev/null   # warm up
    rates=$(for _ in $(seq 1 "$RUNS"); do
                "$IMGSET" predict "$WORK/m.safetensors" "$URI" $args | sed -n 's/.* \([0-9]*\) images\/s.*/\1/p'
            done | sort -n)
    printf "  %-62s %8s images/s  (median; runs: %s)\n" "imgset predict $args" \
        "$(echo "$rates" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')" "$(echo $rates)"
done
echo
PYTHON=${PYTHON:-/usr/bin/python3}   # Debian's python, which has python3-torch
# PyTorch at its best: Debian's OpenBLAS 0.3.21 falls back to its Prescott kernels on CPUs newer
# than it knows; give it the kernels this CPU runs, as imgset does for itself.
coretype=${OPENBLAS_CORETYPE:-}
if [ -z "$coretype" ]; then
    if grep -qw avx512f /proc/cpuinfo; then coretype=SkylakeX
    elif grep -qw avx2 /proc/cpuinfo; then coretype=Haswell; fi
fi
if "$PYTHON" -c "import torch" 2>/dev/null; then
    echo "PyTorch on this machine (OPENBLAS_CORETYPE=${coretype:-unset}):"
    OPENBLAS_CORETYPE=$coretype "$PYTHON" test/bench/torch_speed.py --arch "$ARCH" --threads 2 \
        --batch "$BATCH" | sed 's/^/  /'
else
    echo "PyTorch: python3-torch is not installed here (deps.sh installs it), so no side-by-side figure."
fi
