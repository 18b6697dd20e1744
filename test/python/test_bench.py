"""test_bench.py — python3 -m imgset.bench on tiny data sets (a smoke run, not a measurement):
it trains in PyTorch through each store's usual loader, through imgset.Loader and on tensors in
memory, reads through imgset.Loader next to imgset read, starts and stops its own PostgreSQL
cluster, and writes results.md/csv/json with a number in every cell this machine can run."""
import json
import os
import subprocess
import sys

import support
from support import ok, tap

imgset = support.import_imgset("test_bench.py")


def main():
    with tap.scratch_dir("imgset-pybench-") as out:
        stores = ["files", "mmap", "gpummap", "hdf5"] + \
            (["pg"] if "postgresql" in imgset._imgset.backends() else [])
        cmd = [sys.executable, "-m", "imgset.bench", "--scale", "0.004", "--runs", "1",
               "--epochs", "1", "--shapes", "cifar10", "--stores", ",".join(stores),
               "--mode", "both", "--out", out, "--device", "cpu"]
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=600, env=support.python_env(IMGSET=support.tap.IMGSET))
        ok(p.returncode == 0, "python3 -m imgset.bench --mode both on cifar10 at scale 0.004")
        if p.returncode != 0:
            print("# " + p.stdout.strip()[-2000:].replace("\n", "\n# "))
            tap.finish()
        with open(os.path.join(out, "results.json")) as f:
            results = json.load(f)
        cells = {(c["store"], c["loader"]): c for c in results["cells"]}
        want = [("memory", "tensors in memory (floor)")] + \
            [(s, n) for s in stores if s != "gpummap"
             for n in ("imgset.Loader", imgset.bench.USER_LOADERS[s])]
        ok(all(cells.get(k) and cells[k]["epoch_seconds"]["median"] > 0 and
               0 < cells[k]["au"]["median"] <= 1 for k in want),
           "an epoch time and an AU in (0, 1] for the floor and both loaders of %s"
           % ", ".join(s for s in stores if s != "gpummap"))
        ok(cells[("gpummap", "imgset.Loader")]["note"] == "n/a — no CUDA device",
           "gpummap without a GPU says n/a and why")
        read = {r["store"]: r for r in results["read"]}
        ok(all(read.get(s) and read[s]["ratio"] and read[s]["ratio"]["median"] > 0
               for s in stores if s != "gpummap"),
           "loader only: imgset.Loader and imgset read images/s side by side for every store")
        with open(os.path.join(out, "results.md")) as f:
            md = f.read()
        ok("machine: " in md and "settings: " in md and "Average epoch seconds" in md and
           "AU = compute / wall" in md and "Python / C" in md,
           "results.md has the machine and settings lines and the tables")
        with open(os.path.join(out, "results.csv")) as f:
            header = f.readline().strip()
        ok(header == "store,loader,shape,metric,median,min,max,unit,note",
           "results.csv has the documented columns")
    tap.finish()


import imgset.bench  # noqa: E402  (USER_LOADERS; imports torch, as the bench does)
main()
