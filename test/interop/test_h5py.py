"""test_h5py.py — the hdf5: store and h5py read each other's files, value for value (TAP)."""
import os

import h5py
import numpy as np

import tap
from tap import ok


def imgset(*args):
    """Run the CLI; return (exit status, stdout + stderr)."""
    rc, out, _ = tap.imgset(*args, timeout=120, merge=True)
    return rc, out


def load_mmap(directory, split):
    """What `imgset convert … mmap:DIR` wrote for a split: images, labels (+ offsets, shapes)."""
    out = {}
    for part in ("images", "labels", "offsets", "shapes"):
        path = os.path.join(directory, "%s_%s.npy" % (split, part))
        if os.path.exists(path):
            out[part] = np.load(path)
    return out


def class_lines(directory):
    with open(os.path.join(directory, "classes.txt"), encoding="utf-8") as f:
        return f.read().splitlines()


def as_str(x):
    return x.decode("utf-8") if isinstance(x, bytes) else str(x)


def check_h5py_reads_ours(tmp, name, like, uri_suffix, ragged):
    """gen into hdf5:, convert to mmap:, and compare what h5py sees with numpy.load."""
    h5 = os.path.join(tmp, name + ".h5")
    mm = os.path.join(tmp, name + "-mmap")
    rc, out = imgset("gen", "--like", like, "--train", "24", "--test", "9", "--seed", "7",
                     "--out", "hdf5:" + h5 + uri_suffix)
    if not ok(rc == 0, "%s: imgset gen into hdf5 (%s)" % (name, out.strip()[-200:])):
        return
    rc, out = imgset("convert", "hdf5:" + h5, "mmap:" + mm)
    if not ok(rc == 0, "%s: imgset convert hdf5 -> mmap (%s)" % (name, out.strip()[-200:])):
        return
    with h5py.File(h5, "r") as f:
        ok(as_str(f.attrs["imgset_format"]) == "imgset-hdf5" and
           int(f.attrs["imgset_version"]) == 1 and as_str(f.attrs["name"]) == like,
           "%s: root attributes imgset_format, imgset_version, name" % name)
        names = [as_str(x) for x in f.attrs["class_names"]]
        ok(names == class_lines(mm), "%s: class_names attribute == classes.txt (%d names)"
           % (name, len(names)))
        for split in ("train", "test"):
            ref = load_mmap(mm, split)
            images = f[split + "/images"]
            labels = f[split + "/labels"]
            ok(images.dtype == np.uint8 and labels.dtype == np.int64,
               "%s: /%s/images uint8, labels int64" % (name, split))
            good = np.array_equal(images[...], ref["images"]) and \
                np.array_equal(labels[...], ref["labels"])
            if ragged:
                offsets = f[split + "/offsets"][...]
                shapes = f[split + "/shapes"][...]
                good = good and images.ndim == 1 and offsets.shape == (len(labels) + 1,) and \
                    shapes.shape == (len(labels), 3) and \
                    np.array_equal(offsets, ref["offsets"]) and \
                    np.array_equal(shapes, ref["shapes"])
                # An image cut out of the flat array by h5py alone has its shape's size.
                last = len(labels) - 1
                img = images[offsets[last]:offsets[last + 1]].reshape(shapes[last])
                good = good and img.size == int(np.prod(shapes[last]))
            else:
                good = good and images.ndim == 4 and images.shape[0] == len(labels)
            ok(good, "%s: h5py reads /%s value for value as numpy.load of the mmap copy (%d images)"
               % (name, split, len(labels)))
            if uri_suffix:
                ok(images.compression == "gzip" and images.chunks is not None,
                   "%s: /%s/images is gzip-chunked %s" % (name, split, images.chunks))
                if not ragged:
                    ok(images.chunks == (1,) + images.shape[1:],
                       "%s: one image per chunk" % name)
            else:
                ok(images.chunks is None and
                   (len(labels) == 0 or images.id.get_offset() is not None),
                   "%s: /%s/images is contiguous" % (name, split))


def check_we_read_h5py(tmp, name, build, expect_names):
    """Write a file with h5py, convert it with imgset, compare numpy.load with the arrays."""
    h5 = os.path.join(tmp, name + ".h5")
    mm = os.path.join(tmp, name + "-mmap")
    with h5py.File(h5, "w") as f:
        arrays = build(f)
    rc, out = imgset("convert", "hdf5:" + h5, "mmap:" + mm)
    if not ok(rc == 0, "%s: imgset convert h5py file -> mmap (%s)" % (name, out.strip()[-300:])):
        return
    ok(class_lines(mm) == expect_names, "%s: class names %s" % (name, class_lines(mm)[:4]))
    for split in ("train", "test"):
        ref = arrays[split]
        got = load_mmap(mm, split)
        good = np.array_equal(got["labels"], ref["labels"].astype(np.int64))
        if "offsets" in ref:
            good = good and np.array_equal(got["images"], ref["images"]) and \
                np.array_equal(got["offsets"], ref["offsets"]) and \
                np.array_equal(got["shapes"], ref["shapes"])
        else:
            images = ref["images"]
            if images.ndim == 3:       # (N,H,W) reads as one channel
                images = images[..., np.newaxis]
            good = good and np.array_equal(got["images"], images)
        ok(good, "%s: /%s read value for value (%d images)" % (name, split, len(ref["labels"])))
    rc, out = imgset("verify", "hdf5:" + h5, "mmap:" + mm)
    ok(rc == 0, "%s: imgset verify hdf5 == mmap" % name)


