# tap.sh — sourced by the end-to-end scripts: TAP output helpers and a scratch directory.
TAP_N=0
TAP_FAILED=0
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/imgset-e2e.XXXXXX")
trap 'mountpoint -q "$SCRATCH/full" && umount "$SCRATCH/full"; rm -rf "$SCRATCH"' EXIT
PYTHON=${PYTHON:-/usr/bin/python3}
IMGSET=${IMGSET:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/imgset}

# A CLI that is not built fails the script, never skips it.
if [ ! -x "$IMGSET" ]; then
    echo "not ok 1 - the imgset CLI is built ($IMGSET; run make)"
    echo "1..1"
    exit 1
fi

# ok DESCRIPTION COMMAND... — one test: passes when the command exits 0.
ok() {
    local what=$1; shift
    TAP_N=$((TAP_N + 1))
    if "$@" >"$SCRATCH/last.out" 2>&1; then
        echo "ok $TAP_N - $what"
    else
        echo "not ok $TAP_N - $what"; sed 's/^/# /' "$SCRATCH/last.out" | head -20
        TAP_FAILED=$((TAP_FAILED + 1))
    fi
}

# exits_with STATUS DESCRIPTION PATTERN COMMAND... — passes when the command exits with
# exactly STATUS and its stderr matches PATTERN (grep -E).
exits_with() {
    local want=$1 what=$2 pattern=$3; shift 3
    TAP_N=$((TAP_N + 1))
    "$@" >"$SCRATCH/last.out" 2>"$SCRATCH/last.err"
    local rc=$?
    if [ $rc -eq "$want" ] && grep -qE -- "$pattern" "$SCRATCH/last.err"; then
        echo "ok $TAP_N - $what"
    else
        echo "not ok $TAP_N - $what (status $rc, expected $want)"; sed 's/^/# /' "$SCRATCH/last.err" | head -10
        TAP_FAILED=$((TAP_FAILED + 1))
    fi
}

# fails_with DESCRIPTION PATTERN COMMAND... — an error: status 1 and stderr matching PATTERN.
fails_with() { exits_with 1 "$@"; }

# usage_error DESCRIPTION PATTERN COMMAND... — a usage error: status 2, stderr matching PATTERN.
usage_error() { exits_with 2 "$@"; }

# hdf5_in STORE-ARRAY-NAME ENTRY... — add the entries to the named store matrix when the CLI
# has the hdf5 store, else print a skip line saying HDF5 is left out of it.
hdf5_in() {
    local -n matrix=$1; shift
    if "$IMGSET" --help | grep -q '^  hdf5 '; then
        matrix+=("$@")
    else
        skip "the hdf5 store in this matrix ($*)" "this imgset was built without HDF5"
    fi
}

# skip DESCRIPTION REASON
skip() {
    TAP_N=$((TAP_N + 1))
    echo "ok $TAP_N - $1 # SKIP $2"
}

tap_done() {
    echo "1..$TAP_N"
    [ "$TAP_FAILED" -eq 0 ]
}
