#!/usr/bin/env bash
# test_mpi.sh — imgset train under mpirun: 2 ranks with batch B/2 each give the losses of one
# process with batch B; a 2-rank run resumes to identical weights, and checkpoints move
# between 1 and 2 ranks; bad input stops every rank with the one rank's error, never a hang.
# Skipped, with the reason, where this build or machine has no MPI.
set -u
. "$(dirname "$0")/tap.sh"
cd "$SCRATCH"

if ! command -v mpirun >/dev/null 2>&1; then
    skip "imgset train under MPI" "no mpirun (deps.sh installs openmpi-bin)"; tap_done; exit
fi
if ! ldd "$IMGSET" 2>/dev/null | grep -q libmpi; then
    skip "imgset train under MPI" "this imgset was built without MPI (no mpicc, or NO_MPI=1)"; tap_done; exit
fi
# Open MPI refuses root unless told; the machine may have fewer cores than ranks.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN=(timeout 120 mpirun --oversubscribe)

# 512 training images: every rank's shard is whole batches for 1, 2 (and 4) ranks.
"$IMGSET" gen --like cifar10 --train 512 --test 64 --seed 5 --out mmap:d >/dev/null
common=(--model cnn-small --epochs 2 --batch 32 --seed 3 --workers 1)

ok "1 process, batch 32" "$IMGSET" train mmap:d "${common[@]}" --threads 2 --json one.json --save one.ckpt
ok "mpirun -np 2, batch 32 (16 per rank)" bash -c "${MPIRUN[*]} -np 2 '$IMGSET' train mmap:d \
    ${common[*]} --threads 1 --json two.json --save two.ckpt >two.out"
losses() { grep -o '"train_loss": [0-9.e+-]*' "$1" | awk '{print $2}'; }
# close A B — every epoch's loss of A within 1e-4 (relative) of B's.
close() {
    paste <(losses "$1") <(losses "$2") | awk 'NF == 2 { n++; d = $1 - $2; if (d < 0) d = -d;
        if (d > 1e-4 * ($1 > 1 ? $1 : 1)) { print "epoch " n - 1 ": " $1 " vs " $2; bad = 1 } }
        END { exit bad || n == 0 }'
}
ok "2 ranks give the 1-process losses (within 1e-4; the gradient is summed in another order)" \
    close one.json two.json
ok "the JSON says 2 ranks and times the allreduce" \
    bash -c "grep -q '\"ranks\": 2' two.json && grep -q '\"allreduce_seconds\"' two.json"
ok "only rank 0 prints: one table" test "$(grep -c '^epoch ' two.out)" -eq 1

ok "a 2-rank run stops after 5 batches" \
    "${MPIRUN[@]}" -np 2 "$IMGSET" train mmap:d "${common[@]}" --threads 1 --stop-after 5 --save part.ckpt
cp part.ckpt part1.ckpt
ok "and resumes with 2 ranks" \
    "${MPIRUN[@]}" -np 2 "$IMGSET" train mmap:d "${common[@]}" --threads 1 --resume part.ckpt --save part.ckpt
ok "interrupted + resumed with 2 ranks ends with the uninterrupted 2-rank weights" cmp two.ckpt part.ckpt
ok "the 2-rank checkpoint resumes in 1 process" \
    "$IMGSET" train mmap:d "${common[@]}" --threads 2 --resume part1.ckpt --json from2.json
ok "whose last epoch's loss is the 2-rank run's" \
    close <(grep '"epoch": 1' from2.json) <(grep '"epoch": 1' two.json)
ok "a 1-process run stops after 5 batches" \
    "$IMGSET" train mmap:d "${common[@]}" --threads 2 --stop-after 5 --save solo.ckpt
ok "and resumes with 2 ranks" \
    "${MPIRUN[@]}" -np 2 "$IMGSET" train mmap:d "${common[@]}" --threads 1 --resume solo.ckpt --json from1.json
ok "whose last epoch's loss is the 1-process run's" \
    close <(grep '"epoch": 1' from1.json) <(grep '"epoch": 1' one.json)

usage_error "-np 3 with batch 32 is a usage error naming both numbers" \
    "batch 32 is not divisible by the 3 ranks" \
    "${MPIRUN[@]}" -np 3 "$IMGSET" train mmap:d "${common[@]}" --threads 1
ok "which every rank reports once, rank 0 alone" test "$(grep -c 'not divisible' "$SCRATCH/last.err")" -eq 1
fails_with "rank 1 failing to open its store stops every rank with its error (no hang)" \
    "rank 1: mmap:absent" \
    "${MPIRUN[@]}" -np 1 "$IMGSET" train mmap:d "${common[@]}" --threads 1 : \
                   -np 1 "$IMGSET" train mmap:absent "${common[@]}" --threads 1
fails_with "ranks started with other options are refused" "other training options than rank 0" \
    "${MPIRUN[@]}" -np 1 "$IMGSET" train mmap:d "${common[@]}" --threads 1 : \
                   -np 1 "$IMGSET" train mmap:d "${common[@]}" --threads 1 --lr 0.1
fails_with "a diverging loss stops every rank, naming the epoch and batch" \
    "rank [01]: epoch 0 batch [0-9]+: the loss is" \
    "${MPIRUN[@]}" -np 2 "$IMGSET" train mmap:d "${common[@]}" --threads 1 --lr 1e30 --momentum 0
fails_with "--device cuda with 2 ranks is refused" "not supported" \
    "${MPIRUN[@]}" -np 2 "$IMGSET" train mmap:d "${common[@]}" --threads 1 --device cuda

tap_done