def fixed_split(rng, n, shape, label_dtype, k):
    return {"images": rng.integers(0, 256, size=(n,) + shape, dtype=np.uint8),
            "labels": rng.integers(0, k, size=n).astype(label_dtype)}


def writer(k, shape=(6, 7, 3), label_dtype=np.int64, names="vlen", **dataset_options):
    """A builder for check_we_read_h5py: fixed-shape splits written with the given options."""
    def build(f):
        rng = np.random.default_rng(1000 * k + len(shape))
        arrays = {"train": fixed_split(rng, 23, shape, label_dtype, k),
                  "test": fixed_split(rng, 8, shape, label_dtype, k)}
        arrays["train"]["labels"][0] = k - 1     # the largest label occurs
        for split, a in arrays.items():
            f.create_dataset(split + "/images", data=a["images"], **dataset_options)
            f.create_dataset(split + "/labels", data=a["labels"])
        if names == "vlen":
            f.attrs["class_names"] = ["class %d é" % i for i in range(k)]
        elif names == "fixed":
            f.attrs["class_names"] = np.array([("c%d" % i).encode() for i in range(k)])
        return arrays
    return build


def ragged_builder(f):
    rng = np.random.default_rng(5)
    arrays = {}
    for split, n in (("train", 11), ("test", 4)):
        shapes = np.stack([rng.integers(1, 40, size=n), rng.integers(1, 40, size=n),
                           rng.choice([1, 3], size=n)], axis=1).astype(np.int32)
        sizes = shapes.prod(axis=1)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        flat = rng.integers(0, 256, size=int(offsets[-1]), dtype=np.uint8)
        labels = rng.integers(0, 3, size=n).astype(np.int64)
        labels[0] = 2
        for part, value in (("images", flat), ("offsets", offsets), ("shapes", shapes),
                            ("labels", labels)):
            f.create_dataset(split + "/" + part, data=value)
        arrays[split] = {"images": flat, "offsets": offsets, "shapes": shapes, "labels": labels}
    f.attrs["class_names"] = ["a", "b", "c"]
    return arrays


def zeros_builder(**splits):
    """A builder of all-zero splits: split=(images shape, images dtype, number of int64 labels)."""
    def build(f):
        for split, (shape, dtype, labels) in splits.items():
            f[split + "/images"] = np.zeros(shape, dtype)
            f[split + "/labels"] = np.zeros(labels, np.int64)
    return build


def expect_refused(tmp, name, build, needle):
    h5 = os.path.join(tmp, name + ".h5")
    with h5py.File(h5, "w") as f:
        build(f)
    rc, out = imgset("convert", "hdf5:" + h5, "mmap:" + os.path.join(tmp, name + "-mmap"))
    ok(rc != 0 and needle in out and not os.path.exists(os.path.join(tmp, name + "-mmap")),
       "%s: refused with \"%s\" (%s)" % (name, needle, out.strip()[-200:]))


def main():
    tap.require_cli()
    rc, out = imgset("--help")
    if "hdf5:" not in out:
        tap.skip_all("h5py interop", "this imgset was built without HDF5")
    with tap.scratch_dir("imgset-h5py-") as tmp:
        # h5py reads what we write.
        check_h5py_reads_ours(tmp, "ours-fixed", "cifar10", "", False)
        check_h5py_reads_ours(tmp, "ours-fixed-gzip", "cifar10", "?compression=gzip", False)
        check_h5py_reads_ours(tmp, "ours-ragged", "mixed", "", True)
        check_h5py_reads_ours(tmp, "ours-ragged-gzip", "mixed", "?compression=gzip", True)

        # We read what h5py writes.
        check_we_read_h5py(tmp, "h5py-contiguous", writer(4),
                           ["class %d é" % i for i in range(4)])
        check_we_read_h5py(tmp, "h5py-chunked", writer(5, chunks=(4, 6, 7, 3)),
                           ["class %d é" % i for i in range(5)])
        check_we_read_h5py(tmp, "h5py-chunked-gzip",
                           writer(6, compression="gzip", chunks=True),
                           ["class %d é" % i for i in range(6)])
        check_we_read_h5py(tmp, "h5py-fixed-names-int32",
                           writer(3, label_dtype=np.int32, names="fixed"),
                           ["c0", "c1", "c2"])
        check_we_read_h5py(tmp, "h5py-no-names-gray-uint8",
                           writer(7, shape=(5, 9), label_dtype=np.uint8, names=None,
                                  compression="gzip", chunks=(2, 5, 9)),
                           [str(i) for i in range(7)])
        check_we_read_h5py(tmp, "h5py-ragged", ragged_builder, ["a", "b", "c"])

        # Files we must refuse, with a message naming what is wrong.
        one_test_image = ((1, 3, 3, 3), np.uint8, 1)
        for name, build, needle in (
                ("h5py-float-images",
                 zeros_builder(train=((2, 3, 3, 3), np.float32, 2), test=one_test_image),
                 "/train/images has element type float32, expected uint8"),
                ("h5py-short-labels",
                 zeros_builder(train=((10, 3, 3, 3), np.uint8, 9), test=one_test_image),
                 "/train/labels has 9 entries, /train/images has 10"),
                ("h5py-no-test", zeros_builder(train=((2, 3, 3, 3), np.uint8, 2)),
                 "no /test group")):
            expect_refused(tmp, name, build, needle)
    tap.finish()


if __name__ == "__main__":
    main()
