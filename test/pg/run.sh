#!/usr/bin/env bash
# run.sh — the PostgreSQL suite, against a throwaway cluster it starts and stops itself:
# pg_regress (sql/, expected/), pgTAP files (test/pg/*.pg) through pg_prove, the libpq wire and
# fuzz test (test_wire), the postgresql:// store test (test_store_pg), the CLI round trip, a
# primary and its hot standby behind one URI (replicas.sh), and the inference identity test.
# Prints TAP: one line per pg_regress test, every pgTAP/C test line renumbered, then the plan;
# exits non-zero on failure.
# The server runs from test/pgtree.sh's private installation ($IMGSET_PG_BINDIR, made here when
# test/run.sh has not made it), so the system's folders are never written.
set -u
cd "$(dirname "$0")/../.."
ROOT=$PWD
PG_CONFIG=${PG_CONFIG:-pg_config}
FUZZ_COUNT=${FUZZ_COUNT:-3000}

N=0
FAILED=0
tap_ok() { N=$((N + 1)); echo "ok $N - $*"; }
tap_fail() { N=$((N + 1)); FAILED=$((FAILED + 1)); echo "not ok $N - $*"; }
tap_skip() { N=$((N + 1)); echo "ok $N - $1 # SKIP $2"; }
finish() { echo "1..$N"; [ "$FAILED" -eq 0 ]; exit $?; }
# check DESCRIPTION COMMAND... — one test line for a command's status; its output on failure.
check() {
    local what=$1; shift
    if "$@" >"$WORK/check.out" 2>&1; then tap_ok "$what"
    else tap_fail "$what"; sed 's/^/# /' "$WORK/check.out" | tail -20; fi
}
# relay NAME — renumber the test lines of a TAP stream on stdin into this one.
relay() {
    local name=$1 line seen=0
    while IFS= read -r line; do
        if [[ $line =~ ^(not\ )?ok\ [0-9]+\ *-?\ *(.*)$ ]]; then
            seen=1
            N=$((N + 1))
            if [ -n "${BASH_REMATCH[1]}" ]; then FAILED=$((FAILED + 1)); echo "not ok $N - $name: ${BASH_REMATCH[2]}"
            else echo "ok $N - $name: ${BASH_REMATCH[2]}"; fi
        elif [[ $line =~ ^\ *# || $line =~ ^Bail\ out ]]; then
            echo "# $line"
        fi
    done
    [ $seen -eq 1 ] || tap_fail "$name printed no test"
}

WORK=$(mktemp -d /tmp/imgset-pgtest.XXXXXX)
CLUSTER=
cleanup() {
    [ -n "$CLUSTER" ] && test/pgcluster.sh stop "$CLUSTER" >/dev/null 2>&1
    rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v "$PG_CONFIG" >/dev/null 2>&1; then
    tap_skip "PostgreSQL suite" "no pg_config (install postgresql-server-dev-15)"
    finish
fi
BINDIR=$("$PG_CONFIG" --bindir)
PG_REGRESS=$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress

# 1. The extension this checkout built, in a private installation (test/pgtree.sh) that every
# cluster of this suite runs from: root or not, never an older one left in the system's folders.
if [ -z "${IMGSET_PG_BINDIR:-}" ]; then
    if IMGSET_PG_BINDIR=$(test/pgtree.sh build/pg 2>"$WORK/pgtree.err"); then
        export IMGSET_PG_BINDIR
    else
        tap_fail "private installation with this build's pg_imgset (test/pgtree.sh)"
        sed 's/^/# /' "$WORK/pgtree.err" | tail -20
        finish
    fi
fi
if [ -f "$IMGSET_PG_BINDIR/../lib/pg_imgset.so" ] &&
        cmp -s "$IMGSET_PG_BINDIR/../lib/pg_imgset.so" extension/pg_imgset.so; then
    tap_ok "the clusters run this build's pg_imgset ($IMGSET_PG_BINDIR)"
else
    tap_fail "the clusters run this build's pg_imgset ($IMGSET_PG_BINDIR)"
    finish
fi

# 2. A throwaway cluster.
if CLUSTER=$(test/pgcluster.sh start 2>"$WORK/cluster.err"); then
    tap_ok "throwaway cluster started"
    eval "$(test/pgcluster.sh env "$CLUSTER")"
else
    CLUSTER=
    tap_fail "throwaway cluster started"; sed 's/^/# /' "$WORK/cluster.err" | tail -20
    finish
fi
psql_q() { "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

# 3. pg_regress: one line per test.
REGRESS_TESTS="imgtensor_io imgtensor_cast imgtensor_ops dataset batch model"
mkdir -p "$WORK/regress"
"$PG_REGRESS" --inputdir="$ROOT" --outputdir="$WORK/regress" --bindir="$BINDIR" \
    --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" --dbname=imgset_regress \
    $REGRESS_TESTS >"$WORK/regress.log" 2>&1
for t in $REGRESS_TESTS; do
    if grep -qE "^(test )? *$t +\.\.\. ok" "$WORK/regress.log"; then
        tap_ok "pg_regress $t"
    else
        tap_fail "pg_regress $t"
        grep -E "$t" "$WORK/regress.log" | sed 's/^/# /'
        [ -f "$WORK/regress/regression.diffs" ] &&
            awk -v t="/$t.out" 'index($0, "diff ") == 1 { show = index($0, t) > 0 } show' \
                "$WORK/regress/regression.diffs" | head -40 | sed 's/^/# /'
    fi
done

# 4. pgTAP through pg_prove.
psql_q -d postgres -c "CREATE DATABASE imgset_tap" &&
    psql_q -d imgset_tap -c "CREATE EXTENSION pg_imgset" >/dev/null
if ! psql_q -d imgset_tap -c "CREATE EXTENSION pgtap" >/dev/null 2>&1; then
    tap_skip "pgTAP" "pgtap is not installed (postgresql-15-pgtap)"
elif ! command -v pg_prove >/dev/null 2>&1; then
    tap_skip "pgTAP" "pg_prove is not installed (libtap-parser-sourcehandler-pgtap-perl)"
else
    for f in test/pg/*.pg; do
        pg_prove --verbose --psql-bin "$BINDIR/psql" -d imgset_tap "$f" >"$WORK/tap.out" 2>&1
        status=$?
        relay "$(basename "$f")" <"$WORK/tap.out"
        [ "$status" -eq 0 ] || tap_fail "pg_prove $(basename "$f") exited with $status"
    done
fi

# 4b. What the module exports into the backend.
PSQL="$BINDIR/psql -d imgset_tap" SO=extension/pg_imgset.so bash test/pg/exports.sh >"$WORK/tap.out" 2>&1
relay exports <"$WORK/tap.out"

# 5. The C tests of test/pg (built by the Makefile with tap.h and the library): the wire/fuzz
# test and the postgresql:// store test. Not built is a failure, never a skip.
psql_q -d postgres -c "CREATE DATABASE imgset_store" &&
    psql_q -d imgset_store -c "CREATE EXTENSION pg_imgset"
# run_c_test NAME DATABASE ARGS... — one built C test against a database of this cluster.
run_c_test() {
    local name=$1 db=$2; shift 2
    local bin=$ROOT/build/pgtest/$name
    if [ ! -x "$bin" ]; then
        tap_fail "$name is built ($bin; run make)"
        return
    fi
    PGDATABASE=$db "$bin" "$@" >"$WORK/tap.out" 2>&1
    local status=$?
    relay "$name" <"$WORK/tap.out"
    [ "$status" -eq 0 ] || tap_fail "$name exited with $status"
}
run_c_test test_wire imgset_tap "$FUZZ_COUNT"
run_c_test test_store_pg imgset_store "postgresql:///imgset_store?host=$PGHOST&port=$PGPORT&user=$PGUSER"

# 6. The CLI: mmap -> postgresql -> mmap, same digests. A CLI that is not built, or built
# without libpq where this suite runs, is a failure.
IMGSET=${IMGSET:-$ROOT/build/imgset}
if [ ! -x "$IMGSET" ]; then
    tap_fail "the CLI is built ($IMGSET; run make)"
    finish
fi
if ! "$IMGSET" --help 2>&1 | grep -q postgresql; then
    tap_fail "the CLI has the postgresql:// store (built with libpq)"
else
    psql_q -d postgres -c "CREATE DATABASE imgset_cli" &&
        psql_q -d imgset_cli -c "CREATE EXTENSION pg_imgset"
    IMGSET=$IMGSET WORK=$WORK bash test/pg/cli_roundtrip.sh >"$WORK/tap.out" 2>&1
    status=$?
    relay cli <"$WORK/tap.out"
    [ "$status" -eq 0 ] || tap_fail "cli_roundtrip.sh exited with $status"

    # 6b. Replicas: this cluster as the primary of a hot standby, one URI naming both.
    IMGSET=$IMGSET WORK=$WORK PRIMARY=$CLUSTER PSQL="$BINDIR/psql" bash test/pg/replicas.sh \
        >"$WORK/tap.out" 2>&1
    status=$?
    relay replicas <"$WORK/tap.out"
    [ "$status" -eq 0 ] || tap_fail "replicas.sh exited with $status"
fi

# 7. In-database inference equals the CLI's, bit for bit.
psql_q -d postgres -c "CREATE DATABASE imgset_infer" &&
    psql_q -d imgset_infer -c "CREATE EXTENSION pg_imgset"
IMGSET=$IMGSET WORK=$WORK PSQL="$BINDIR/psql" bash test/pg/predict_identity.sh >"$WORK/tap.out" 2>&1
status=$?
relay identity <"$WORK/tap.out"
[ "$status" -eq 0 ] || tap_fail "predict_identity.sh exited with $status"

# 7b. The extension across versions and dumps: 0.1 updated to 0.2, pg_dump / pg_restore, and a
# database that is not UTF-8.
BINDIR=$BINDIR WORK=$WORK bash test/pg/upgrade_dump.sh >"$WORK/tap.out" 2>&1
status=$?
relay upgrade <"$WORK/tap.out"
[ "$status" -eq 0 ] || tap_fail "upgrade_dump.sh exited with $status"

# 8. The server survived everything.
if "$BINDIR/psql" -X -Atc "SELECT 1" -d postgres >/dev/null 2>&1 &&
        ! grep -qE "terminated by signal|PANIC|was terminated" "$CLUSTER/server.log"; then
    tap_ok "the server is up and no backend crashed"
else
    tap_fail "the server is up and no backend crashed"
    grep -E "terminated|PANIC" "$CLUSTER/server.log" | head -10 | sed 's/^/# /'
fi

# 9. Faults, on a cluster of their own: the server killed during training, a disk that fills,
# clients that go away, cancel and shutdown during a forward pass.
mkdir -p "$WORK/faults"
IMGSET=$IMGSET BINDIR=$BINDIR WORK=$WORK/faults bash test/pg/faults.sh >"$WORK/tap.out" 2>&1
status=$?
relay faults <"$WORK/tap.out"
[ "$status" -eq 0 ] || tap_fail "faults.sh exited with $status"
finish
