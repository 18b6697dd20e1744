#!/usr/bin/python3
"""torch_speed.py — the same measurement as nn_speed.c for PyTorch (CPU): images/s of
training (forward + backward + SGD with momentum) and of inference (eval, no_grad) for the
same network on random data, several timed runs, median and min-max. Prints numbers; never
fails on a time.

usage: torch_speed.py [--arch cnn-small] [--shape 3x32x32] [--classes 10] [--batch 128]
                      [--threads 2] [--runs 7] [--images 2560] [--json]
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from make_reference import ARCHS  # noqa: E402  (the same networks as the C models)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="cnn-small", choices=sorted(ARCHS))
    ap.add_argument("--shape", default="3x32x32")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--images", type=int, default=2560)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    C, H, W = (int(v) for v in a.shape.split("x"))
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    net = ARCHS[a.arch](C, H, W, a.classes)
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(a.batch, C, H, W)
    y = torch.randint(0, a.classes, (a.batch,))
    steps = a.images // a.batch
    results = {}
    for mode in ("train", "infer"):
        rates, cpu_rates = [], []
        for r in range(-1, a.runs):  # run -1 warms up
            t0, c0 = time.perf_counter(), time.process_time()
            if mode == "train":
                net.train()
                for _ in range(steps):
                    opt.zero_grad()
                    F.cross_entropy(net(x), y).backward()
                    opt.step()
            else:
                net.eval()
                with torch.no_grad():
                    for _ in range(steps):
                        net(x)
            t, c = time.perf_counter() - t0, time.process_time() - c0
            if r >= 0:
                rates.append(steps * a.batch / t)
                cpu_rates.append(steps * a.batch / c)
        rates.sort()
        cpu_rates.sort()
        results[mode] = (rates[len(rates) // 2], rates[0], rates[-1], cpu_rates[len(rates) // 2])
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0]
    if a.json:
        t, i = results["train"], results["infer"]
        print(json.dumps({"impl": "pytorch " + torch.__version__, "arch": a.arch, "shape": [C, H, W],
                          "classes": a.classes, "batch": a.batch, "threads": a.threads, "runs": a.runs,
                          "images_per_run": steps * a.batch, "train_median": round(t[0], 1),
                          "train_min": round(t[1], 1), "train_max": round(t[2], 1),
                          "infer_median": round(i[0], 1), "infer_min": round(i[1], 1),
                          "infer_max": round(i[2], 1), "train_per_cpu_second": round(t[3], 1),
                          "infer_per_cpu_second": round(i[3], 1), "cpu": cpu, "loadavg": load}))
    else:
        print(f"machine: {cpu}; PyTorch {torch.__version__}; load average {load:.2f}")
        print(f"pytorch {a.arch} {C}x{H}x{W} K={a.classes} batch {a.batch}, {a.threads} threads, "
              f"{a.runs} runs of {steps * a.batch} images:")
        for mode in ("train", "infer"):
            m, lo, hi, c = results[mode]
            print(f"  {mode}  {m:8.0f} images/s median (min {lo:.0f}, max {hi:.0f}); "
                  f"{c:.0f} images per CPU second")


if __name__ == "__main__":
    main()
