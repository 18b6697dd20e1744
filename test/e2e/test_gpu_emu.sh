#!/usr/bin/env bash
# test_gpu_emu.sh — the CLI's GPU paths on the host emulation of CUDA (build/imgset_emu, see
# test/gpu/README.md): train --device cuda and its report, a GPU-trained checkpoint predicting
# on the CPU, auto choosing the device, gpummap reads, the bench training gpummap, predict on
# the GPU. Skipped, saying so, in builds without the CUDA parts. Real-GPU runs: test/gpu/run.sh.
# Also: the real binary without a GPU refuses --device cuda clearly.
set -u
. "$(dirname "$0")/tap.sh"
cd "$SCRATCH"
EMU=$(dirname "$IMGSET")/imgset_emu

# Every line says it ran on the emulation, never on a GPU.
tests=("train --device cuda" "the report names the device and has h2d columns"
       "the JSON says cuda and counts the bytes copied to the device"
       "the GPU-trained checkpoint predicts on the CPU with the training run's test accuracy"
       "--device auto chooses the (emulated) GPU"
       "gpummap and mmap --device cuda deliver the batches mmap delivers"
       "bench trains gpummap and mmap on the GPU: numbers, and host-to-device GB/s"
       "predict --device cuda: the CPU's classes, logits within 1e-4")
tests=("${tests[@]/#/[host emulation, not a GPU] }")
"$IMGSET" gen --like cifar10 --train 128 --test 64 --seed 2 --out mmap:d >/dev/null
# The real binary on a machine without a GPU: a clear error, not a crash or a CPU fallback.
if nvidia-smi >/dev/null 2>&1; then
    skip "train / predict --device cuda without a GPU name the missing device" "there is a GPU"
else
    fails_with "train --device cuda without a GPU names the missing device" "no CUDA device" \
        "$IMGSET" train mmap:d --device cuda --epochs 1
    "$IMGSET" train mmap:d --device cpu --epochs 1 --stop-after 1 --save c.ckpt >/dev/null
    fails_with "predict --device cuda without a GPU names the missing device" "no CUDA device" \
        "$IMGSET" predict c.ckpt mmap:d --device cuda
fi

if [ ! -x "$EMU" ]; then
    for t in "${tests[@]}"; do skip "$t" "this build has no CUDA parts (no build/imgset_emu)"; done
    echo "1..$TAP_N"
    exit 0
fi

ok "${tests[0]}" bash -c "'$EMU' train mmap:d --device cuda --epochs 1 --batch 32 --save g.ckpt \
    --json g.json >g.out"
ok "${tests[1]}" bash -c "grep -q '^device cuda (GPU: host emulation' g.out &&
    grep -q 'h2d s h2d GB/s\$' g.out"
ok "${tests[2]}" bash -c "grep -q '\"device\": \"cuda\"' g.json &&
    grep -q '\"h2d_bytes\": 393216}' g.json"    # 128 images of 32x32x3 bytes
acc=$(grep -o '"test_accuracy": [0-9.]*' g.json | awk '{print $2}')
ok "${tests[3]} ($acc)" bash -c "'$IMGSET' predict g.ckpt mmap:d --json p.json >/dev/null &&
    grep -q '\"accuracy\": $acc' p.json"
ok "${tests[4]}" bash -c "'$EMU' train mmap:d --epochs 1 --stop-after 1 | grep -q '^device cuda'"
digest() { "$EMU" read "$1" --device "$2" --batch 32 --workers 2 --epochs 1 --digest |
           sed -n 's/^batch digest //p'; }
host=$(digest mmap:d cpu) mapped=$(digest gpummap:d cuda) copied=$(digest mmap:d cuda)
ok "${tests[5]}" test -n "$host" -a "$host" = "$mapped" -a "$host" = "$copied"
ok "${tests[6]}" bash -c "'$EMU' bench --stores mmap,gpummap --shapes cifar10 --mode train \
    --device cuda --scale 0.004 --runs 1 --epochs 1 --batch 50 --out b >b.log 2>&1 &&
    awk '/Average epoch seconds/ {t = 1} t && /^\\| (mmap|gpummap) \\| [0-9.]+ \\|\$/ {n++}
         n == 2 {exit} END {exit n != 2}' b/results.md &&
    awk '/Host-to-device GB\\/s/ {t = 1} t && /^\\| (mmap|gpummap) \\| [0-9.]+ \\|\$/ {n++}
         n == 2 {exit} END {exit n != 2}' b/results.md && grep -q '^plot: results.png' b/results.md"
ok "${tests[7]}" bash -c "'$EMU' predict g.ckpt mmap:d --batch 16 --device cuda --json pg.json \
        >/dev/null && '$IMGSET' predict g.ckpt mmap:d --batch 16 --json pc.json >/dev/null &&
    $PYTHON -c '
import json
g, c = (json.load(open(f))[\"predictions\"] for f in (\"pg.json\", \"pc.json\"))
assert len(g) == len(c) == 64, (len(g), len(c))
assert all(a[\"class\"] == b[\"class\"] for a, b in zip(g, c))
d = max(abs(x - y) for a, b in zip(g, c) for x, y in zip(a[\"logits\"], b[\"logits\"]))
assert d <= 1e-4, d'"
echo "1..$TAP_N"
[ "$TAP_FAILED" -eq 0 ]
