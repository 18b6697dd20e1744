#!/usr/bin/python3
"""test_stats.py — `imgset stats` against numpy on the same files.

For a 3-channel set (generated, cifar10-like), a ragged one (mixed sizes) and a 1-channel one
(written here by numpy) in the mmap store, and the 3-channel one copied into hdf5 and files:
every split's per-channel min and max (exactly), mean and population std of x/255 (to 1e-8:
the JSON prints 9 digits) must equal numpy's on the .npy files themselves. A bad split exits 2
naming --split. `imgset train --normalize minmax` and `--mean auto --std auto` record what
numpy finds for a set whose pixels span 2..249. Prints TAP.
"""
import json
import os
import struct

import numpy as np

import tap
from tap import ok

if not os.access(tap.IMGSET, os.X_OK):
    tap.skip_all("test_stats", "imgset CLI not built (%s)" % tap.IMGSET)


def numpy_stats(d, split):
    """[(min, max, mean, std)] per channel of the split's pixels, from the .npy files."""
    images = np.load(os.path.join(d, split + "_images.npy"), mmap_mode="r")
    shapes_path = os.path.join(d, split + "_shapes.npy")
    if os.path.exists(shapes_path):   # ragged: flat pixels, every image H x W x C
        channels = int(np.load(shapes_path)[0][2])
        pixels = np.asarray(images).reshape(-1, channels)
    else:
        pixels = np.asarray(images).reshape(-1, images.shape[3] if images.ndim == 4 else 1)
    x = pixels.astype(np.float64) / 255.0
    return [(int(pixels[:, c].min()), int(pixels[:, c].max()), float(x[:, c].mean()),
             float(x[:, c].std())) for c in range(pixels.shape[1])]


def stats(uri, split):
    """imgset stats --json - of one split: (exit status, parsed JSON or None, stderr)."""
    rc, out, err = tap.imgset("stats", uri, "--split", split, "--json", "-", timeout=300)
    try:
        return rc, json.loads(out), err
    except ValueError:
        return rc, None, err


def check(name, uri, d):
    for split in ("train", "test"):
        rc, got, err = stats(uri, split)
        want = numpy_stats(d, split)
        good = rc == 0 and got is not None and len(got["channels"]) == len(want)
        worst = 0.0
        for c, (lo, hi, mean, std) in enumerate(want if good else []):
            g = got["channels"][c]
            good &= g["min"] == lo and g["max"] == hi
            worst = max(worst, abs(g["mean"] - mean), abs(g["std"] - std))
        good &= worst <= 1e-8   # the JSON prints 9 significant digits
        ok(good, "%s %s (%s): min, max, mean, std of %d channel(s) = numpy's (largest difference "
           "%.2g)%s" % (name, split, uri.split(":")[0], len(want), worst,
                        "" if rc == 0 else ": " + err.strip()))


def read_metadata(path):
    """The __metadata__ of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))["__metadata__"]


def write_gray(d, n_train, n_test):
    """A 1-channel fixed-size set in the mmap layout, written by numpy."""
    rng = np.random.default_rng(7)
    os.makedirs(d)
    with open(os.path.join(d, "imgset.txt"), "w") as f:
        f.write("imgset-mmap 1\nname gray\n")
    with open(os.path.join(d, "classes.txt"), "w") as f:
        f.write("a\nb\n")
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(3, 250, size=(n, 9, 7, 1), dtype=np.uint8)
        images[0, 0, 0, 0] = 2   # the extremes are where numpy must find them too
        np.save(os.path.join(d, split + "_images.npy"), images)
        np.save(os.path.join(d, split + "_labels.npy"), (np.arange(n) % 2).astype(np.int64))


def main():
    with tap.scratch_dir("imgset-stats-") as tmp:
        sets = {}
        for like, counts in (("cifar10", ("300", "50")), ("mixed", ("40", "10"))):
            d = os.path.join(tmp, like)
            rc, _, err = tap.imgset("gen", "--like", like, "--train", counts[0], "--test",
                                    counts[1], "--seed", "9", "--out", "mmap:" + d)
            if ok(rc == 0, "generate a %s set into mmap %s" % (like, err.strip())):
                sets[like] = d
        gray = os.path.join(tmp, "gray")
        write_gray(gray, 120, 30)
        sets["gray"] = gray
        for name, d in sets.items():
            check(name, "mmap:" + d, d)
        for store in ("hdf5", "files"):
            uri = "%s:%s" % (store, os.path.join(tmp, "cifar10." + store))
            rc, _, err = tap.imgset("convert", "mmap:" + sets.get("cifar10", "x"), uri)
            if ok(rc == 0, "convert cifar10 into %s %s" % (store, err.strip())):
                check("cifar10", uri, sets["cifar10"])
        # train's --normalize minmax and --mean/--std auto take these statistics
        (lo, hi, mean, std), = numpy_stats(gray, "train")
        for options, want_mean, want_std in (
                (["--normalize", "minmax"], (lo + hi) / 2 / 255, (hi - lo) / 2 / 255),
                (["--mean", "auto", "--std", "auto"], mean, std)):
            ckpt = os.path.join(tmp, "gray.ckpt")
            rc, _, err = tap.imgset("train", "mmap:" + gray, "--model", "mlp", "--epochs", "1",
                                    "--batch", "40", "--save", ckpt, *options)
            meta = read_metadata(ckpt) if rc == 0 else {}
            got_mean = json.loads(meta.get("mean", "[0]"))[0]
            got_std = json.loads(meta.get("std", "[0]"))[0]
            ok(rc == 0 and np.float32(want_mean) == np.float32(got_mean) and
               np.float32(want_std) == np.float32(got_std),
               "train %s on pixels %d..%d records mean %.9g, std %.9g (numpy: %.9g, %.9g) %s"
               % (" ".join(options), lo, hi, got_mean, got_std, want_mean, want_std, err.strip()))
        rc, _, err = tap.imgset("stats", "mmap:" + gray, "--split", "validation")
        ok(rc == 2 and "--split" in err and len(err.strip().splitlines()) == 1,
           "an unknown split exits 2 naming --split: %s" % err.strip())
        rc, _, err = tap.imgset("stats", "mmap:" + os.path.join(tmp, "absent"))
        ok(rc == 1 and "absent" in err, "a missing store exits 1 naming it: %s" % err.strip())
    tap.finish()


if __name__ == "__main__":
    main()
