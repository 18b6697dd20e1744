#!/usr/bin/env bash
# run.sh — run every test suite (each prints TAP) and end with "N passed, N failed, N skipped".
# Suites: build checks, C unit tests, fuzz targets (bounded), end-to-end scripts, Python
# interop, PostgreSQL, the Python package (build/python).
# Usage: test/run.sh [SUITE...]   (build unit fuzz e2e interop pg python; default: all), or one
# program of a suite: unit/test_loader, e2e/test_read.sh, interop/test_numpy.py, python/…, build/….
set -u
cd "$(dirname "$0")/.."
export IMGSET="$PWD/build/imgset"
export IMGSET_ROOT="$PWD"
export PYTHON=/usr/bin/python3          # Debian's python, which has the python3-* packages
FUZZ_SECONDS=${FUZZ_SECONDS:-15}
TEST_TIMEOUT=${TEST_TIMEOUT:-1800}      # seconds per test program: a hang is a failure

passed=0 failed=0 skipped=0 programs=0 emulated=0
log_dir=$(mktemp -d "${TMPDIR:-/tmp}/imgset-test.XXXXXX")
trap 'rm -rf "$log_dir"' EXIT

# Every cluster a test starts (test/pgcluster.sh, the CLI's embedded one) runs the extension
# this checkout just built, from a private installation (test/pgtree.sh), root or not.
if command -v pg_config >/dev/null 2>&1 && [ -f "$(pg_config --pgxs)" ] && [ -z "${IMGSET_PG_BINDIR:-}" ]; then
    if IMGSET_PG_BINDIR=$(test/pgtree.sh build/pg 2>"$log_dir/pgtree.err"); then
        export IMGSET_PG_BINDIR
    else
        echo "run.sh: test/pgtree.sh failed:" >&2; cat "$log_dir/pgtree.err" >&2; failed=$((failed + 1))
    fi
fi

# run_tap NAME COMMAND... — run one TAP producer, count its results, show failures.
run_tap() {
    local name=$1; shift
    local out="$log_dir/$(echo "$name" | tr '/ ' '__').log"
    programs=$((programs + 1))
    local start=$SECONDS
    timeout -k 10 "$TEST_TIMEOUT" "$@" >"$out" 2>&1
    local rc=$?
    [ "$rc" -eq 124 ] && echo "not ok - $name did not finish in $TEST_TIMEOUT s" >>"$out"
    local p f s
    s=$(grep -cE '^ok [0-9]+.*# *(SKIP|skip)' "$out")
    p=$(( $(grep -cE '^ok [0-9]+' "$out") - s ))
    f=$(grep -cE '^not ok [0-9]+' "$out")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1; echo "not ok - $name exited with status $rc" >>"$out"
    fi
    if [ $((p + f + s)) -eq 0 ]; then
        f=1; echo "not ok - $name reported no test" >>"$out"
    fi
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
    emulated=$((emulated + $(grep -E '^ok [0-9]+' "$out" | grep -vE '# *(SKIP|skip)' | grep -c 'host emulation, not a GPU')))
    printf '%-44s %4d passed %3d failed %3d skipped  (%ds)\n' "$name" "$p" "$f" "$s" $((SECONDS - start))
    if [ "$f" -gt 0 ]; then
        grep -E '^not ok|^#' "$out" | head -40 | sed 's/^/    /'
        tail -15 "$out" | sed 's/^/    | /'
    fi
    grep -E '^ok .*# *SKIP' "$out" | head -5 | sed 's/^/    /'
}

# require_built SUITE DIR SOURCE... — a failure for each test program of SOURCE not built in DIR.
require_built() {
    local suite=$1 dir=$2 src name; shift 2
    for src in "$@"; do
        name=$(basename "$src" .c)
        [ -x "$dir/$name" ] || run_tap "$suite/$name" echo "not ok 1 - $dir/$name is not built (run make)"
    done
}

suites=${*:-build unit fuzz e2e interop pg python}
for suite in $suites; do
    programs_before=$programs
    case $suite in
    build)
        for t in test/build/test_*.sh; do [ -f "$t" ] && run_tap "build/$(basename "$t")" bash "$t"; done ;;
    unit)
        require_built unit build/test test/unit/test_*.c test/gpu/test_*.c
        for t in build/test/test_*; do [ -x "$t" ] && run_tap "unit/$(basename "$t")" "$t"; done ;;
    fuzz)
        if command -v clang >/dev/null; then
            require_built fuzz build/fuzz test/fuzz/fuzz_*.c
        elif ! compgen -G 'build/fuzz/fuzz_*' >/dev/null; then
            run_tap fuzz echo "ok 1 - fuzz targets # SKIP not built: no clang (libFuzzer)"
        fi
        for t in build/fuzz/fuzz_*; do
            [ -x "$t" ] || continue
            n=$(basename "$t"); corpus="$log_dir/corpus_$n"; mkdir -p "$corpus"
            seeds=test/fuzz/seeds/${n#fuzz_}
            run_tap "fuzz/$n" bash -c "'$t' -max_total_time=$FUZZ_SECONDS -rss_limit_mb=2048 \
                '$corpus' $( [ -d "$seeds" ] && echo "'$seeds'" ) >'$log_dir/$n.fuzzlog' 2>&1 \
                && echo 'ok 1 - $n: no crash in ${FUZZ_SECONDS}s' \
                || { tail -30 '$log_dir/$n.fuzzlog'; echo 'not ok 1 - $n found a crash'; }"
        done ;;
    e2e)
        for t in test/e2e/test_*.sh; do [ -f "$t" ] && run_tap "e2e/$(basename "$t")" bash "$t"; done ;;
    interop)
        for t in test/interop/test_*.py; do [ -f "$t" ] && run_tap "interop/$(basename "$t")" "$PYTHON" "$t"; done ;;
    pg)
        [ -f test/pg/run.sh ] && run_tap "pg" bash test/pg/run.sh ;;
    python)
        for t in test/python/test_*.py; do [ -f "$t" ] && run_tap "python/$(basename "$t")" "$PYTHON" "$t"; done ;;
    unit/* | build/* | e2e/* | interop/* | python/*)   # one program of a suite, e.g. unit/test_loader
        program=${suite#*/}
        case $suite in
        unit/*) [ -x "build/test/$program" ] && run_tap "$suite" "build/test/$program" ;;
        build/*) [ -f "test/build/$program" ] && run_tap "$suite" bash "test/build/$program" ;;
        e2e/*) [ -f "test/e2e/$program" ] && run_tap "$suite" bash "test/e2e/$program" ;;
        interop/*) [ -f "test/interop/$program" ] && run_tap "$suite" "$PYTHON" "test/interop/$program" ;;
        python/*) [ -f "test/python/$program" ] && run_tap "$suite" "$PYTHON" "test/python/$program" ;;
        esac ;;
    *)
        echo "run.sh: unknown suite $suite" >&2; failed=$((failed + 1)); continue ;;
    esac
    # A suite that found nothing to run (nothing built, no script) is a failure, not a pass.
    if [ "$programs" -eq "$programs_before" ]; then
        echo "not ok - suite $suite ran no test (nothing built? run make)"
        failed=$((failed + 1))
    fi
done

# The GPU code's passes that ran on the host emulation (test/gpu/emu), each marked so in its
# TAP line: they prove the kernels right against the CPU, not that a GPU runs them.
echo "$emulated of the $passed passes ran on the host emulation of CUDA (test/gpu/emu), not on a GPU"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
