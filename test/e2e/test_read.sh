#!/usr/bin/env bash
# test_read.sh — imgset read: the batch sequence for a seed has one digest in every store and
# for every worker count; sharding and cold/warm reporting; errors mid-epoch name the index.
set -u
. "$(dirname "$0")/tap.sh"
cd "$SCRATCH"

stores=(files:f mmap:m)
hdf5_in stores hdf5:h.h5 'hdf5:g.h5?compression=gzip'
"$IMGSET" gen --like cifar10 --train 700 --test 50 --seed 2 --out mmap:m >/dev/null
for uri in "${stores[@]}"; do
    [ "$uri" = mmap:m ] || "$IMGSET" convert mmap:m "$uri" >/dev/null
done

digest() { "$IMGSET" read "$@" --epochs 2 --batch 64 --seed 9 --digest | awk '/^batch digest/ {print $3}'; }
want=$(digest mmap:m --workers 0)
ok "mmap with no workers gives a batch digest" test -n "$want"
for uri in "${stores[@]}"; do
    for w in 0 1 3; do
        ok "$uri with $w workers: the same batches" test "$(digest "$uri" --workers $w)" = "$want"
    done
done
ok "augmented batches: the same with 0 and 2 workers" \
    test "$(digest mmap:m --workers 0 --augment)" = "$(digest mmap:m --workers 2 --augment)"
ok "another seed gives other batches" test "$("$IMGSET" read mmap:m --epochs 2 --batch 64 --seed 10 --digest | awk '/^batch digest/ {print $3}')" != "$want"

# Sharding: two ranks together read every image exactly once.
ok "rank 0 and 1 of 2 cover the split" bash -c "
    a=\$('$IMGSET' read mmap:m --epochs 1 --batch 64 --rank 0 --world 2 | awk '\$1 == 0 {print \$2}')
    b=\$('$IMGSET' read mmap:m --epochs 1 --batch 64 --rank 1 --world 2 | awk '\$1 == 0 {print \$2}')
    [ \$((a + b)) -eq 700 ] && [ \$a -eq 350 ]"

ok "--json writes the documented keys" bash -c "
    '$IMGSET' read mmap:m --epochs 2 --json r.json >/dev/null &&
    for k in median_images_per_s peak_rss_mb first_batch_ms mean_wait_ms mb_per_s cache; do
        grep -q \"\\\"\$k\\\"\" r.json || exit 1; done"
ok "warm by default, and says so" bash -c "'$IMGSET' read mmap:m --epochs 1 | grep -q '^warm'"
ok "--cold says what it did or could not do" bash -c "'$IMGSET' read files:f --epochs 1 --cold | grep -qE '^cold: '"
"$IMGSET" gen --like mixed --train 30 --test 5 --out mmap:x >/dev/null
fails_with "mixed sizes without --size say so" "mixed image sizes" "$IMGSET" read mmap:x
ok "mixed sizes with --size 48" "$IMGSET" read mmap:x --size 48 --epochs 1 --batch 8

# A corrupt image in the middle of a files store: the error names the file / index.
cp -r f broken
victim=$(ls broken/train/*/*123.png | grep -E '/0*123\.png$')
echo "not a png" >"$victim"
fails_with "a corrupt PNG at index 123 is named" "123\.png" \
    "$IMGSET" read files:broken --epochs 1 --batch 64 --workers 2 --no-shuffle
fails_with "batch 0 is refused" "batch" "$IMGSET" read mmap:m --batch 0
fails_with "rank outside the world is refused" "rank 2 of world 2" "$IMGSET" read mmap:m --rank 2 --world 2
ok "read --help" bash -c "'$IMGSET' read --help | grep -q usage"
tap_done
