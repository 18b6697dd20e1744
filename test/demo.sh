#!/usr/bin/env bash
# demo.sh — `make demo`: a small benchmark of every store available here on every data-set
# shape (reduced counts, one run, one epoch), with its own throwaway PostgreSQL cluster; prints
# the results table. `make bench` runs the full sizes.
set -euo pipefail
cd "$(dirname "$0")/.."
exec build/imgset bench --scale "${DEMO_SCALE:-0.04}" --runs 1 --epochs 1 --out build/demo
