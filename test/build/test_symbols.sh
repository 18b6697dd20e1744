#!/usr/bin/env bash
# test_symbols.sh — the code a PostgreSQL backend runs is backend-safe by construction: the nn
# core (trainer/nn, compiled into build/obj/trainer/nn) and the extension's shared object call
# nothing that allocates outside the caller's memory, starts threads, ends or replaces the
# process, or prints. Checked on the undefined symbols of the objects the build made. TAP.
set -u
cd "$(dirname "$0")/../.."

FORBIDDEN='malloc|calloc|realloc|free|strdup|strndup|aligned_alloc|posix_memalign|pthread_[a-z_]+|fork|vfork|exec[lv]p?e?|system|popen|exit|_exit|_Exit|abort|printf|vprintf|puts|putchar|fprintf|vfprintf|fputs|fwrite|perror|fopen|fclose|signal|sigaction|raise'
n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
not_ok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $*"; }

# forbidden_in FILE — the forbidden symbols FILE leaves for the dynamic linker or another unit.
forbidden_in() {
    nm -u "$1" 2>/dev/null | awk '{print $2}' | sed 's/@.*//' | grep -Ex "$FORBIDDEN" | sort -u | tr '\n' ' '
}

core=(build/obj/trainer/nn/*.o)
if [ ! -e "${core[0]}" ]; then
    not_ok "the nn core is built (build/obj/trainer/nn/*.o; run make)"
else
    [ "${#core[@]}" -eq "$(ls trainer/nn/*.c | wc -l)" ] &&
        ok "every source of trainer/nn has an object (${#core[@]})" ||
        not_ok "every source of trainer/nn has an object (${#core[@]} objects for $(ls trainer/nn/*.c | wc -l) sources)"
    for o in "${core[@]}"; do
        bad=$(forbidden_in "$o")
        if [ -z "$bad" ]; then ok "trainer/nn/$(basename "$o" .o).c calls nothing forbidden"
        else not_ok "trainer/nn/$(basename "$o" .o).c calls $bad"; fi
    done
fi

so=extension/pg_imgset.so
if [ ! -f "$so" ]; then
    if command -v pg_config >/dev/null 2>&1 && [ -f "$(pg_config --pgxs)" ]; then
        not_ok "the extension is built ($so; run make)"
    else
        n=$((n + 1)); echo "ok $n - the extension's symbols # SKIP no postgresql-server-dev (PGXS): the extension is not built"
    fi
else
    bad=$(forbidden_in "$so")
    if [ -z "$bad" ]; then ok "$so calls nothing forbidden (no threads, exec, exit, malloc, printing)"
    else not_ok "$so calls $bad"; fi
    # The core is linked by wildcard: every source of trainer/nn is in the module.
    missing=
    for c in trainer/nn/*.c; do
        [ -f "extension/core/$(basename "$c" .c).o" ] || missing="$missing $(basename "$c")"
    done
    [ -z "$missing" ] && ok "the extension links every source of trainer/nn" ||
        not_ok "the extension does not link:$missing"
fi
echo "1..$n"
[ "$failed" -eq 0 ]
