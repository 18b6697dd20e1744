# tap.sh — sourced by the test/pg scripts that test/pg/run.sh relays: TAP lines and a counter.
# Needs $WORK (the scratch folder run.sh gives them).
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }
# t DESCRIPTION COMMAND... — one test: passes when the command exits 0; its output on failure.
t() {
    local what=$1; shift
    if "$@" >"$WORK/t.out" 2>&1; then ok "$what"
    else not_ok "$what"; sed 's/^/# /' "$WORK/t.out" | tail -10; fi
}
# same DESCRIPTION EXPECTED GOT — passes when the two are equal and not empty.
same() {
    if [ "$2" = "$3" ] && [ -n "$2" ]; then ok "$1"
    else not_ok "$1"; echo "#   got:      $3"; echo "#   expected: $2"; fi
}
