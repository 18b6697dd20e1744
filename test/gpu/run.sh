#!/usr/bin/env bash
# run.sh — the GPU check in one call for a machine with an NVIDIA GPU: the GPU tests (loader
# and trainer), `imgset read` for mmap (host), gpummap (zero-copy gather on the GPU) and mmap
# --device cuda (pinned memory + cudaMemcpyAsync), then training on the GPU through every store
# (`imgset bench --mode train --device cuda`) on the cifar10 and tinyimagenet shapes; two
# short tables and the list of failures at the end. See README.md.
#
# On the device machine (CUDA, no Debian libraries, no network): run test/gpu/bundle.sh here
# first, then the device tool's `run` with command `test/gpu/run.sh`, carry
# ["build/gpu-bundle.tar.gz"], timeout_s about 480. The bundle is used when it is there
# (BUILD_HERE=1 builds instead); without it the script builds with make.
# Everything also goes to $OUT (the device tool brings back up to 8 files from it;
# build/gpu-out elsewhere): run.log, test_gpu.log, test_gpu_train.log, read.log (every read's
# output and JSON), bench.log, results.md, results.csv and python.log (the Python package's
# CUDA path, test/gpu/python_cuda.py) — 8 files.
# Environment: BUDGET=seconds for the whole run (default 420), SCALE=F for the bench's data
# sets (default 0.2), JOBS=N for make. Exit status 0 when everything passed.
set -u
cd "$(dirname "$0")/../.."
start=$SECONDS
OUT=${OUT:-build/gpu-out}
mkdir -p "$OUT" build
exec > >(tee "$OUT/run.log") 2>&1
failed=()
fail() { echo "run.sh: FAILED: $*"; failed+=("$*"); }
step() { printf '\n== %s (at %ds)\n' "$*" $((SECONDS - start)); }
budget=${BUDGET:-420}
left() { echo $((budget - (SECONDS - start))); }
# tmo SECONDS COMMAND...: at most SECONDS, and never past the budget (at least 10 s).
tmo() {
    local want=$1 l
    shift
    l=$(left)
    [ "$l" -lt 10 ] && l=10
    timeout -k 5 $((want < l ? want : l)) "$@"
}

step "machine"
tmo 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -4
echo "cores: $(nproc)   nvcc: $(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || echo none)"

# Where libcudart.so.13 and libcublas.so.13 are (for binaries built elsewhere): the toolkit's
# lib64, the loader's cache, or the pip wheels of the image's PyTorch.
lib_dir() {   # NAME: the first folder holding it; the slow search only when needed
    local n=$1 d sites
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [ -e "$d/$n" ] && { echo "$d"; return; }
    done
    d=$(ldconfig -p 2>/dev/null | awk -v n="$n" '$1 == n {sub("/[^/]*$", "", $NF); print $NF; exit}')
    [ -n "$d" ] && { echo "$d"; return; }
    sites=$(tmo 20 python3 -c 'import site; print(*site.getsitepackages())' 2>/dev/null)
    tmo 30 find $sites /usr /opt -name "$n" -printf '%h\n' -quit 2>/dev/null
}
cuda_libs=""
for n in libcudart.so.13 libcublas.so.13 libcublasLt.so.13; do
    d=$(lib_dir "$n")
    echo "$n: ${d:-not found}"
    [ -n "$d" ] && case ":$cuda_libs:" in *":$d:"*) ;; *) cuda_libs=${cuda_libs:+$cuda_libs:}$d ;; esac
done

# The programs: from the carried bundle, or built here.
IMGSET=build/imgset
TESTS=build/test
BUNDLE_LIBS=""
if [ -f build/gpu-bundle.tar.gz ] && [ -z "${BUILD_HERE:-}" ]; then
    step "the carried bundle (build/gpu-bundle.tar.gz)"
    rm -rf build/gpu-bundle
    tar xzf build/gpu-bundle.tar.gz -C build 2>/dev/null ||
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall("build")' \
            build/gpu-bundle.tar.gz || { fail "unpacking the bundle"; }
    echo "bundle of commit $(cat build/gpu-bundle/commit 2>/dev/null)"
    IMGSET=build/gpu-bundle/bin/imgset
    TESTS=build/gpu-bundle/bin
    BUNDLE_LIBS="$PWD/build/gpu-bundle/lib${cuda_libs:+:$cuda_libs}"
