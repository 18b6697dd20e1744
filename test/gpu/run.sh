#!/usr/bin/env bash
# run.sh — the GPU check in one call for a machine with an NVIDIA GPU: install what is missing,
# build, run the GPU tests (loader and trainer), time `imgset read` for mmap (host), gpummap
# (zero-copy gather on the GPU) and mmap --device cuda (pinned memory + cudaMemcpyAsync), then
# train on the GPU through every store (`imgset bench --mode train --device cuda`) on the
# cifar10 and tinyimagenet shapes, and print two short tables. See README.md.
# Usage: test/gpu/run.sh   (JOBS=N for make -jN, default 16; SCALE=F for the bench's data
# sets, default 0.2; exit status 0 when all passed)
set -u
cd "$(dirname "$0")/../.."
start=$SECONDS
failures=0
fail() { echo "run.sh: FAILED: $*"; failures=$((failures + 1)); }
step() { printf '\n== %s (at %ds)\n' "$*" $((SECONDS - start)); }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -4
echo "cores: $(nproc)   nvcc: $(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || echo none)"

step "dependencies (./deps.sh installs what is missing; needs root and a network)"
if [ "$(id -u)" -eq 0 ]; then
    timeout 180 ./deps.sh || echo "run.sh: deps.sh failed (no network?): building with what is installed"
else
    echo "run.sh: not root: deps.sh skipped"
fi

step "build (make -j${JOBS:-16} all)"
mkdir -p build
if ! make -j"${JOBS:-16}" all >build/gpu-build.log 2>&1; then
    tail -25 build/gpu-build.log
    fail "make all (trying the CLI and test_gpu alone)"
    make -j"${JOBS:-16}" build/imgset build/test/test_gpu build/test/test_gpu_train \
        >>build/gpu-build.log 2>&1 ||
        { tail -25 build/gpu-build.log; fail "build"; exit 1; }
fi
grep '^imgset build:' build/gpu-build.log

for t in test_gpu test_gpu_train; do
    step "GPU tests (build/test/$t)"
    timeout 180 "build/test/$t" 2>&1 | tee "build/$t.log"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || fail "$t exited with status $rc"
    grep -q '# SKIP' "build/$t.log" && fail "$t skipped its device tests"
done

step "data sets"
data=$(mktemp -d "$PWD/build/gpu-data.XXXXXX")
trap 'rm -rf "$data"' EXIT
declare -A counts=([cifar10]=50000 [tinyimagenet]=20000)
for shape in cifar10 tinyimagenet; do
    timeout 180 build/imgset gen --like "$shape" --train "${counts[$shape]}" --test 1000 --seed 1 \
        --out "mmap:$data/$shape" >"$data/gen.log" 2>&1 || fail "gen $shape"
    tail -1 "$data/gen.log"
done

# The three ways to the GPU, as `imgset read` options after the URI scheme.
paths=("mmap|host|mmap (host, CPU float)"
       "gpummap|cuda|gpummap (GPU gathers, zero-copy)"
       "mmap|cuda|mmap --device cuda (pinned + memcpy)")
json_number() { sed -n "s/.*\"$2\": \([0-9.]*\).*/\1/p" "$1"; }

step "imgset read: batch 256, 4 workers, --float, 1 warm-up + 3 timed epochs"
rows=()
for shape in cifar10 tinyimagenet; do
    for p in "${paths[@]}"; do
        IFS='|' read -r scheme device label <<<"$p"
        json="$data/$shape-$scheme-$device.json"
        echo "-- $shape: $label"
        if timeout 120 build/imgset read "$scheme:$data/$shape" --batch 256 --workers 4 --float \
                --epochs 3 --device "$device" --json "$json"; then
            gbs=$(json_number "$json" h2d_gb_per_s)
            [ "$device" = host ] && gbs=-
            rate=$(json_number "$json" median_images_per_s)
            rows+=("$(printf '%-13s %-40s %12.0f %10s' "$shape" "$label" "${rate:-0}" "$gbs")")
        else
            fail "read $scheme:$shape --device $device"
            rows+=("$(printf '%-13s %-40s %12s %10s' "$shape" "$label" FAILED -)")
        fi
    done
done

step "the same batches on every path (--digest: indices, labels, pixels of one epoch)"
for shape in cifar10 tinyimagenet; do
    digests=()
    for p in "${paths[@]}"; do
        IFS='|' read -r scheme device label <<<"$p"
        d=$(timeout 120 build/imgset read "$scheme:$data/$shape" --batch 256 --workers 2 \
                --epochs 1 --digest --device "$device" 2>&1 | sed -n 's/^batch digest //p')
        digests+=("${d:-none}")
        echo "$shape $label: ${d:-none}"
    done
    [ "${digests[0]}" != none ] && [ "${digests[0]}" = "${digests[1]}" ] &&
        [ "${digests[1]}" = "${digests[2]}" ] || fail "$shape: digests missing or different"
done

step "training on the GPU through every store: imgset bench --mode train --device cuda"
bench="$data/bench"
timeout 300 build/imgset bench --stores mmap,gpummap,hdf5,pg,files --shapes cifar10,tinyimagenet \
    --mode train --device cuda --scale "${SCALE:-0.2}" --epochs 2 --runs 3 --batch 256 \
    --workers 8 --out "$bench" >"$data/bench.log" 2>&1 || fail "imgset bench (see below)"
tail -n 40 "$data/bench.log"

step "summary"
echo "Loader only (imgset read, batch 256, 4 workers, float):"
printf '%-13s %-40s %12s %10s\n' shape path images/s "h2d GB/s"
printf '%s\n' "${rows[@]}"
echo "(h2d GB/s: pixel bytes moved to the GPU / time of the transfers, timed with CUDA events)"
echo
echo "Training cnn-small on the GPU (imgset bench, batch 256, 8 workers; median of 3 runs):"
if [ -f "$bench/results.csv" ]; then
    # store,shape,metric,median,min,max,unit,note -> one row per store x shape
    awk -F, 'NR > 1 { key = $1 " " $2; if (!(key in seen)) { seen[key] = 1; order[n++] = key }
                      v[key, $3] = ($4 != "" ? $4 : "n/a") }
             END { printf "%-9s %-13s %9s %10s %7s %9s\n", "store", "shape", "epoch s",
                          "images/s", "AU", "h2d GB/s"
                   for (i = 0; i < n; i++) { k = order[i]; split(k, p, " ")
                       printf "%-9s %-13s %9s %10s %7s %9s\n", p[1], p[2], v[k, "epoch_seconds"],
                              v[k, "train_images_per_s"], v[k, "au"], v[k, "train_h2d_gb_per_s"] } }' \
        "$bench/results.csv"
    grep -h '^| .*error' "$bench/results.md" | head -5
else
    echo "(no results.csv: the bench failed)"
fi
echo "run.sh: $failures failure(s), $((SECONDS - start)) s"
[ "$failures" -eq 0 ]
