"""python_cuda.py — the Python package's CUDA path on a machine with an NVIDIA GPU (run by
test/gpu/run.sh with a python whose torch has CUDA, the imgset package on PYTHONPATH):

1. imgset.Loader(device="cuda") hands out CUDA tensors on the current device whose bytes are
   the CPU loader's, for gpummap (gathered on the GPU) and mmap (pinned slots + copies), uint8
   and float32; kept CUDA batches stay unchanged while another epoch goes through the ring,
   and all come back when dropped;
2. loader only: imgset.Loader(device="cuda") images/s from Python next to `imgset read
   --device cuda` (batch 256, 4 workers, float32), median (min–max) of 3 epochs;
3. training cnn-small on the GPU: `python3 -m imgset.bench --device cuda` through mmap and
   gpummap against tensors already on the GPU.

usage: python_cuda.py DATA_DIR IMGSET_CLI OUT_DIR [--device cuda|cpu]
(--device cpu runs the same code on the CPU, to check the script without a GPU.)
Prints TAP-like lines and the tables; exits non-zero when a check failed.
"""
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import imgset

failed = []


def check(cond, what):
    print(("ok - " if cond else "not ok - ") + what, flush=True)
    if not cond:
        failed.append(what)


def same_batches(uri, device, dtype, batches=20):
    """The first batches on `device` equal the CPU loader's, with the right device fields."""
    host = imgset.Loader(uri.replace("gpummap:", "mmap:"), batch_size=256, seed=3, dtype=dtype,
                         workers=2)
    dev = imgset.Loader(uri, batch_size=256, seed=3, dtype=dtype, workers=2, device=device)
    good = fields = 0
    for n, ((x, y), (gx, gy)) in enumerate(zip(host, dev)):
        if n == batches:
            break
        fields += (gx.device.type == device and gx.dtype == x.dtype and gx.shape == x.shape and
                   gy.device.type == device and gx.is_contiguous())
        good += torch.equal(gx.cpu(), x) and torch.equal(gy.cpu(), y)
    check(fields == good == batches, "%s %s on %s: %d batches with the device fields right, %d "
          "equal to the CPU loader's" % (uri.split(":")[0], dtype, device, fields, good))
    host.close()
    dev.close()


def drain(loader):
    """Read one epoch, keeping nothing."""
    for _ in loader:
        pass


def kept_batches(uri, device):
    loader = imgset.Loader(uri, batch_size=256, seed=4, dtype="uint8", workers=4, device=device)
    kept = [batch for _, batch in zip(range(20), loader)]
    copies = [images.clone() for images, _ in kept]
    drain(loader)
    check(all(torch.equal(k[0], c) for k, c in zip(kept, copies)),
          "%s: 20 kept batches unchanged after another epoch through the ring" % uri)
    del kept, copies
    gc.collect()
    check(loader.buffer_counts()[0] == 0, "%s: every kept batch given back" % uri)
    loader.close()


def read_rates(uri, device, cli, epochs=3):
    """(Python images/s per epoch, C images/s per epoch), batch 256, 4 workers, float32."""
    loader = imgset.Loader(uri, batch_size=256, seed=1, workers=4, device=device)
    py = []
    for epoch in range(epochs + 1):
        start, n = time.perf_counter(), 0
        for _, labels in loader:
            n += labels.shape[0]
        if device == "cuda":
            torch.cuda.synchronize()
        if epoch:
            py.append(n / (time.perf_counter() - start))
    loader.close()
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([cli, "read", uri, "--batch", "256", "--workers", "4", "--float",
                        "--epochs", str(epochs), "--device", "cuda" if device == "cuda" else "host",
                        "--json", f.name], check=True, stdout=subprocess.DEVNULL)
        c = [e["images_per_s"] for e in json.load(open(f.name))["epochs"]]
    return py, c


def spread(rates):
    return "%.0f (%.0f–%.0f)" % (statistics.median(rates), min(rates), max(rates))


def main():
    data, cli, out = sys.argv[1:4]
    device = sys.argv[5] if len(sys.argv) > 5 and sys.argv[4] == "--device" else "cuda"
    print("torch %s, CUDA %s, device %s" % (torch.__version__, torch.version.cuda,
          torch.cuda.get_device_name(0) if device == "cuda" else "cpu (dry run)"), flush=True)
    folder = os.path.join(data, "cifar10")
    schemes = ("gpummap", "mmap") if device == "cuda" else ("mmap",)
    for scheme in schemes:
        for dtype in ("uint8", "float32"):
            same_batches("%s:%s" % (scheme, folder), device, dtype)
    kept_batches("%s:%s" % (schemes[0], folder), device)
    rows = []
    for scheme in schemes:
        py, c = read_rates("%s:%s" % (scheme, folder), device, cli)
        rows.append("%-8s %-26s %-26s %.3f" % (scheme, spread(py), spread(c),
                                                statistics.median(py) / statistics.median(c)))
    print("\nLoader only, cifar10, batch 256, 4 workers, float32, device %s (images/s):" % device)
    print("%-8s %-26s %-26s %s" % ("store", "imgset.Loader (Python)", "imgset read (C)", "Py/C"))
    print("\n".join(rows), flush=True)
    bench = subprocess.run([sys.executable, "-m", "imgset.bench", "--device", device, "--stores",
                            "mmap,gpummap" if device == "cuda" else "mmap", "--shapes", "cifar10",
                            "--scale", "0.2", "--runs", "2", "--epochs", "2", "--batch", "256",
                            "--workers", "4", "--out", os.path.join(out, "bench-torch")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(bench.stdout[bench.stdout.find("## Average"):] if bench.returncode == 0
          else bench.stdout[-3000:], flush=True)
    check(bench.returncode == 0, "python3 -m imgset.bench --device %s" % device)
    print("%d failure(s)" % len(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
