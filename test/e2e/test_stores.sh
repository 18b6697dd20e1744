#!/usr/bin/env bash
# test_stores.sh — every shape, generated into every store and converted through every store
# pair, gives the same digest; the CLI fails cleanly on bad input and interrupted writes.
set -u
. "$(dirname "$0")/tap.sh"
cd "$SCRATCH"

stores=(files mmap)
hdf5_in stores hdf5

# location STORE NAME — the URI of store STORE called NAME in the scratch directory.
location() { case $1 in hdf5) echo "hdf5:$SCRATCH/$2.h5" ;; *) echo "$1:$SCRATCH/$2" ;; esac; }

# digests URI — the verify lines of a store, without the URI column.
digests() { "$IMGSET" verify "$1" | awk '{print $1, $2, $3}'; }

declare -A counts=([cifar10]="--train 40 --test 12" [tinyimagenet]="--train 30 --test 8"
                   [hires]="--train 4 --test 2" [mixed]="--train 16 --test 5")
for shape in cifar10 tinyimagenet hires mixed; do
    uris=()
    for st in "${stores[@]}"; do
        uri=$(location "$st" "$shape-gen-$st")
        ok "gen $shape into $st" "$IMGSET" gen --like "$shape" ${counts[$shape]} --seed 7 --out "$uri"
        uris+=("$uri")
    done
    for src in "${stores[@]}"; do
        for dst in "${stores[@]}"; do
            [ "$src" = "$dst" ] && continue
            uri=$(location "$dst" "$shape-$src-to-$dst")
            ok "convert $shape $src -> $dst" "$IMGSET" convert "$(location "$src" "$shape-gen-$src")" "$uri"
            uris+=("$uri")
        done
    done
    ok "verify: $shape identical in ${#uris[@]} stores" "$IMGSET" verify "${uris[@]}"
    n=$(digests "${uris[0]}" | awk '$1 == "train" {print $3}')
    want=$(echo "${counts[$shape]}" | awk '{print $2}')
    ok "$shape train count is $want" test "$n" = "$want"
done

# Determinism and sensitivity of gen.
m1=$(location mmap det1); m2=$(location mmap det2); m3=$(location mmap det3)
"$IMGSET" gen --like cifar10 --train 20 --test 5 --seed 3 --out "$m1" >/dev/null
"$IMGSET" gen --like cifar10 --train 20 --test 5 --seed 3 --out "$m2" >/dev/null
"$IMGSET" gen --like cifar10 --train 20 --test 5 --seed 4 --out "$m3" >/dev/null
ok "gen is deterministic for a seed" "$IMGSET" verify "$m1" "$m2"
ok "verify exits 1 when stores differ" bash -c "'$IMGSET' verify '$m1' '$m3'; [ \$? -eq 1 ]"
ok "verify prints DIFFERS for the odd one" bash -c "'$IMGSET' verify '$m1' '$m3' | grep -q DIFFERS"
ok "info shows counts and shape" bash -c "'$IMGSET' info '$m1' | grep -q 'train .*20 images, 32x32x3'"
ok "info shows mixed sizes" bash -c "'$IMGSET' info '$(location mmap mixed-gen-mmap)' | grep -q 'mixed sizes'"

# Bad input: clear messages, non-zero status, no crash.
fails_with "unknown shape is named" "nosuch" "$IMGSET" gen --like nosuch --out "$(location mmap x)"
usage_error "gen without --out is a usage error" "usage" "$IMGSET" gen --like cifar10
usage_error "a non-numeric count is named" "\"ten\"" "$IMGSET" gen --like cifar10 --train ten --out "$(location mmap x)"
fails_with "an existing destination is refused" "exist" "$IMGSET" convert "$m1" "$m2"
fails_with "a missing source is named" "$SCRATCH/absent" "$IMGSET" convert "$(location mmap absent)" "$(location mmap y)"
fails_with "an unknown scheme is named" "ftp" "$IMGSET" info "ftp://x"
usage_error "an unknown command is refused" "unknown command" "$IMGSET" frobnicate
for cmd in gen import convert verify info; do
    ok "$cmd --help" bash -c "'$IMGSET' $cmd --help | grep -q usage"
done

# The progress bar: drawn on stderr when it is a terminal (a pseudo-terminal here), ending at
# 100% and clearing its line; in a pipe, no bar and no control characters at all.
ok "a progress bar on a terminal, none in a pipe" "$PYTHON" - "$IMGSET" "$SCRATCH" <<'EOF'
import os, subprocess, sys
imgset, scratch = sys.argv[1:3]
def gen(name, stderr):
    return subprocess.run([imgset, "gen", "--like", "cifar10", "--train", "3000", "--test", "10",
                           "--out", "mmap:%s/%s" % (scratch, name)], stdout=subprocess.PIPE,
                          stderr=stderr, timeout=300)
main, child = os.openpty()
p = gen("bar-tty", child)
os.close(child)
tty = b""
while True:
    try:
        chunk = os.read(main, 65536)
    except OSError:                      # EIO: the child end is closed and drained
        break
    if not chunk:
        break
    tty += chunk
assert p.returncode == 0, p.returncode
assert b"\r" in tty and b"] 100% 3010/3010" in tty, tty[-300:]
assert tty.endswith(b"\r\x1b[K") or b"\r\x1b[K" in tty, "the line is not cleared"
assert b"100%" not in p.stdout and b"\r" not in p.stdout, "the bar went to stdout"
q = gen("bar-pipe", subprocess.PIPE)
assert q.returncode == 0 and q.stderr == b"", q.stderr[-300:]
report = b"gen: 3010 images, 9.2 MB into mmap:%s/" % scratch.encode()
assert p.stdout.startswith(report) and q.stdout.startswith(report), (p.stdout, q.stdout)
EOF

# A full disk: a one-line error naming the file, nothing left behind (needs root for a
# small tmpfs; skipped with the reason otherwise).
mkdir -p "$SCRATCH/full"
if mount -t tmpfs -o size=2m tmpfs "$SCRATCH/full" 2>/dev/null; then
    for st in "${stores[@]}"; do
        uri=$(location "$st" "full/out")
        fails_with "a full disk during a $st write is named (No space left)" \
            "No space left on device" "$IMGSET" gen --like cifar10 --train 3000 --test 10 --out "$uri"
        ok "  and leaves nothing in the full file system" bash -c "[ -z \"\$(ls -A '$SCRATCH/full')\" ]"
    done
    umount "$SCRATCH/full"
else
    skip "a full disk during a write is named" "cannot mount a small tmpfs here (not root?)"
fi

# An interrupted write leaves nothing that looks like a store. The signal comes once the
# write is under way (its temporary exists); the command says it was interrupted.
for st in "${stores[@]}"; do
    uri=$(location "$st" "interrupted-$st")
    path=${uri#*:}
    "$IMGSET" gen --like hires --train 3000 --test 10 --out "$uri" >/dev/null 2>"$SCRATCH/int.err" &
    pid=$!
    started=no
    for i in $(seq 600); do
        if compgen -G "$path.tmp*" >/dev/null; then started=yes; break; fi
        sleep 0.1
    done
    kill -INT "$pid"
    wait "$pid"
    rc=$?
    ok "Ctrl-C during a $st write (started: $started) exits 1, says so, leaves no store" \
        bash -c "[ $started = yes ] && [ $rc -eq 1 ] && grep -q 'interrupted' '$SCRATCH/int.err' &&
                 [ ! -e '$path' ] && ! ls '$path'.tmp* >/dev/null 2>&1"
done

tap_done
