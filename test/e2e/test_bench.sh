#!/usr/bin/env bash
# test_bench.sh — a tiny imgset bench: every store x two shapes, results in four formats,
# the embedded PostgreSQL cluster gone afterwards, cached data reused, Ctrl-C cleans up.
set -u
. "$(dirname "$0")/tap.sh"
cd "$SCRATCH"

# The bench's embedded cluster goes under $TMPDIR: a folder of this test's own, so that other
# clusters on the machine (other test runs) cannot make its checks pass or fail.
export TMPDIR=$SCRATCH/tmp
mkdir -p "$TMPDIR" && chmod 755 "$SCRATCH" "$TMPDIR"
clusters() { ls -d "$TMPDIR"/imgset-pg.* 2>/dev/null | wc -l; }
# Stores that must have numbers here: hdf5 when this imgset has it.
measured=(files mmap pg)
hdf5_in measured hdf5
args=(--shapes cifar10,mixed --scale 0.002 --runs 2 --epochs 1 --out out)
ok "bench runs every store on two shapes" bash -c "'$IMGSET' bench ${args[*]} 2>bench.err"
ok "the runs go in rounds: run 1 of every store before any run 2, round 2 starting one later" \
    bash -c "grep -o '^\[cifar10\] run [0-9]/2: [a-z0-9]*' bench.err | sed 's/.*run //' | grep -v gpummap | tr '\n' ' ' |
             grep -qx '1/2: files 1/2: mmap 1/2: hdf5 1/2: pg 2/2: mmap 2/2: hdf5 2/2: pg 2/2: files '"
ok "results.md, .csv, .json are written" test -s out/results.md -a -s out/results.csv -a -s out/results.json
md=out/results.md
ok "the table has a row per store" bash -c "for s in files mmap gpummap hdf5 pg; do grep -q \"^| \$s |\" $md || exit 1; done"
ok "the machine line heads the report" grep -q '^machine: .*cores.*GiB memory' $md
# number_in STORE — the epoch-seconds row of STORE has a "median (min–max)" for cifar10.
number_in() {
    awk -v s="$1" '/Average epoch seconds/ {t = 1} t && index($0, "| " s " |") == 1 {print; exit}' $md |
        awk -F'|' '{ n++; if ($3 !~ /^ [0-9]+\.[0-9]+ \([0-9.]+–[0-9.]+\) $/) bad = 1 }
                   END { exit bad || n != 1 }'
}
for st in "${measured[@]}"; do
    ok "$st has an epoch time for cifar10, median (min–max)" number_in "$st"
done
if ! "$IMGSET" --help | grep -q '^  gpummap '; then
    ok "gpummap in a build without CUDA is n/a" grep -q '^| gpummap | n/a — built without CUDA' $md
elif nvidia-smi >/dev/null 2>&1; then
    ok "gpummap on this machine's GPU has an epoch time" number_in gpummap
else
    ok "gpummap without a device is n/a, never a number" grep -q '^| gpummap | n/a — no CUDA device' $md
fi
ok "the JSON is valid and has 10 cells with positive epoch seconds where measured" \
    "$PYTHON" -c "
import json, sys
d = json.load(open('out/results.json'))
cells = d['cells']
assert len(cells) == 10, len(cells)
for c in cells:
    if not c['note']:
        assert c['epoch_seconds']['median'] > 0 and c['read_images_per_s']['median'] > 0, c
assert any(c['store'] == 'pg' and not c['note'] for c in cells), 'pg was not measured'
"
ok "the CSV has a row per measured metric" bash -c "grep -c '^mmap,cifar10,' out/results.csv | grep -qx 8"
if command -v gnuplot >/dev/null; then
    ok "results.png is a PNG" bash -c "head -c 8 out/results.png | od -An -c | grep -q 'P   N   G'"
else
    skip "results.png is a PNG" "gnuplot is not installed"
fi
ok "the embedded cluster was made under \$TMPDIR and is gone" bash -c "
    grep -q 'embedded throwaway cluster' out/results.md && [ $(clusters) -eq 0 ]"

ok "--cold drops the cache before every run and says so" bash -c "
    '$IMGSET' bench --shapes cifar10 --stores mmap --scale 0.002 --runs 1 --epochs 1 --mode read --cold --out cold >/dev/null 2>&1 &&
    grep -q '^settings: .*cache cold: .*, before every run;' cold/results.md"
ok "a second bench reuses the cached stores" bash -c "
    '$IMGSET' bench --shapes cifar10 --stores files,hdf5 --scale 0.002 --runs 1 --epochs 1 --mode read --out out >/dev/null &&
    grep -q '^| files | cached |' out/results.md && grep -q '^| hdf5 | cached |' out/results.md"

# Ctrl-C once the bench has started its runs: it says so, exits 1, writes no report and
# leaves no cluster behind.
"$IMGSET" bench --shapes tinyimagenet --scale 0.02 --runs 3 --out int >/dev/null 2>int.err &
pid=$!
for i in $(seq 600); do grep -q '\] run 1/3' int.err && break; sleep 0.1; done
kill -INT $pid
wait $pid
rc=$?
ok "Ctrl-C during the runs stops the bench (status $rc), says so, removes its cluster" bash -c "
    grep -q 'run 1/3' int.err && [ $rc -eq 1 ] && grep -q 'interrupted' int.err &&
    sleep 1 && [ \$(ls -d '$TMPDIR'/imgset-pg.* 2>/dev/null | wc -l) -eq 0 ] && [ ! -e int/results.md ]"
usage_error "an unknown store is named" "nosuch" "$IMGSET" bench --stores mmap,nosuch
usage_error "an unknown shape is named" "tiny" "$IMGSET" bench --shapes tiny
# --data: a data set of ours (here: generated, then imported by path) as a column, named after
# the data set, a fraction of it with --scale; --model for every column.
"$IMGSET" gen --like cifar10 --train 300 --test 60 --seed 4 --out mmap:mine >/dev/null
ok "bench --data mmap:mine --scale 0.5 --model mlp" bash -c "
    '$IMGSET' bench --data mmap:mine --stores mmap,hdf5 --scale 0.5 --model mlp --runs 1 \
        --epochs 1 --out data-out >/dev/null 2>&1"
ok "only the data set's column, named after it; half of each split, mlp, the source named" bash -c "
    grep -q '^| store | cifar10 |\$' data-out/results.md &&
    grep -q '^data sets: cifar10 150 train / 30 test (mlp, from mmap:mine)\$' data-out/results.md"
ok "its JSON cells name the data set's URI and the model, with epoch times" "$PYTHON" -c "
import json
cells = json.load(open('data-out/results.json'))['cells']
assert len(cells) == 2 and all(c['data'] == 'mmap:mine' and c['model'] == 'mlp' and
                               c['train_images'] == 150 for c in cells), cells
assert all(c['epoch_seconds']['median'] > 0 for c in cells if not c['note'])
"
ok "--data beside --shapes: both columns, the data set renamed where it meets a shape" bash -c "
    '$IMGSET' bench --shapes cifar10 --data mmap:mine --stores mmap --scale 0.002 --runs 1 \
        --epochs 1 --mode read --out both-out >/dev/null 2>&1 &&
    grep -q '^| store | cifar10 | cifar10-data |\$' both-out/results.md"
usage_error "an unknown --model is named" "--model" "$IMGSET" bench --model resnet50
fails_with "a missing --data store is named" "absent" "$IMGSET" bench --data mmap:absent
ok "bench --help" bash -c "'$IMGSET' bench --help | grep -q usage"
tap_done
