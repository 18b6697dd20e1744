#!/usr/bin/env bash
# keep_memory.sh — what imgset.keep_batch_memory is worth: bench_batch's epochs of shuffled
# batches with the setting on and off, side by side in one cluster, in alternating rounds
# (drift falls on both alike). A benchmark: it prints numbers, it never fails on a time.
#   per mode and setting: the median of the rounds' medians (images/s) and their range.
# Usage: test/bench/keep_memory.sh   (env: TRAIN=50000, ROUNDS=5, RUNS=5, BATCH=256, SHAPE=cifar10)
set -euo pipefail
cd "$(dirname "$0")/../.."
IMGSET=${IMGSET:-$PWD/build/imgset}
TRAIN=${TRAIN:-50000}
ROUNDS=${ROUNDS:-5}
RUNS=${RUNS:-5}
BATCH=${BATCH:-256}
SHAPE=${SHAPE:-cifar10}
BINDIR=$(pg_config --bindir)
[ -x "$IMGSET" ] && [ -x build/bench/bench_batch ] || { echo "keep_memory.sh: run make first" >&2; exit 1; }
WORK=$(mktemp -d /tmp/imgset-keepmem.XXXXXX)
CLUSTER=
trap '[ -n "$CLUSTER" ] && test/pgcluster.sh stop "$CLUSTER"; rm -rf "$WORK"' EXIT
export IMGSET_PG_BINDIR=${IMGSET_PG_BINDIR:-$(test/pgtree.sh build/pg)}
CLUSTER=$(PGCLUSTER_SHARED_BUFFERS=1GB test/pgcluster.sh start)
eval "$(test/pgcluster.sh env "$CLUSTER")"
"$BINDIR/psql" -Xq -c "CREATE EXTENSION pg_imgset"
"$IMGSET" gen --like "$SHAPE" --train "$TRAIN" --test 100 --seed 1 --out "mmap:$WORK/set" >/dev/null
"$IMGSET" convert "mmap:$WORK/set" "postgresql:///postgres?host=$PGHOST&port=$PGPORT&dataset=load" >/dev/null
"$BINDIR/psql" -Xq -c "VACUUM ANALYZE imgset.load_train"

echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo), $(uname -r), $(ldd --version | head -1); PostgreSQL $("$BINDIR/postgres" --version | awk '{print $3}')"
echo "# $TRAIN $SHAPE images, batch $BATCH; $ROUNDS rounds of bench_batch (median of $RUNS epochs each), on and off alternating"
for r in $(seq 1 "$ROUNDS"); do
    order="on off"; [ $((r % 2)) -eq 0 ] && order="off on"
    for setting in $order; do
        echo "## $setting load $(cut -d' ' -f1 /proc/loadavg)" >>"$WORK/runs.log"
        PGOPTIONS="-c imgset.keep_batch_memory=$setting" build/bench/bench_batch \
            "host=$PGHOST port=$PGPORT dbname=postgres" load "$BATCH" 4 2000 "$RUNS" >>"$WORK/runs.log"
    done
done
echo "# load average at the rounds' starts: $(grep -o 'load [0-9.]*' "$WORK/runs.log" | awk '{print $2}' | tr '\n' ' ')"
# One line per mode: for each setting, the median of the rounds' images/s and their range.
/usr/bin/python3 - "$WORK/runs.log" <<'EOF'
import re, statistics, sys
runs = {}
for block in re.split(r"^## ", open(sys.argv[1]).read(), flags=re.M)[1:]:
    setting = block.split()[0]
    for m in re.finditer(r"^(.+?) +\d+ images +[\d.]+ s +(\d+) images/s", block, re.M):
        runs.setdefault(m.group(1), {}).setdefault(setting, []).append(int(m.group(2)))
print(f"{'images/s (median of rounds, range)':46} {'keep_batch_memory = on':>28} {'off':>28} {'on/off':>6}")
for mode, by in runs.items():
    cell = {s: (statistics.median(v), min(v), max(v)) for s, v in by.items()}
    text = {s: f"{c[0]:.0f} ({c[1]}..{c[2]})" for s, c in cell.items()}
    print(f"{mode[:46]:46} {text['on']:>28} {text['off']:>28} {cell['on'][0] / cell['off'][0]:6.2f}")
EOF
