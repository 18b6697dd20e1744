#!/usr/bin/env bash
# demo.sh — `make demo`: a small benchmark of every store available here on every data-set
# shape and on Fashion-MNIST (Debian's dataset-fashion-mnist, imported once into build/demo)
# at reduced counts, one run, one epoch, with its own throwaway PostgreSQL cluster; prints the
# results table. `make bench` runs the full sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
fmnist=/usr/share/datasets/fashion-mnist
data=()
if [ -r "$fmnist/train-images-idx3-ubyte.gz" ]; then
    mkdir -p build/demo
    [ -f build/demo/fashion-mnist/imgset.txt ] ||
        build/imgset import idx "$fmnist"/train-images-idx3-ubyte.gz \
            "$fmnist"/train-labels-idx1-ubyte.gz "$fmnist"/t10k-images-idx3-ubyte.gz \
            "$fmnist"/t10k-labels-idx1-ubyte.gz --out mmap:build/demo/fashion-mnist
    data=(--data mmap:build/demo/fashion-mnist)
fi
exec build/imgset bench --shapes cifar10,tinyimagenet,hires,mixed "${data[@]}" \
    --scale "${DEMO_SCALE:-0.04}" --runs 1 --epochs 1 --out build/demo
