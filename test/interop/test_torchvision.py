#!/usr/bin/env python3
"""test_torchvision.py — the files: store against torchvision's ImageFolder and PIL.

1. `imgset gen` of one seed to files:D and mmap:M: torchvision.datasets.ImageFolder(D/train)
   sees the pixels and labels numpy.load gives for M, value for value (samples mapped back to
   their index by file name), and its classes are D/classes.txt.
2. A tree written by PIL (PNG and JPEG; grey, RGB, RGBA, palette, grey+alpha; odd sizes)
   converted with `imgset convert files:T mmap:U`: U holds what ImageFolder(T/...) decodes,
   in ImageFolder's order (exact for PNG, within a small tolerance for JPEG).
Prints TAP.
"""
import os

import tap
from tap import ok

try:
    import numpy as np
    from PIL import Image
    from torchvision import datasets
except ImportError as e:  # Debian's python3-torchvision / python3-pil / python3-numpy
    tap.skip_all("test_torchvision", "missing Python package: %s" % e)

tap.require_cli()


def imgset(*args):
    """Run the CLI; (exit status, stderr)."""
    rc, _, err = tap.imgset(*args)
    return rc, err.strip()


def load_split(directory, split):
    """(list of HxWxC uint8 arrays, labels array) of an mmap: store's split."""
    images = np.load(os.path.join(directory, "%s_images.npy" % split), mmap_mode="r")
    labels = np.load(os.path.join(directory, "%s_labels.npy" % split))
    offsets_path = os.path.join(directory, "%s_offsets.npy" % split)
    if os.path.exists(offsets_path):  # ragged: flat bytes + offsets + (H, W, C) rows
        offsets = np.load(offsets_path)
        shapes = np.load(os.path.join(directory, "%s_shapes.npy" % split))
        out = [np.asarray(images[offsets[i]:offsets[i + 1]]).reshape(tuple(shapes[i]))
               for i in range(len(shapes))]
    else:
        out = [np.asarray(images[i]) for i in range(images.shape[0])]
    return out, labels


def as_hwc(pil_image):
    """What a store holds for an RGB PIL image: H x W x 3 uint8."""
    return np.asarray(pil_image, dtype=np.uint8)


def check_generated(work):
    d, m = os.path.join(work, "gen-files"), os.path.join(work, "gen-mmap")
    common = ["gen", "--like", "cifar10", "--train", "40", "--test", "10", "--seed", "11"]
    rc1, err1 = imgset(*common, "--out", "files:" + d)
    rc2, err2 = imgset(*common, "--out", "mmap:" + m)
    if not ok(rc1 == 0 and rc2 == 0, "gen cifar10 40/10 to files: and mmap: (%s)"
              % (err1 or err2 or "ok")):
        return
    with open(os.path.join(d, "classes.txt")) as f:
        classes = f.read().split("\n")[:-1]
    for split, count in (("train", 40), ("test", 10)):
        ds = datasets.ImageFolder(os.path.join(d, split))
        images, labels = load_split(m, split)
        ok(len(ds) == count and len(images) == count,
           "%s: ImageFolder sees %d images, mmap has %d" % (split, len(ds), len(images)))
        if split == "train":
            ok(ds.classes == classes[:len(ds.classes)] and len(ds.classes) == len(classes),
               "ImageFolder's classes are classes.txt (%d)" % len(classes))
        indices = sorted(int(os.path.basename(path)[:-4]) for path, _ in ds.samples)
        ok(indices == list(range(count)), "%s: file names are the indices 0..%d"
           % (split, count - 1))
        same_pixels = same_labels = True
        for i, (path, target) in enumerate(ds.samples):
            index = int(os.path.basename(path)[:-4])
            img, t = ds[i]
            same_pixels &= np.array_equal(as_hwc(img), images[index])
            # ImageFolder numbers only the class folders present in this split, so compare
            # class names; where every class is present the numbers must agree too.
            same_labels &= t == target and ds.classes[t] == classes[int(labels[index])]
            if len(ds.classes) == len(classes):
                same_labels &= t == int(labels[index])
        ok(same_pixels, "%s: ImageFolder's pixels equal numpy.load's, value for value" % split)
        ok(same_labels, "%s: ImageFolder's targets name the mmap labels' classes" % split)


