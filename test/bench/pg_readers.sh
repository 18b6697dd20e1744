#!/usr/bin/env bash
# pg_readers.sh — how one PostgreSQL server feeds many readers: P reader processes (imgset
# read, each rank r of world P, so together they read each epoch once) against one throwaway
# server, for P = 1, 2, 4, 8, 16; per P the aggregate images/s (median and range over the
# runs), the server's CPU seconds per image and the readers' own. Prints a Markdown table and
# a machine line; never fails on a time. Not part of make check.
#
#   test/bench/pg_readers.sh [--like cifar10|tinyimagenet|hires] [--train N] [--batch B]
#                            [--epochs E] [--runs R] [--readers "1 2 4 8 16"] [--workers W]
#
# Each reader runs one warm-up epoch of its shard and E more (imgset read). images/s: every
# image read, by the wall time from the first reader's start to the last one's exit — so it
# includes each reader's start (process, BLAS set-up, connection, catalog queries: tens of
# milliseconds, CPU the readers share with the server here); enough epochs make that small.
# Server CPU: utime + stime of the postmaster and
# all its processes, those that ended included (their times go to the postmaster's cutime /
# cstime once reaped), from /proc, over the whole run, per image read; reader CPU likewise
# (the readers' own times, as the shell that waited for them sees them).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
IMGSET=${IMGSET:-$ROOT/build/imgset}
like=cifar10 train=20000 batch=256 epochs=10 runs=3 readers="1 2 4 8 16" workers=1
while [ $# -gt 0 ]; do
    case $1 in
    --like) like=$2; shift 2 ;;
    --train) train=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --readers) readers=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "pg_readers.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -x "$IMGSET" ] || { echo "pg_readers.sh: no $IMGSET (run make)" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgset-readers.XXXXXX")
CLUSTER=
cleanup() {
    [ -n "$CLUSTER" ] && test/pgcluster.sh stop "$CLUSTER" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The server runs this build's extension from a private installation.
IMGSET_PG_BINDIR=$(test/pgtree.sh build/pg)
export IMGSET_PG_BINDIR
CLUSTER=$(PGCLUSTER_SHARED_BUFFERS=${PGCLUSTER_SHARED_BUFFERS:-1GB} test/pgcluster.sh start)
eval "$(test/pgcluster.sh env "$CLUSTER")"
PSQL=(psql -X -q -At -v ON_ERROR_STOP=1)
"${PSQL[@]}" -c "CREATE EXTENSION pg_imgset"
URI="postgresql:///$PGDATABASE?host=$PGHOST&port=$PGPORT&user=$PGUSER&dataset=bench"
"$IMGSET" gen --like "$like" --train "$train" --test 16 --seed 1 --out "mmap:$WORK/d" >/dev/null
"$IMGSET" convert "mmap:$WORK/d" "$URI" >/dev/null
"${PSQL[@]}" -c "VACUUM ANALYZE"
postmaster=$(head -1 "$CLUSTER/data/postmaster.pid")
table_mb=$("${PSQL[@]}" -c "SELECT round(pg_total_relation_size('imgset.bench_train') / 1e6)")

# server_ticks — CPU clock ticks of the server so far: the postmaster and its live processes
# (utime + stime), and those that ended (the postmaster's cutime + cstime).
server_ticks() {
    local total pid
    total=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$postmaster/stat")
    for pid in $(pgrep -P "$postmaster"); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}
# backends — client connections open on the server.
backends() { "${PSQL[@]}" -c "SELECT count(*) - 1 FROM pg_stat_activity WHERE backend_type = 'client backend'"; }
hz=$(getconf CLK_TCK)

# one_run P — run P readers at once; prints "seconds images server_cpu_s client_cpu_s".
one_run() {
    local p=$1 r t0 t1 s0 s1 images client
    s0=$(server_ticks)
    t0=$(date +%s.%N)
    client=$(
        for ((r = 0; r < p; r++)); do
            "$IMGSET" read "$URI" --rank "$r" --world "$p" --batch "$batch" --epochs "$epochs" \
                --workers "$workers" --json "$WORK/r$r.json" >/dev/null &
        done
        wait
        times >"$WORK/times"   # not in a pipe: a forked builtin would see no children
        tail -1 "$WORK/times" | awk '{ split($1, u, /[ms]/); split($2, s, /[ms]/);
                                       print u[1] * 60 + u[2] + s[1] * 60 + s[2] }'
    )
    t1=$(date +%s.%N)
    while [ "$(backends)" -gt 0 ]; do sleep 0.05; done   # every backend has ended and been reaped
    s1=$(server_ticks)
    local images=0
    for ((r = 0; r < p; r++)); do   # a reader's timed epochs, and its warm-up epoch
        images=$((images + $(grep -oE '"images": [0-9]+' "$WORK/r$r.json" |
                             awk -v e="$epochs" '{ n += $2 } END { print n * (e + 1) / e }')))
    done
    awk -v t0="$t0" -v t1="$t1" -v n="$images" -v s="$((s1 - s0))" -v hz="$hz" -v c="$client" \
        'BEGIN { print t1 - t0, n, s / hz, c }'
}

# Rounds: run 1 of every P, then run 2, … so that a slow spell of the machine falls on all.
declare -A results
for ((run = 1; run <= runs; run++)); do
    for p in $readers; do
        results[$p]+="$(one_run "$p")"$'\n'
    done
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo "machine: $cpu, $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB, Linux $(uname -r);" \
     "PostgreSQL $("$IMGSET_PG_BINDIR/postgres" --version | awk '{print $3}'), shared_buffers" \
     "$("${PSQL[@]}" -c 'SHOW shared_buffers'), one server on this machine, Unix socket"
echo "data: --like $like, $train train images ($table_mb MB table with TOAST" \
     "and index, in shared_buffers: warm), batch $batch, $epochs epochs + 1 warm-up per reader," \
     "$workers worker(s) each, $runs runs (median, min-max)"
echo
echo "| readers | images/s (median, min-max) | per reader | server CPU us/image | server cores busy | reader CPU us/image |"
echo "|---|---|---|---|---|---|"
for p in $readers; do
    printf '%s' "${results[$p]}" | awk -v p="$p" '
        NF == 4 { n++; rate[n] = $2 / $1; server[n] = $3 / $2 * 1e6; busy[n] = $3 / $1;
                  client[n] = $4 / $2 * 1e6 }
        function median(a, n,   i, j, t, b) {
            for (i = 1; i <= n; i++) b[i] = a[i]
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (b[j] < b[i]) { t = b[i]; b[i] = b[j]; b[j] = t }
            return n % 2 ? b[(n + 1) / 2] : (b[n / 2] + b[n / 2 + 1]) / 2 }
        function lo(a, n,   i, m) { m = a[1]; for (i = 2; i <= n; i++) if (a[i] < m) m = a[i]; return m }
        function hi(a, n,   i, m) { m = a[1]; for (i = 2; i <= n; i++) if (a[i] > m) m = a[i]; return m }
        END { printf "| %d | %.0f (%.0f-%.0f) | %.0f | %.1f | %.2f | %.1f |\n", p,
              median(rate, n), lo(rate, n), hi(rate, n), median(rate, n) / p,
              median(server, n), median(busy, n), median(client, n) }'
done
