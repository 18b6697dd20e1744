#!/usr/bin/python3
"""nn_vs_torch.py — the C trainer against PyTorch on the same network, side by side: runs
nn_speed and torch_speed.py alternately (so both see the same machine load), several rounds,
and prints the median images/s of each with the ratio. A benchmark: prints numbers, never
fails on a time. Other arguments are passed to both (--arch, --shape, --batch, --threads, ...).

usage: test/bench/nn_vs_torch.py [--rounds 3] [--nn-speed build/bench/nn_speed] [args...]
"""
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def main():
    args, rounds = sys.argv[1:], 3
    nn_speed = os.path.join(ROOT, "build", "bench", "nn_speed")
    while args and args[0] in ("--rounds", "--nn-speed"):
        if args[0] == "--rounds":
            rounds = int(args[1])
        else:
            nn_speed = args[1]
        args = args[2:]
    if not os.access(nn_speed, os.X_OK):
        print(f"nn_vs_torch: {nn_speed} not built", file=sys.stderr)
        return 2
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    runs = {"imgset": [], "pytorch": []}
    for _ in range(rounds):
        out = subprocess.run([nn_speed, "--json"] + args, check=True, capture_output=True, text=True)
        runs["imgset"].append(json.loads(out.stdout.strip().splitlines()[-1]))
        if have_torch:
            out = subprocess.run([sys.executable, os.path.join(HERE, "torch_speed.py"), "--json"] + args,
                                 check=True, capture_output=True, text=True)
            runs["pytorch"].append(json.loads(out.stdout.strip().splitlines()[-1]))
    first = runs["imgset"][0]
    print(f"machine: {first['cpu']}, {os.cpu_count()} CPUs; OpenBLAS core {first['blas_core']}; "
          f"load average {os.getloadavg()[0]:.2f} at the end")
    print(f"{first['arch']} {'x'.join(map(str, first['shape']))}, K={first['classes']}, batch "
          f"{first['batch']}, {first['threads']} threads; {rounds} rounds x {first['runs']} runs of "
          f"{first['images_per_run']} images, alternating; medians of the per-round medians [min-max of runs]")
    table = {}
    for impl, rs in runs.items():
        if not rs:
            print(f"  {impl:8s} not run (no python3-torch)")
            continue
        row = {}
        for mode in ("train", "infer"):
            med = statistics.median(r[mode + "_median"] for r in rs)
            lo = min(r[mode + "_min"] for r in rs)
            hi = max(r[mode + "_max"] for r in rs)
            row[mode] = med
            print(f"  {impl:8s} {mode}  {med:8.0f} images/s [{lo:.0f}-{hi:.0f}]")
        table[impl] = row
    if len(table) == 2:
        for mode in ("train", "infer"):
            print(f"  ratio    {mode}  {table['imgset'][mode] / table['pytorch'][mode]:8.2f} x PyTorch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
