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

# flag_error DESCRIPTION FLAG COMMAND... — passes when the command exits 2 with exactly one
# line on stderr, which names FLAG.
flag_error() {
    local what=$1 flag=$2; shift 2
    "$@" >"$SCRATCH/last.out" 2>"$SCRATCH/last.err"
    local rc=$? lines
    lines=$(wc -l <"$SCRATCH/last.err")
    ok "$what: exit 2, one line naming $flag (status $rc: $(head -c 150 "$SCRATCH/last.err"))" \
        bash -c "[ $rc -eq 2 ] && [ $lines -eq 1 ] && grep -q -- '$flag' '$SCRATCH/last.err'"
}
flag_error "--loss foo" --loss "$IMGSET" train mmap:c --loss foo
flag_error "--leaky-slope -1" --leaky-slope "$IMGSET" train mmap:c --activation leaky-relu --leaky-slope -1
flag_error "--leaky-slope 2" --leaky-slope "$IMGSET" train mmap:c --leaky-slope 2
flag_error "--activation swish" --activation "$IMGSET" train mmap:c --activation swish
flag_error "--activation tanh for resnet8" --activation "$IMGSET" train mmap:c --model resnet8 --activation tanh
flag_error "--normalize zscore" --normalize "$IMGSET" train mmap:c --normalize zscore
flag_error "--mean with two values for three channels" --mean "$IMGSET" train mmap:c --mean 0.5,0.4
flag_error "--std with four values for three channels" --std "$IMGSET" train mmap:c --std 0.2,0.2,0.2,0.2
flag_error "--std 0" --std "$IMGSET" train mmap:c --std 0
flag_error "--mean with --normalize minmax" --mean "$IMGSET" train mmap:c --normalize minmax --mean 0.5

# predicts_like RUN CKPT — passes when imgset predict (the trainer's threaded evaluation: same
# batch, same threads) gives CKPT's run's test accuracy exactly, predicting 3 classes or more:
# it built the same model and normalised the same way.
predicts_like() {
    local want got classes
    want=$(grep -o '"test_accuracy": [0-9.]*' "$1.json" 2>/dev/null | tail -1 | awk '{print $2}')
    "$IMGSET" predict "$2" mmap:c10k --batch 64 --threads 2 --json "$1-pred.json" >/dev/null 2>&1
    got=$(grep -o '"accuracy": [0-9.]*' "$1-pred.json" 2>/dev/null | head -1 | awk '{print $2}')
    classes=$("$PYTHON" -c "import json; print(sum(c['predicted'] > 0 for c in json.load(open('$1-pred.json'))['per_class']))" 2>/dev/null)
    ok "$1: predict gives the run's test accuracy ($got = ${want:-none}, ${classes:-no} classes predicted)" \
        test -n "$want" -a "$got" = "$want" -a "${classes:-0}" -ge 3
}

# Each loss learns well above chance (0.1) on a generated set: mlp, inputs normalised with the
# train split's own mean and std; the losses averaged over N*K entries take larger rates.
"$IMGSET" gen --like cifar10 --train 10000 --test 1000 --seed 5 --out mmap:c10k >/dev/null
for run in "cce 0.05" "bce 0.2" "mse 1" "mae 1"; do
    set -- $run
    "$IMGSET" train mmap:c10k --model mlp --epochs 5 --batch 64 --seed 3 --loss "$1" --lr "$2" \
        --mean auto --std auto --save "loss-$1.ckpt" --json "loss-$1.json" >/dev/null 2>&1
    acc=$(grep -o '"test_accuracy": [0-9.]*' "loss-$1.json" 2>/dev/null | tail -1 | awk '{print $2}')
    ok "--loss $1 (lr $2): test accuracy ${acc:-none} > 0.3" awk -v a="${acc:-0}" 'BEGIN {exit !(a > 0.3)}'
    ok "the run's JSON and its checkpoint record --loss $1" bash -c "
        grep -q '\"loss\": \"$1\"' loss-$1.json && head -c 2000 loss-$1.ckpt | grep -q '\"loss\":\"$1\"'"
    predicts_like "loss-$1" "loss-$1.ckpt"
done

# Each other activation, with other normalisations: the checkpoint records activation, loss
# (version 2) and normalisation, and predict builds and feeds the same model.
for run in "leaky-relu minmax" "tanh auto" "sigmoid 0.4,0.45,0.5"; do
    set -- $run
    norm=(--normalize "$2"); [ "$2" = auto ] && norm=(--mean auto --std auto)
    case $2 in *,*) norm=(--mean "$2" --std 0.25) ;; esac
    ok "mlp --activation $1, normalisation $2, trains" "$IMGSET" train mmap:c10k --model mlp \
        --epochs 5 --batch 64 --seed 3 --activation "$1" --leaky-slope 0.05 "${norm[@]}" \
        --save "act-$1.ckpt" --json "act-$1.json"
    ok "the checkpoint records activation $1, loss cce and normalisation $2" bash -c "
        head -c 2000 act-$1.ckpt | grep -q '\"activation\":\"$1\"' &&
        head -c 2000 act-$1.ckpt | grep -q '\"loss\":\"cce\"' &&
        head -c 2000 act-$1.ckpt | grep -q '\"version\":\"2\"' &&
        head -c 2000 act-$1.ckpt | grep -qE '\"normalize\":\"$( [ $2 = minmax ] && echo minmax || echo meanstd )\"'"
    predicts_like "act-$1" "act-$1.ckpt"
done
ok "--leaky-slope 0.05 and --mean 0.4,0.45,0.5 --std 0.25 are recorded as given, per channel" bash -c "
    head -c 2000 act-leaky-relu.ckpt | grep -q '\"leaky_slope\":\"0.0500000007\"' &&
    head -c 2000 act-sigmoid.ckpt | grep -q '\"mean\":\"\[0.400000006,0.449999988,0.5\]\"' &&
    head -c 2000 act-sigmoid.ckpt | grep -q '\"std\":\"\[0.25,0.25,0.25\]\"'"
fails_with "resuming with another activation is refused, naming both" "tanh.*the model is.*sigmoid" \
    "$IMGSET" train mmap:c10k --model mlp --epochs 6 --batch 64 --seed 3 --activation sigmoid \
    --mean auto --std auto --resume act-tanh.ckpt
ok "cnn-small trains with each other activation (conv, activation, max-pool unfused)" bash -c "
    for a in leaky-relu tanh sigmoid; do
        '$IMGSET' train mmap:tiny --epochs 1 --batch 32 --activation \$a >/dev/null || exit 1
    done"

# densenet-tiny end to end: trains on 16x16 inputs, learns, saves, predicts.
ok "densenet-tiny trains 4 epochs (16x16, auto normalisation)" "$IMGSET" train mmap:c \
    --model densenet-tiny --epochs 4 --batch 32 --seed 3 --size 16 --mean auto --std auto \
    --lr 0.1 --save dense.ckpt --json dense.json
acc=$(grep -o '"test_accuracy": [0-9.]*' dense.json | tail -1 | awk '{print $2}')
ok "densenet-tiny's test accuracy $acc is far above chance: > 0.4" awk -v a="${acc:-0}" 'BEGIN {exit !(a > 0.4)}'
"$IMGSET" predict dense.ckpt mmap:c --batch 32 --threads 2 --json dense-pred.json >/dev/null 2>&1
got=$(grep -o '"accuracy": [0-9.]*' dense-pred.json | head -1 | awk '{print $2}')
ok "densenet-tiny's checkpoint predicts with the run's accuracy ($got = $acc)" test -n "$acc" -a "$got" = "$acc"

tap_done
