#!/usr/bin/env bash
# mutate.sh — the mutation check: applies each one-line mutation of test/mutations.txt in turn,
# rebuilds, runs the tests the mutation names (test/run.sh), and reports whether they caught it
# ("killed") or let it through ("SURVIVED"). The source is restored after each mutation, also
# on Ctrl-C. Not part of make check: it rebuilds once per mutation (tens of minutes).
# Usage: test/mutate.sh [NAME...]   (default: every mutation; env JOBS=2 for make)
# Prints a Markdown table and exits 1 when a mutation survived, could not be applied (its text
# is no longer in the file) or did not build.
set -u
cd "$(dirname "$0")/.."
LIST=test/mutations.txt
JOBS=${JOBS:-2}
PYTHON=/usr/bin/python3
WORK=$(mktemp -d "${TMPDIR:-/tmp}/imgset-mutate.XXXXXX")
current_file=

restore() {
    [ -n "$current_file" ] && cp -p "$WORK/original" "$current_file" && touch "$current_file"
    current_file=
}
trap 'restore; rm -rf "$WORK"' EXIT
trap 'echo "mutate.sh: interrupted; the source is restored" >&2; exit 130' INT TERM

# The mutations, one per line of $WORK/list: NAME<TAB>FILE<TAB>OCCURRENCE<TAB>FROM<TAB>TO<TAB>TESTS
"$PYTHON" - "$LIST" >"$WORK/list" <<'EOF' || exit 1
import re, sys
entry = None
for number, line in enumerate(open(sys.argv[1]), 1):
    text = line.rstrip("\n")
    if not text.strip() or text.startswith("#"):
        continue
    if text.startswith("@ "):
        name, path, *tests = text[2:].split()
        entry = {"name": name, "file": path, "tests": " ".join(tests), "at": number}
    elif entry and re.match(r"-\d* ", text) and "from" not in entry:
        occurrence, _, rest = text[1:].partition(" ")
        entry["occurrence"], entry["from"] = int(occurrence or 0), rest.strip()
    elif entry and text.startswith("+ ") and "from" in entry:
        entry["to"] = text[2:].strip()
        print("\t".join([entry["name"], entry["file"], str(entry["occurrence"]), entry["from"],
                         entry["to"], entry["tests"]]))
        entry = None
    else:
        sys.exit("%s:%d: expected '@ NAME FILE TEST...', '- TEXT' or '+ TEXT'" % (sys.argv[1], number))
EOF

# apply FILE OCCURRENCE FROM TO — replace the OCCURRENCE-th FROM in FILE (0: the only one);
# 1 when it is not there, or (OCCURRENCE 0) when it is there more than once.
apply() {
    "$PYTHON" - "$@" <<'EOF'
import sys
path, occurrence, old, new = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
text = open(path).read()
if occurrence == 0 and text.count(old) != 1:
    sys.exit(1)
at = -1
for _ in range(max(occurrence, 1)):
    at = text.find(old, at + 1)
    if at < 0:
        sys.exit(1)
open(path, "w").write(text[:at] + new + text[at + len(old):])
EOF
}

build() { make -j"$JOBS" NO_FUZZ=1 all >"$WORK/build.log" 2>&1 </dev/null; }

echo "mutate.sh: building the unmutated tree first" >&2
build || { echo "mutate.sh: the unmutated tree does not build:" >&2; tail -20 "$WORK/build.log" >&2; exit 1; }

rows=() bad=0
while IFS=$'\t' read -r -u 3 name file occurrence from to tests; do
    if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then continue; fi
    start=$SECONDS
    cp -p "$file" "$WORK/original"
    current_file=$file
    if ! apply "$file" "$occurrence" "$from" "$to"; then
        result="not applied: the text is not in $file (once, or at that occurrence)"; bad=$((bad + 1))
    elif ! build; then
        result="does not build"; bad=$((bad + 1))
    else
        # shellcheck disable=SC2086  # TESTS is a list of words
        TEST_TIMEOUT=${TEST_TIMEOUT:-600} test/run.sh $tests >"$WORK/$name.log" 2>&1 </dev/null
        if [ $? -ne 0 ]; then
            caught=$(grep -E '^ +not ok|^not ok' "$WORK/$name.log" | head -1 | sed 's/^ *//; s/|/\\|/g' | cut -c1-110)
            result="killed: $caught"
        else
            result="SURVIVED"; bad=$((bad + 1))
        fi
    fi
    restore
    rows+=("| $name | \`$file\` | $tests | $result | $((SECONDS - start)) s |")
    echo "mutate.sh: $name: $result" >&2
done 3<"$WORK/list"

echo "mutate.sh: rebuilding the unmutated tree" >&2
build || echo "mutate.sh: the restored tree does not build (see make)" >&2
echo "| mutation | file | tests | result | time |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "${#rows[@]} mutations, $((${#rows[@]} - bad)) killed, $bad survived or could not be checked"
[ "$bad" -eq 0 ]
