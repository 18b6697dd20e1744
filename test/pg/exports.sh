#!/usr/bin/env bash
# exports.sh — TAP: pg_imgset.so exports exactly what PostgreSQL looks up in it: the magic
# block, _PG_init, and each C function of the installed extension with its info record
# (pg_proc.prosrc of the functions whose probin is the module). Nothing of the library
# (imgset_fail, sampler_*, the nn layers…) leaks into the backend's symbol namespace.
# Env: PSQL (a psql that reaches a database with the extension installed), SO (the module).
set -u
SO=${SO:-extension/pg_imgset.so}
expected=$(mktemp) exported=$(mktemp)
trap 'rm -f "$expected" "$exported"' EXIT
{
    echo Pg_magic_func
    echo _PG_init
    $PSQL -XAtc "SELECT DISTINCT prosrc FROM pg_proc WHERE probin = '\$libdir/pg_imgset'" |
        while read -r f; do echo "$f"; echo "pg_finfo_$f"; done
} | sort -u >"$expected"
nm -D --defined-only "$SO" | awk '{print $3}' | sort -u >"$exported"
n=$(wc -l <"$expected")
if [ "$n" -gt 40 ] && cmp -s "$expected" "$exported"; then
    echo "ok 1 - pg_imgset.so exports exactly the magic block, _PG_init and the $(( (n - 2) / 2 )) SQL-callable functions with their info records"
else
    echo "not ok 1 - pg_imgset.so exports exactly what PostgreSQL looks up"
    diff "$expected" "$exported" | sed 's/^/# /' | head -20
    echo "# ('<' expected but not exported, '>' exported but not called by PostgreSQL)"
fi
echo "1..1"
