#!/usr/bin/env bash
# test_train.sh — imgset train: learns well above chance, is deterministic for a seed, resumes
# to identical weights, and stops cleanly on bad input or a diverging loss.
set -u
. "$(dirname "$0")/tap.sh"
cd "$SCRATCH"

"$IMGSET" gen --like cifar10 --train 4000 --test 500 --seed 5 --out mmap:big >/dev/null
ok "train 3 epochs of cnn-small on 4,000 images" \
    "$IMGSET" train mmap:big --epochs 3 --batch 64 --seed 3 --json learn.json
acc=$(grep -o '"test_accuracy": [0-9.]*' learn.json | tail -1 | awk '{print $2}')
ok "test accuracy $acc is far above chance (0.1): > 0.4" awk -v a="$acc" 'BEGIN {exit !(a > 0.4)}'

"$IMGSET" gen --like cifar10 --train 2000 --test 500 --seed 5 --out mmap:c >/dev/null
common=(--epochs 2 --batch 64 --threads 2 --workers 1 --seed 3)
ok "train 2 epochs with a checkpoint" "$IMGSET" train mmap:c "${common[@]}" --json run1.json --save full.ckpt
ok "the JSON has one entry per epoch with the documented keys" bash -c "
    [ \$(grep -c '\"epoch\":' run1.json) -eq 2 ] &&
    for k in wall_seconds data_wait_seconds compute_seconds images_per_s au train_loss \
             train_accuracy test_accuracy test_macro_f1; do grep -q \"\\\"\$k\\\"\" run1.json || exit 1; done"

"$IMGSET" gen --like cifar10 --train 64 --test 16 --seed 5 --out mmap:tiny >/dev/null
ok "train 70 short epochs with --json" "$IMGSET" train mmap:tiny --model mlp --epochs 70 \
    --batch 64 --json many.json
ok "the JSON keeps all 70 epochs (more than its first allocation)" \
    test "$(grep -c '"epoch":' many.json)" -eq 70

ok "a second run with the same seed" "$IMGSET" train mmap:c "${common[@]}" --json run2.json
losses() { grep -o '"train_loss": [0-9.e+-]*' "$1"; }
ok "the same seed gives the same losses" test "$(losses run1.json)" = "$(losses run2.json)"

ok "an interrupted run stops after 7 batches" \
    "$IMGSET" train mmap:c "${common[@]}" --save part.ckpt --stop-after 7
ok "and resumes from its checkpoint" \
    "$IMGSET" train mmap:c "${common[@]}" --save part.ckpt --resume part.ckpt
ok "interrupted + resumed ends with weights identical to the uninterrupted run" cmp full.ckpt part.ckpt

ok "resume across an epoch boundary (stop after 40 of 32-per-epoch batches)" bash -c "
    '$IMGSET' train mmap:c ${common[*]} --save edge.ckpt --stop-after 40 >/dev/null &&
    '$IMGSET' train mmap:c ${common[*]} --save edge.ckpt --resume edge.ckpt >/dev/null &&
    cmp full.ckpt edge.ckpt"

ok "resnet8 trains one epoch" "$IMGSET" train mmap:c --model resnet8 --epochs 1 --batch 64
"$IMGSET" gen --like mixed --train 64 --test 16 --out mmap:m >/dev/null
fails_with "mixed sizes without --size ask for it" "--size" "$IMGSET" train mmap:m --epochs 1
ok "mixed sizes train with --size 32" "$IMGSET" train mmap:m --epochs 1 --size 32 --batch 16

fails_with "an unknown model is named" "nosuch" "$IMGSET" train mmap:c --model nosuch
fails_with "batch 0 is a usage error" "at least 1" "$IMGSET" train mmap:c --batch 0
head -c 1000 full.ckpt > corrupt.ckpt
fails_with "a truncated checkpoint is named" "corrupt.ckpt" "$IMGSET" train mmap:c "${common[@]}" --resume corrupt.ckpt
fails_with "resuming with another seed is refused" "seed" "$IMGSET" train mmap:c --epochs 2 --batch 64 --seed 4 --resume full.ckpt
cp full.ckpt keep.ckpt
fails_with "a diverging loss stops with the epoch and batch" "epoch 0 batch [0-9]+: the loss is" \
    "$IMGSET" train mmap:c --epochs 1 --lr 1e30 --momentum 0 --save keep.ckpt
ok "the last good checkpoint is kept after divergence" cmp full.ckpt keep.ckpt
fails_with "a missing store is named" "absent" "$IMGSET" train mmap:absent
ok "train --help" bash -c "'$IMGSET' train --help | grep -q usage"

tap_done
