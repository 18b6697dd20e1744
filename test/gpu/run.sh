#!/usr/bin/env bash
# run.sh — the GPU check in one call for a machine with an NVIDIA GPU: install what is missing,
# build, run the GPU tests (loader and trainer), time `imgset read` for mmap (host), gpummap
# (zero-copy gather on the GPU) and mmap --device cuda (pinned memory + cudaMemcpyAsync), then
# train on the GPU through every store (`imgset bench --mode train --device cuda`) on the
# cifar10 and tinyimagenet shapes, and print two short tables. See README.md.
# Usage: test/gpu/run.sh   (JOBS=N for make -jN, default 16; SCALE=F for the bench's data
# sets, default 0.2; exit status 0 when all passed). On a machine without our Debian libraries
# (the device machine's image), first run test/gpu/bundle.sh where they are and carry
# build/gpu-bundle.tar.xz: the run tool's command is then
#   test/gpu/run.sh   with carry ["build/gpu-bundle.tar.xz"] and timeout_s about 480.
set -u
cd "$(dirname "$0")/../.."
start=$SECONDS
failures=0
fail() { echo "run.sh: FAILED: $*"; failures=$((failures + 1)); }
step() { printf '\n== %s (at %ds)\n' "$*" $((SECONDS - start)); }

step "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -4
echo "cores: $(nproc)   nvcc: $(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || echo none)"

# Where the CUDA runtime and cuBLAS are: the toolkit's lib64, else the pip wheels of the
# image's PyTorch (nvidia/cu13/lib), for binaries built elsewhere.
cuda_libs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -e "$d/libcublas.so.13" ] && [ -e "$d/libcudart.so.13" ] && { cuda_libs=$d; break; }
done
[ -n "$cuda_libs" ] || cuda_libs=$(timeout 30 find /usr /opt -name 'libcudart.so.13' \
    -printf '%h\n' 2>/dev/null | while read -r d; do
        [ -e "$d/libcublas.so.13" ] && { echo "$d"; break; }; done)
echo "CUDA runtime and cuBLAS: ${cuda_libs:-not found}"

# Build here when the machine has our libraries (and a network, for deps.sh); else use the
# bundle test/gpu/bundle.sh made on a Debian machine (carried as build/gpu-bundle.tar.xz).
IMGSET=build/imgset
TESTS=build/test
if [ "$(id -u)" -eq 0 ] && timeout 5 getent hosts deb.debian.org >/dev/null 2>&1; then
    step "dependencies (./deps.sh installs what is missing)"
    timeout 180 ./deps.sh || echo "run.sh: deps.sh failed: building with what is installed"
fi
step "build (make -j${JOBS:-16} build/imgset and the GPU tests)"
mkdir -p build
if [ -z "${USE_BUNDLE:-}" ] &&   # USE_BUNDLE=1: skip the build (to try the bundle anywhere)
        make -j"${JOBS:-16}" build/imgset build/test/test_gpu build/test/test_gpu_train \
        >build/gpu-build.log 2>&1; then
    grep '^imgset build:' build/gpu-build.log
elif [ -f build/gpu-bundle.tar.xz ]; then
    echo "run.sh: not building here ($(grep -m1 -E 'error|No such file' build/gpu-build.log \
         2>/dev/null || echo USE_BUNDLE)); using the carried bundle"
    rm -rf build/gpu-bundle && tar xJf build/gpu-bundle.tar.xz -C build || { fail "unpack"; exit 1; }
    echo "bundle of commit $(cat build/gpu-bundle/commit)"
    IMGSET=build/gpu-bundle/bin/imgset
    TESTS=build/gpu-bundle/bin
    export LD_LIBRARY_PATH="$PWD/build/gpu-bundle/lib${cuda_libs:+:$cuda_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    "$IMGSET" --help >/dev/null 2>&1 || { ldd "$IMGSET" | grep 'not found'; fail "bundle"; exit 1; }
else
    tail -25 build/gpu-build.log
    fail "build, and no build/gpu-bundle.tar.xz (run test/gpu/bundle.sh and carry it)"
    exit 1
fi

for t in test_gpu test_gpu_train; do
    step "GPU tests ($TESTS/$t)"
    timeout 180 "$TESTS/$t" 2>&1 | tee "build/$t.log"
    rc=${PIPESTATUS[0]}
    [ "$rc" -eq 0 ] || fail "$t exited with status $rc"
    grep -q '# SKIP' "build/$t.log" && fail "$t skipped its device tests"
done

step "data sets"
data=$(mktemp -d "$PWD/build/gpu-data.XXXXXX")
trap 'rm -rf "$data"' EXIT
declare -A counts=([cifar10]=50000 [tinyimagenet]=20000)
for shape in cifar10 tinyimagenet; do
    timeout 180 "$IMGSET" gen --like "$shape" --train "${counts[$shape]}" --test 1000 --seed 1 \
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
        if timeout 120 "$IMGSET" read "$scheme:$data/$shape" --batch 256 --workers 4 --float \
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
        d=$(timeout 120 "$IMGSET" read "$scheme:$data/$shape" --batch 256 --workers 2 \
                --epochs 1 --digest --device "$device" 2>&1 | sed -n 's/^batch digest //p')
        digests+=("${d:-none}")
        echo "$shape $label: ${d:-none}"
    done
    [ "${digests[0]}" != none ] && [ "${digests[0]}" = "${digests[1]}" ] &&
        [ "${digests[1]}" = "${digests[2]}" ] || fail "$shape: digests missing or different"
done

step "training on the GPU through every store: imgset bench --mode train --device cuda"
bench="$data/bench"
timeout 300 "$IMGSET" bench --stores mmap,gpummap,hdf5,pg,files --shapes cifar10,tinyimagenet \
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
