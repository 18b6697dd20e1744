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

# Sharding (the contract in loaders/sampler.h): over 700 images every rank of world 2 and 3
# reads the same floor(700/w) images in the same number of batches, the ranks are disjoint and
# together read the whole split but its 700 mod w tail, another tail each epoch.
for w in 2 3; do
    for r in $(seq 0 $((w - 1))); do
        "$IMGSET" read mmap:m --epochs 2 --batch 64 --rank $r --world $w --ids "ids-$w-$r" >/dev/null
    done
    ok "world $w: equal images and batches per rank, disjoint, all but the 700 mod $w tail" \
        "$PYTHON" -c "
import collections, sys
w = $w
epochs = collections.defaultdict(lambda: collections.defaultdict(list))   # epoch -> rank -> batches
for r in range(w):
    for line in open('ids-%d-%d' % (w, r)):
        e, *ids = map(int, line.split())
        epochs[e][r].append(ids)
assert sorted(epochs) == [0, 1], sorted(epochs)
tails = []
for e, ranks in sorted(epochs.items()):
    counts = [sum(map(len, ranks[r])) for r in range(w)]
    batches = [len(ranks[r]) for r in range(w)]
    assert counts == [700 // w] * w, ('images per rank', e, counts)
    assert len(set(batches)) == 1, ('batches per rank', e, batches)
    seen = [i for r in range(w) for b in ranks[r] for i in b]
    assert len(seen) == len(set(seen)), ('ranks overlap', e)
    assert set(seen) <= set(range(700)), ('ids outside the split', e)
    tails.append(set(range(700)) - set(seen))
    assert len(tails[-1]) == 700 % w, ('tail', e, len(tails[-1]))
assert 700 % w == 0 or tails[0] != tails[1], ('the same tail every epoch', tails)
"
done

ok "--json: the documented keys, and values that agree with each other" bash -c "
    '$IMGSET' read mmap:m --epochs 3 --json r.json >/dev/null && '$PYTHON' -c '
import json, statistics
d = json.load(open(\"r.json\"))
for k in (\"median_images_per_s\", \"peak_rss_mb\", \"open_seconds\", \"cache\", \"image\"):
    assert k in d, k
assert d[\"image\"] == [32, 32, 3] and d[\"cold\"] is False and d[\"cache\"].startswith(\"warm\"), d
assert d[\"peak_rss_mb\"] > 0 and len(d[\"epochs\"]) == 3, d
rates = []
for e in d[\"epochs\"]:
    s = e[\"seconds\"]
    tol = 2e-3 + 5e-7 / s                   # the JSON rounds seconds to 6 decimals
    assert e[\"images\"] == 700 and s > 0, e
    assert abs(e[\"images_per_s\"] - 700 / s) <= tol * 700 / s, e
    assert abs(e[\"mb_per_s\"] - 700 * 3072 / 1e6 / s) <= tol * 700 * 3072 / 1e6 / s, e
    assert e[\"mean_wait_ms\"] >= 0 and e[\"first_batch_ms\"] > 0, e
    rates.append(e[\"images_per_s\"])
assert abs(d[\"median_images_per_s\"] - statistics.median(rates)) <= 0.1, (d, rates)
assert d[\"min_images_per_s\"] == min(rates) and d[\"max_images_per_s\"] == max(rates), d
'"
ok "warm by default, and says so" bash -c "'$IMGSET' read mmap:m --epochs 1 | grep -q '^warm'"
ok "--cold says what it did or could not do" bash -c "'$IMGSET' read files:f --epochs 1 --cold | grep -qE '^cold: '"
"$IMGSET" gen --like mixed --train 30 --test 5 --out mmap:x >/dev/null
fails_with "mixed sizes without --size say so" "mixed image sizes" "$IMGSET" read mmap:x
ok "mixed sizes with --size 48: 30 images of 48x48x3 per epoch" bash -c "
    '$IMGSET' read mmap:x --size 48 --epochs 1 --batch 8 >x.out &&
    grep -q 'image 48x48x3  4 batches/epoch' x.out && awk '\$1 == 0 {exit \$2 != 30}' x.out"

# A corrupt image in the middle of a files store: the error names the file / index.
cp -r f broken
victim=$(ls broken/train/*/*123.png | grep -E '/0*123\.png$')
echo "not a png" >"$victim"
fails_with "a corrupt PNG at index 123 is named" "123\.png" \
    "$IMGSET" read files:broken --epochs 1 --batch 64 --workers 2 --no-shuffle
usage_error "batch 0 is refused" "batch" "$IMGSET" read mmap:m --batch 0
fails_with "rank outside the world is refused" "rank 2 of world 2" "$IMGSET" read mmap:m --rank 2 --world 2
ok "read --help" bash -c "'$IMGSET' read --help | grep -q usage"
# --json writes every string through the one JSON writer: a URI with a quote and a backslash
# reads back equal (it was written unescaped once).
mkdir -p 'q"\uote' && "$IMGSET" convert mmap:m 'mmap:q"\uote/m' >/dev/null
ok "read --json escapes the URI: JSON parses it back unchanged" bash -c "
    '$IMGSET' read 'mmap:q\"\\uote/m' --epochs 1 --json q.json >/dev/null &&
    '$PYTHON' -c 'import json, sys; sys.exit(json.load(open(\"q.json\"))[\"uri\"] != sys.argv[1])' \
        'mmap:q\"\\uote/m'"
tap_done
