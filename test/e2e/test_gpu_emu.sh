#!/usr/bin/env bash
# test_gpu_emu.sh — the CLI's GPU paths on the host emulation of CUDA (build/imgset_emu, see
# test/gpu/README.md): train --device cuda and its report, a GPU-trained checkpoint predicting
# on the CPU, auto choosing the device, gpummap reads, and the bench training gpummap.
# Skipped, saying so, in builds without the CUDA parts. Real-GPU runs: test/gpu/run.sh.
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
       "bench trains gpummap and mmap on the GPU: numbers, and host-to-device GB/s")
tests=("${tests[@]/#/[host emulation, not a GPU] }")
if [ ! -x "$EMU" ]; then
    for t in "${tests[@]}"; do skip "$t" "this build has no CUDA parts (no build/imgset_emu)"; done
    echo "1..$TAP_N"
    exit 0
fi

"$IMGSET" gen --like cifar10 --train 128 --test 64 --seed 2 --out mmap:d >/dev/null
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
ok "${tests[5]}" bash -c "
    a=\$(cd '$SCRATCH' && $(declare -f digest); EMU='$EMU'; digest mmap:d host)
    b=\$(cd '$SCRATCH' && $(declare -f digest); EMU='$EMU'; digest gpummap:d cuda)
    c=\$(cd '$SCRATCH' && $(declare -f digest); EMU='$EMU'; digest mmap:d cuda)
    [ -n \"\$a\" ] && [ \"\$a\" = \"\$b\" ] && [ \"\$a\" = \"\$c\" ]"
ok "${tests[6]}" bash -c "'$EMU' bench --stores mmap,gpummap --shapes cifar10 --mode train \
    --device cuda --scale 0.004 --runs 1 --epochs 1 --batch 50 --out b >b.log 2>&1 &&
    awk '/Average epoch seconds/ {t = 1} t && /^\\| (mmap|gpummap) \\| [0-9.]+ \\|\$/ {n++}
         n == 2 {exit} END {exit n != 2}' b/results.md &&
    awk '/Host-to-device GB\\/s/ {t = 1} t && /^\\| (mmap|gpummap) \\| [0-9.]+ \\|\$/ {n++}
         n == 2 {exit} END {exit n != 2}' b/results.md && grep -q '^plot: results.png' b/results.md"
echo "1..$TAP_N"
[ "$TAP_FAILED" -eq 0 ]
