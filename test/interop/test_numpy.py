#!/usr/bin/python3
"""test_numpy.py — numpy and the mmap: store read each other's files (TAP output)."""
import os
import re

import numpy as np

import tap
from tap import ok


def imgset(*args):
    """Run the CLI; return (exit status, stdout, stderr)."""
    return tap.imgset(*args, timeout=120)


def data_offset(path):
    """Where the array data starts in an .npy file (via numpy's own header reader)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        np.lib.format._read_array_header(f, version)
        return f.tell()


def load_store(d):
    """Every array of an mmap store directory, loaded by numpy with mmap_mode='r'."""
    out = {}
    for split in ("train", "test"):
        for kind in ("images", "labels", "offsets", "shapes"):
            path = os.path.join(d, "%s_%s.npy" % (split, kind))
            if os.path.exists(path):
                out[split + "_" + kind] = np.load(path, mmap_mode="r")
    with open(os.path.join(d, "classes.txt"), encoding="utf-8") as f:
        out["classes"] = f.read().splitlines()
    with open(os.path.join(d, "imgset.txt"), encoding="utf-8") as f:
        out["marker"] = f.read().splitlines()
    return out


def split_images(store, split):
    """List of (H, W, C) arrays of a split, fixed or ragged."""
    images = store[split + "_images"]
    if split + "_offsets" not in store:
        if images.ndim == 3:
            return [im[:, :, None] for im in images]
        return list(images)
    offsets, shapes = store[split + "_offsets"], store[split + "_shapes"]
    return [np.asarray(images[offsets[i]:offsets[i + 1]]).reshape(tuple(shapes[i]))
            for i in range(len(shapes))]


def write_store(d, name, classes, splits, label_dtype=np.int64):
    """Write a data set in the mmap layout with numpy: splits maps a split name to
    (list of HxWxC uint8 images, labels); fixed when every shape is equal, else ragged."""
    os.makedirs(d)
    with open(os.path.join(d, "imgset.txt"), "w", encoding="utf-8") as f:
        f.write("imgset-mmap 1\nname %s\n" % name)
    with open(os.path.join(d, "classes.txt"), "w", encoding="utf-8") as f:
        f.write("".join(c + "\n" for c in classes))
    for split, (images, labels) in splits.items():
        p = lambda kind: os.path.join(d, "%s_%s.npy" % (split, kind))
        np.save(p("labels"), np.asarray(labels, dtype=label_dtype))
        if len({im.shape for im in images}) == 1:
            np.save(p("images"), np.stack(images).astype(np.uint8))
        else:
            sizes = [im.size for im in images]
            np.save(p("images"), np.concatenate([im.ravel() for im in images]).astype(np.uint8))
            np.save(p("offsets"), np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
            np.save(p("shapes"), np.array([im.shape for im in images], dtype=np.int32))


def same_store(a, b):
    """Value-for-value equality of two store directories (labels compared as values)."""
    sa, sb = load_store(a), load_store(b)
    if sa["classes"] != sb["classes"] or sa["marker"] != sb["marker"]:
        return False
    for split in ("train", "test"):
        ia, ib = split_images(sa, split), split_images(sb, split)
        if len(ia) != len(ib) or any(x.shape != y.shape or not np.array_equal(x, y)
                                     for x, y in zip(ia, ib)):
            return False
        if not np.array_equal(np.asarray(sa[split + "_labels"], dtype=np.int64),
                              np.asarray(sb[split + "_labels"], dtype=np.int64)):
            return False
    return True


def gen_store(tmp, name, like, train, test):
    """`imgset gen --like LIKE --seed 3` into mmap:TMP/NAME, one TAP line; the directory or None."""
    d = os.path.join(tmp, name)
    rc, _, err = imgset("gen", "--like", like, "--train", str(train), "--test", str(test),
                          "--seed", "3", "--out", "mmap:" + d)
    return d if ok(rc == 0, "gen --like %s --out mmap: (%s)" % (like, err.strip())) else None


def check_generated(tmp):
    """Files written by `imgset gen --out mmap:` load in numpy and agree with `imgset info`."""
    fixed = gen_store(tmp, "gen_fixed", "cifar10", 20, 10)
    if not fixed:
        return
    s = load_store(fixed)
    ok(s["train_images"].shape == (20, 32, 32, 3) and s["train_images"].dtype == np.uint8,
       "numpy loads train_images (20, 32, 32, 3) uint8 with mmap_mode='r'")
    ok(s["test_images"].shape == (10, 32, 32, 3), "numpy loads test_images (10, 32, 32, 3)")
    ok(s["train_labels"].shape == (20,) and s["train_labels"].dtype == np.int64 and
       0 <= s["train_labels"].min() and s["train_labels"].max() < len(s["classes"]),
       "train_labels (20,) int64 within 0..%d" % (len(s["classes"]) - 1))
    ok(len(s["classes"]) == 10 and s["marker"][0] == "imgset-mmap 1",
       "classes.txt has 10 names; imgset.txt starts with the magic line")
    offsets = [data_offset(os.path.join(fixed, f)) for f in sorted(os.listdir(fixed))
               if f.endswith(".npy")]
    ok(all(o % 64 == 0 for o in offsets), "every array starts at a multiple of 64 %s" % offsets)
    ok(s["train_images"].std() > 0, "pixels are not constant")
    rc, out, err = imgset("info", "mmap:" + fixed)
    ok(rc == 0 and re.search(r"train\s+20 images, 32x32x3", out) and
       re.search(r"test\s+10 images, 32x32x3", out), "imgset info agrees with numpy's shapes")

    mixed = gen_store(tmp, "gen_mixed", "mixed", 6, 3)
    if not mixed:
        return
    s = load_store(mixed)
    off, shp, flat = s["train_offsets"], s["train_shapes"], s["train_images"]
    ok(flat.ndim == 1 and flat.dtype == np.uint8 and off.shape == (7,) and
       off.dtype == np.int64 and shp.shape == (6, 3) and shp.dtype == np.int32,
       "ragged train: flat uint8, offsets (7,) int64, shapes (6, 3) int32")
    ok(off[0] == 0 and off[-1] == flat.shape[0] and
       all(off[i + 1] - off[i] == np.prod(shp[i]) for i in range(6)),
       "offsets are consistent with shapes and end at the flat array's length")
    ok(s["test_offsets"].shape == (4,) and s["test_labels"].shape == (3,),
       "ragged test: offsets (4,), labels (3,)")


def check_numpy_written(tmp):
    """Data sets numpy writes in our layout convert to identical data sets."""
    rng = np.random.default_rng(7)
    classes = ["zero", "one", "two ü"]
    fixed = lambda n: [rng.integers(0, 256, (5, 4, 3), dtype=np.uint8) for _ in range(n)]
    sizes = lambda n: [rng.integers(0, 256, (int(rng.integers(1, 9)), int(rng.integers(1, 9)),
                                             int(rng.choice([1, 3]))), dtype=np.uint8)
                       for _ in range(n)]
    labels = lambda n: rng.integers(0, 3, n)
    cases = [
        ("fixed, int64 labels", np.int64, {"train": (fixed(7), labels(7)),
                                           "test": (fixed(3), labels(3))}),
        ("fixed, int32 labels", np.int32, {"train": (fixed(4), labels(4)),
                                           "test": (fixed(2), labels(2))}),
        ("ragged, int64 labels", np.int64, {"train": (sizes(8), labels(8)),
                                            "test": (sizes(3), labels(3))}),
        ("ragged, int32 labels", np.int32, {"train": (sizes(5), labels(5)),
                                            "test": (sizes(4), labels(4))}),
        ("fixed, uint8 labels", np.uint8, {"train": (fixed(3), labels(3)),
                                           "test": (fixed(1), labels(1))}),
    ]
    for i, (what, label_dtype, splits) in enumerate(cases):
        a, b = os.path.join(tmp, "np_a%d" % i), os.path.join(tmp, "np_b%d" % i)
        write_store(a, "np%d" % i, classes, splits, label_dtype)
        rc, out, err = imgset("convert", "mmap:" + a, "mmap:" + b)
        if ok(rc == 0, "convert a numpy-written store (%s) %s" % (what, err.strip())):
            ok(same_store(a, b), "numpy reads the converted store value for value (%s)" % what)
            rc, out, err = imgset("verify", "mmap:" + a, "mmap:" + b)
            ok(rc == 0, "imgset verify: the two stores are identical (%s)" % what)

    # '<u1' images (numpy itself writes '|u1') and (N, H, W) grey images are read too.
    a, b = os.path.join(tmp, "np_lt"), os.path.join(tmp, "np_lt_b")
    grey = [rng.integers(0, 256, (3, 2, 1), dtype=np.uint8) for _ in range(2)]
    write_store(a, "lt", classes, {"train": (grey, [0, 2]), "test": (grey[:1], [1])})
    path = os.path.join(a, "train_images.npy")
    np.save(path, np.stack(grey)[:, :, :, 0])
    raw = open(path, "rb").read()
    open(path, "wb").write(raw.replace(b"'|u1'", b"'<u1'", 1))
    rc, out, err = imgset("convert", "mmap:" + a, "mmap:" + b)
    if ok(rc == 0, "'<u1' (N, H, W) images convert (%s)" % err.strip()):
        ok(same_store(a, b), "…to (N, H, W, 1) with the same values")


def check_fortran_refused(tmp):
    """A Fortran-order file written by numpy is refused with a clear message."""
    a = os.path.join(tmp, "fortran")
    images = [np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3) + k for k in range(4)]
    write_store(a, "f", ["a", "b"], {"train": (images, [0, 1, 0, 1]),
                                     "test": (images[:2], [1, 0])})
    np.save(os.path.join(a, "train_images.npy"), np.asfortranarray(np.stack(images)))
    rc, out, err = imgset("convert", "mmap:" + a, "mmap:" + a + "_out")
    ok(rc != 0 and "Fortran-order arrays are not supported" in err and
       "train_images.npy" in err, "a Fortran-order file is refused: %s" % err.strip())
    ok(not os.path.exists(a + "_out"), "…and nothing is left at the destination")


def main():
    tap.require_cli()
    with tap.scratch_dir("imgset-numpy-") as tmp:
        check_generated(tmp)
        check_numpy_written(tmp)
        check_fortran_refused(tmp)
    tap.finish()


if __name__ == "__main__":
    main()
