#!/usr/bin/env bash
# cli_roundtrip.sh — the imgset CLI through the postgresql:// store: gen into mmap:A, convert
# into the database, convert back into mmap:B, and verify gives one digest for all three; the
# loader's resized batches (the server resizes for postgresql://) are the same as from mmap; an
# existing data set name is refused. Prints TAP. Run by test/pg/run.sh with the PG* variables
# of its cluster (database imgset_cli with the extension); needs $IMGSET and $WORK.
set -u
IMGSET=${IMGSET:?}
WORK=${WORK:?}
DB="postgresql:///imgset_cli?host=$PGHOST&port=$PGPORT&user=$PGUSER"
n=0 failed=0
# t DESCRIPTION COMMAND... — one test: passes when the command exits 0.
t() {
    local what=$1; shift
    n=$((n + 1))
    if "$@" >"$WORK/cli.out" 2>&1; then echo "ok $n - $what"
    else echo "not ok $n - $what"; sed 's/^/# /' "$WORK/cli.out" | tail -10; failed=$((failed + 1)); fi
}

for like in cifar10 mixed; do
    A="mmap:$WORK/$like-A" B="mmap:$WORK/$like-B" P="$DB&dataset=cli_$like"
    counts="--train 300 --test 100"
    [ "$like" = mixed ] && counts="--train 30 --test 10"
    t "gen --like $like into mmap" "$IMGSET" gen --like "$like" $counts --seed 3 --out "$A"
    t "convert $like mmap -> postgresql" "$IMGSET" convert "$A" "$P"
    t "convert $like postgresql -> mmap" "$IMGSET" convert "$P" "$B"
    t "verify $like: mmap, postgresql and mmap give the same digests" "$IMGSET" verify "$A" "$P" "$B"
    t "read $like --size 24 --augment: the same batches from mmap and postgresql" bash -c "
        a=\$('$IMGSET' read '$A' --size 24 --augment --batch 8 --epochs 1 --digest | grep '^batch digest')
        b=\$('$IMGSET' read '$P' --size 24 --augment --batch 8 --epochs 1 --digest | grep '^batch digest')
        [ -n \"\$a\" ] && [ \"\$a\" = \"\$b\" ]"
    n=$((n + 1))
    if "$IMGSET" convert "$A" "$P" >"$WORK/cli.out" 2>&1; then
        echo "not ok $n - converting into an existing data set name is refused"; failed=$((failed + 1))
    elif grep -q "already exists" "$WORK/cli.out"; then
        echo "ok $n - converting into an existing data set name is refused (\"already exists\")"
    else
        echo "not ok $n - the refusal says \"already exists\""; sed 's/^/# /' "$WORK/cli.out"
        failed=$((failed + 1))
    fi
done
echo "1..$n"
[ "$failed" -eq 0 ]