else
    if [ "$(id -u)" -eq 0 ] && grep -q '^ID=debian' /etc/os-release 2>/dev/null &&
            timeout 5 bash -c '</dev/tcp/deb.debian.org/80' 2>/dev/null; then
        step "dependencies (./deps.sh installs what is missing)"
        tmo 180 ./deps.sh || echo "run.sh: deps.sh failed: building with what is installed"
    fi
    step "build (make -j${JOBS:-16})"
    if tmo 300 make -j"${JOBS:-16}" report build/imgset build/test/test_gpu \
            build/test/test_gpu_train >build/gpu-build.log 2>&1; then
        grep '^imgset build:' build/gpu-build.log
    else
        tail -25 build/gpu-build.log
        fail "build (without our libraries, run test/gpu/bundle.sh elsewhere and carry it)"
    fi
fi
# Our programs run with the bundle's libraries first; the system's tools never see them.
LIBS="$BUNDLE_LIBS${LD_LIBRARY_PATH:+${BUNDLE_LIBS:+:}$LD_LIBRARY_PATH}"
# "${ours[@]}" PROGRAM ARGS...: one of our programs, with those libraries (a command prefix,
# not a function, so that timeout can run it)
ours=(env "LD_LIBRARY_PATH=$LIBS")
if ! "${ours[@]}" "$IMGSET" --help >/dev/null 2>&1; then
    "${ours[@]}" ldd "$IMGSET" 2>&1 | grep -E 'not found|No such' | sort -u
    fail "$IMGSET does not start"
    printf 'run.sh: FAILED: %s\n' "${failed[@]}"
    exit 1
fi

for t in test_gpu test_gpu_train; do
    step "GPU tests ($TESTS/$t)"
    tmo 180 "${ours[@]}" "$TESTS/$t" >"$OUT/$t.log" 2>&1
    rc=$?
    grep -E '^#|^not ok|^1\.\.' "$OUT/$t.log"
    echo "$(grep -c '^ok' "$OUT/$t.log") ok, $(grep -c '^not ok' "$OUT/$t.log") not ok (all in $t.log)"
    [ "$rc" -eq 0 ] || fail "$t exited with status $rc"
    grep -q '# SKIP' "$OUT/$t.log" && fail "$t skipped its device tests"
done

step "data sets"
data=$(mktemp -d "$PWD/build/gpu-data.XXXXXX")
trap 'rm -rf "$data"' EXIT
declare -A counts=([cifar10]=50000 [tinyimagenet]=20000)
for shape in cifar10 tinyimagenet; do
    tmo 180 "${ours[@]}" "$IMGSET" gen --like "$shape" \
        --train "${counts[$shape]}" --test 1000 --seed 1 --out "mmap:$data/$shape" \
        >"$data/gen.log" 2>&1 || fail "gen $shape"
    tail -1 "$data/gen.log"
done

# The three ways to the GPU, as `imgset read` options after the URI scheme.
paths=("mmap|cpu|mmap (host, CPU float)"
       "gpummap|cuda|gpummap (GPU gathers, zero-copy)"
       "mmap|cuda|mmap --device cuda (pinned + memcpy)")
json_number() { sed -n "s/.*\"$2\": \([0-9.]*\).*/\1/p" "$1"; }

step "imgset read: batch 256, 4 workers, --float, 1 warm-up + 3 timed epochs (logs in \$OUT)"
rows=()
for shape in cifar10 tinyimagenet; do
    for p in "${paths[@]}"; do
        IFS='|' read -r scheme device label <<<"$p"
        json="$data/read-$shape-$scheme-$device.json"
        log="$data/read-$shape-$scheme-$device.log"
        tmo 120 "${ours[@]}" "$IMGSET" read "$scheme:$data/$shape" \
            --batch 256 --workers 4 --float --epochs 3 --device "$device" --json "$json" \
            >"$log" 2>&1
        rc=$?
        { echo "== $shape: $label (status $rc)"; cat "$log"; cat "$json" 2>/dev/null; } >>"$OUT/read.log"
        if [ "$rc" -eq 0 ]; then
            gbs=$(json_number "$json" h2d_gb_per_s)
            [ "$device" = cpu ] && gbs=-
            rate=$(json_number "$json" median_images_per_s)
            rows+=("$(printf '%-13s %-40s %12.0f %10s' "$shape" "$label" "${rate:-0}" "$gbs")")
        else
            tail -3 "$log"
            fail "read $scheme:$shape --device $device"
            rows+=("$(printf '%-13s %-40s %12s %10s' "$shape" "$label" FAILED -)")
        fi
        echo "${rows[-1]}"
    done
done