def make_pil_tree(tree):
    """A tree of PIL-written images; returns nothing (ImageFolder re-reads it)."""
    rng = np.random.default_rng(5)

    def noise(h, w, c):
        return rng.integers(0, 256, size=(h, w, c), dtype=np.uint8)

    def smooth(h, w):
        y, x = np.mgrid[0:h, 0:w]
        return np.stack([(x * 9) % 256, (y * 7) % 256, (x + y) * 3 % 256], -1).astype(np.uint8)

    def save(path, img, **kw):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        img.save(path, **kw)

    for split, (h, w) in (("train", (13, 7)), ("test", (None, None))):
        n = 0
        for cls in ("apple", "Banana", "cherry"):
            for k in range(3):
                hh, ww = (h, w) if h else (5 + 4 * n, 31 - 3 * n)  # test: every size differs
                kind = n % 7  # each split has every kind below
                n += 1
                base = os.path.join(tree, split, cls, "img_%s_%d" % (cls, k))
                if kind == 0:
                    save(base + ".png", Image.fromarray(noise(hh, ww, 3), "RGB"))
                elif kind == 1:
                    save(base + ".png", Image.fromarray(noise(hh, ww, 1)[:, :, 0], "L"))
                elif kind == 2:
                    save(base + ".png", Image.fromarray(noise(hh, ww, 4), "RGBA"))
                elif kind == 3:
                    p = Image.fromarray(noise(hh, ww, 1)[:, :, 0] % 16, "P")
                    p.putpalette(list(rng.integers(0, 256, 48)))
                    p.info["transparency"] = 3
                    save(base + ".png", p, transparency=3)
                elif kind == 4:
                    save(base + ".png", Image.fromarray(noise(hh, ww, 2), "LA"))
                elif kind == 5:
                    save(base + ".JPG", Image.fromarray(smooth(hh, ww), "RGB"), quality=90)
                else:
                    save(base + ".jpeg", Image.fromarray(smooth(hh, ww)[:, :, 1], "L"),
                         quality=90)


def check_pil_tree(work):
    tree, out = os.path.join(work, "pil-tree"), os.path.join(work, "pil-mmap")
    make_pil_tree(tree)
    rc, err = imgset("convert", "files:" + tree, "mmap:" + out)
    if not ok(rc == 0, "convert a PIL-written tree files: -> mmap: (%s)" % (err or "ok")):
        return
    for split in ("train", "test"):
        ds = datasets.ImageFolder(os.path.join(tree, split))
        images, labels = load_split(out, split)
        ok(len(images) == len(ds) == 9, "%s: 9 images in ImageFolder and in the store" % split)
        png_exact = jpeg_close = labels_same = shapes_same = True
        worst = 0
        for i, (path, target) in enumerate(ds.samples):
            if i >= len(images):
                break
            want = as_hwc(ds[i][0])  # PIL decode + convert('RGB'), torchvision's loader
            got = images[i]
            shapes_same &= got.shape == want.shape
            labels_same &= int(labels[i]) == target
            if got.shape != want.shape:
                continue
            if path.lower().endswith(".png"):
                png_exact &= np.array_equal(got, want)
            else:
                diff = int(np.abs(got.astype(int) - want.astype(int)).max())
                worst = max(worst, diff)
                jpeg_close &= diff <= 4
        ok(shapes_same, "%s: shapes equal PIL's (%s)" % (split,
           "fixed 13x7x3" if split == "train" else "ragged"))
        ok(labels_same, "%s: labels equal ImageFolder's targets" % split)
        ok(png_exact, "%s: PNG pixels (grey, RGB, RGBA, palette, LA) equal PIL's exactly"
           % split)
        ok(jpeg_close, "%s: JPEG pixels within 4 levels of PIL's (worst %d)" % (split, worst))


def main():
    with tap.scratch_dir("imgset-interop-tv.") as work:
        check_generated(work)
        check_pil_tree(work)
    tap.finish()


main()
