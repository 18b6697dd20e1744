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
# train_json_holds FILE EPOCHS IMAGES — the JSON has an entry per epoch whose numbers agree:
# wall >= compute + data-wait (both measured inside it), AU = compute / wall, images/s =
# images / wall, a finite loss, accuracies and macro-F1 in [0, 1].
train_json_holds() {
    "$PYTHON" - "$@" <<'EOF'
import json, math, sys
path, epochs, images = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = json.load(open(path))
assert [e["epoch"] for e in d["epochs"]] == list(range(epochs)), d["epochs"]
for e in d["epochs"]:
    wall, compute, wait = e["wall_seconds"], e["compute_seconds"], e["data_wait_seconds"]
    assert e["images"] == images, e
    assert wall > 0 and compute > 0 and wait >= 0, e
    assert wall >= compute + wait - 1e-5, ("wall < compute + data-wait", e)
    assert abs(e["au"] - compute / wall) <= 1e-5 + 1e-6 / wall, ("AU != compute / wall", e)
    assert abs(e["images_per_s"] - images / wall) <= 0.01 + images * 1e-6 / wall ** 2, e
    assert math.isfinite(e["train_loss"]) and e["train_loss"] > 0, e
    for k in ("train_accuracy", "test_accuracy", "test_macro_f1"):
        assert 0 <= e[k] <= 1, (k, e)
EOF
}
ok "the JSON has an entry per epoch, its numbers agree with each other" \
    train_json_holds run1.json 2 2000

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

ok "resnet8 trains one epoch" "$IMGSET" train mmap:c --model resnet8 --epochs 1 --batch 64 \
    --json resnet.json
ok "  its JSON: one epoch of 2,000 images, numbers that agree" train_json_holds resnet.json 1 2000
"$IMGSET" gen --like mixed --train 64 --test 16 --out mmap:m >/dev/null
fails_with "mixed sizes without --size ask for it" "--size" "$IMGSET" train mmap:m --epochs 1
ok "mixed sizes train with --size 32" "$IMGSET" train mmap:m --epochs 1 --size 32 --batch 16 \
    --json mixed.json
ok "  its JSON: one epoch of 64 images, numbers that agree" train_json_holds mixed.json 1 64

fails_with "an unknown model is named" "nosuch" "$IMGSET" train mmap:c --model nosuch
usage_error "batch 0 is a usage error" "at least 1" "$IMGSET" train mmap:c --batch 0
head -c 1000 full.ckpt > corrupt.ckpt
fails_with "a truncated checkpoint is named" "corrupt.ckpt" "$IMGSET" train mmap:c "${common[@]}" --resume corrupt.ckpt
fails_with "resuming with another seed is refused" "seed" "$IMGSET" train mmap:c --epochs 2 --batch 64 --seed 4 --resume full.ckpt
# Divergence after this run's checkpoint exists: stop at epoch 1 batch 8 (a checkpoint), then
# go on from it with a learning rate that diverges at once. The error names epoch 1 and the
# batch; the checkpoint is still the one written before, bit for bit, and resuming from it
# with the right learning rate ends with the uninterrupted run's weights.
"$IMGSET" train mmap:c "${common[@]}" --save keep.ckpt --stop-after 40 >/dev/null
cp keep.ckpt before.ckpt
fails_with "a diverging loss stops naming the epoch and batch (epoch 1, from batch 8 on)" \
    "epoch 1 batch (8|9|10): the loss is" \
    "$IMGSET" train mmap:c "${common[@]}" --resume keep.ckpt --save keep.ckpt --lr 1e30 --momentum 0
ok "the last good checkpoint is kept after divergence" cmp before.ckpt keep.ckpt
ok "  and resumes to the uninterrupted run's weights" bash -c "
    '$IMGSET' train mmap:c ${common[*]} --resume keep.ckpt --save keep.ckpt >/dev/null &&
    cmp full.ckpt keep.ckpt"
fails_with "a missing store is named" "absent" "$IMGSET" train mmap:absent
ok "train --help" bash -c "'$IMGSET' train --help | grep -q usage"

tap_done
