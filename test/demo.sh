#!/usr/bin/env bash
# demo.sh — `make demo`: a small data set of every shape in every store available here, with
# the seconds each store took to write and to read back in full (verify). The benchmark issue
# replaces the read column with training epochs; until then this shows the stores working.
set -euo pipefail
cd "$(dirname "$0")/.."
IMGSET=$PWD/build/imgset
out=$(mktemp -d "${TMPDIR:-/tmp}/imgset-demo.XXXXXX")
trap 'rm -rf "$out"' EXIT

stores=(files mmap)
"$IMGSET" --help | grep -q '^  hdf5 ' && stores+=(hdf5)
declare -A counts=([cifar10]="--train 5000 --test 1000" [tinyimagenet]="--train 2000 --test 500"
                   [hires]="--train 100 --test 20" [mixed]="--train 500 --test 100")

printf '%-14s %-7s %10s %12s %12s\n' shape store images "write s" "read s"
for shape in cifar10 tinyimagenet hires mixed; do
    for st in "${stores[@]}"; do
        case $st in hdf5) uri="hdf5:$out/$shape.h5" ;; *) uri="$st:$out/$shape-$st" ;; esac
        t0=$(date +%s.%N)
        "$IMGSET" gen --like "$shape" ${counts[$shape]} --out "$uri" >/dev/null
        t1=$(date +%s.%N)
        n=$("$IMGSET" verify "$uri" | awk '{s += $3} END {print s}')
        t2=$(date +%s.%N)
        awk -v s="$shape" -v st="$st" -v n="$n" -v a="$t0" -v b="$t1" -v c="$t2" \
            'BEGIN {printf "%-14s %-7s %10d %12.2f %12.2f\n", s, st, n, b - a, c - b}'
    done
done