step "the same batches on every path (--digest: indices, labels, pixels of one epoch)"
for shape in cifar10 tinyimagenet; do
    digests=()
    for p in "${paths[@]}"; do
        IFS='|' read -r scheme device label <<<"$p"
        d=$(tmo 120 "${ours[@]}" "$IMGSET" read "$scheme:$data/$shape" \
                --batch 256 --workers 2 --epochs 1 --digest --device "$device" 2>&1 |
            sed -n 's/^batch digest //p')
        digests+=("${d:-none}")
        echo "$shape $label: ${d:-none}"
    done
    [ "${digests[0]}" != none ] && [ "${digests[0]}" = "${digests[1]}" ] &&
        [ "${digests[1]}" = "${digests[2]}" ] || fail "$shape: digests missing or different"
done

step "training on the GPU through every store: imgset bench --mode train --device cuda"
bench="$data/bench"
if [ "$(left)" -lt 120 ]; then
    fail "bench skipped: only $(left) s of the ${budget} s budget left"
else
    tmo 300 "${ours[@]}" "$IMGSET" bench \
        --stores mmap,gpummap,hdf5,pg,files --shapes cifar10,tinyimagenet --mode train \
        --device cuda --scale "${SCALE:-0.2}" --epochs 2 --runs 3 --batch 256 --workers 8 \
        --out "$bench" >"$OUT/bench.log" 2>&1 || fail "imgset bench (bench.log)"
    cp "$bench"/results.md "$bench"/results.csv "$OUT/" 2>/dev/null
    grep -E '^imgset bench:|^machine:|^settings:' "$OUT/bench.log" | sort -u
fi

# The Python package: the bundle's (built here for one Python version) when the GPU's python
# is that version, else its C extension built there against the bundle's libimgset.a.
python_package() {   # PYTHON: a folder for PYTHONPATH, or nothing
    local py=$1 ext inc dest=build/gpu-python
    ext=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
    if [ -f "build/gpu-bundle/python/imgset/_imgset$ext" ]; then
        echo build/gpu-bundle/python; return
    fi
    inc=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    [ -f "$inc/Python.h" ] && [ -f build/gpu-bundle/static/libimgset.a ] || return 1
    rm -rf "$dest" && mkdir -p "$dest/imgset" && cp python/imgset/*.py "$dest/imgset/"
    local defs="-DIMGSET_HAVE_CUDA" extra=""
    [ -f build/gpu-bundle/static/pgserver.o ] &&
        defs="$defs -DIMGSET_HAVE_LIBPQ" extra=build/gpu-bundle/static/pgserver.o
    # shellcheck disable=SC2086
    cc -O2 -std=c11 -D_GNU_SOURCE -fPIC -shared -fvisibility=hidden $defs -I"$inc" -Iloaders \
        -Itrainer/cli -o "$dest/imgset/_imgset$ext" python/src/*.c $extra \
        build/gpu-bundle/static/libimgset.a build/gpu-bundle/lib/*.so* \
        ${cuda_libs:+-L${cuda_libs//:/ -L}} -lcudart -lcublas -lstdc++ -lm -pthread \
        -Wl,--exclude-libs,ALL >build/gpu-python.log 2>&1 || { cat build/gpu-python.log; return 1; }
    echo "$dest"
}

step "Python: imgset.Loader(device='cuda') (test/gpu/python_cuda.py, log in \$OUT/python.log)"
gpu_python=""
for p in python3 /usr/bin/python3 /opt/conda/bin/python /usr/local/bin/python3; do
    if tmo 60 "$p" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null
    then gpu_python=$p; break; fi
done
if [ "$(left)" -lt 60 ]; then
    fail "python skipped: only $(left) s of the ${budget} s budget left"
elif [ -z "$gpu_python" ]; then
    fail "python: no python here whose torch sees the GPU"
elif ! pkg=$(python_package "$gpu_python") || [ -z "$pkg" ]; then
    fail "python: no imgset package for $gpu_python (no matching bundle, no Python.h to build)"
else
    tmo 180 env PYTHONPATH="$PWD/$pkg" LD_LIBRARY_PATH="$LIBS" IMGSET="$PWD/$IMGSET" \
        "$gpu_python" test/gpu/python_cuda.py "$data" "$PWD/$IMGSET" "$data" \
        >"$OUT/python.log" 2>&1 || fail "python_cuda.py (python.log)"
    grep -E '^(ok|not ok) - |^store |^(gpummap|mmap) |^\| ' "$OUT/python.log" | head -30
fi

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
    grep -h '^| .*\(error\|n/a\)' "$bench/results.md" | sort -u | head -5
else
    echo "(no results.csv: the bench failed or was skipped)"
fi
grep -h '^not ok' "$OUT"/test_gpu*.log 2>/dev/null | head -20
echo "run.sh: ${#failed[@]} failure(s), $((SECONDS - start)) s; files in $OUT"
[ ${#failed[@]} -eq 0 ] || printf 'run.sh: FAILED: %s\n' "${failed[@]}"
[ ${#failed[@]} -eq 0 ]
