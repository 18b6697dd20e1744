"""test_dataset.py — imgset.Dataset in PyTorch's own DataLoader (worker processes open their own
handles) for every file store, with torchvision transforms; imgset.open, convert, generate and
digest against the CLI."""
import os
import pickle

import support
from support import ok, tap

imgset = support.import_imgset("test_dataset.py")
import numpy  # noqa: E402
import torch  # noqa: E402
import torch.utils.data  # noqa: E402


def reference(workdir):
    """The mmap store's arrays, read by numpy (the interop contract)."""
    folder = os.path.join(workdir, "cifar10-m")
    return (numpy.load(os.path.join(folder, "train_images.npy"), mmap_mode="r"),
            numpy.load(os.path.join(folder, "train_labels.npy")))


def dataset_in_dataloader(uris, images, labels):
    for kind, uri in uris.items():
        ds = imgset.Dataset(uri)
        image, label = ds[5]
        ok(len(ds) == 700 and ds.classes[:2] == ["cls000", "cls001"] and
           image.shape == (32, 32, 3) and image.dtype == numpy.uint8 and image.flags.writeable and
           numpy.array_equal(image, images[5]) and label == labels[5] and
           numpy.array_equal(ds[-1][0], images[699]),
           "%s: ds[i] is the H×W×C uint8 image and label numpy reads" % kind)
        loader = torch.utils.data.DataLoader(ds, batch_size=50, num_workers=2, shuffle=False)
        got_images, got_labels = [], []
        for x, y in loader:
            got_images.append(x)
            got_labels.append(y)
        x, y = torch.cat(got_images), torch.cat(got_labels)
        ok(x.shape == (700, 32, 32, 3) and numpy.array_equal(x.numpy(), images) and
           numpy.array_equal(y.numpy(), labels),
           "%s: DataLoader(num_workers=2) delivers every image and label in order" % kind)
        ok(ds._store is not None and ds[0][1] == labels[0],
           "%s: the parent's handle still works after the workers" % kind)

    import torchvision.transforms as T
    ds = imgset.Dataset(uris["mmap"], transform=T.Compose([T.ToTensor(),
                                                           T.Normalize((0.5,) * 3, (0.5,) * 3)]))
    x, y = ds[3]
    want = (torch.from_numpy(images[3].copy()).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    ok(x.shape == (3, 32, 32) and float((x - want).abs().max()) < 1e-6,
       "torchvision transforms apply to the image")
    clone = pickle.loads(pickle.dumps(ds))
    ok(clone._store is None and numpy.array_equal(clone[3][0].numpy(), x.numpy()),
       "a pickled Dataset carries no handle and opens its own on first use")
    spawned = torch.utils.data.DataLoader(imgset.Dataset(uris["mmap"]), batch_size=100,
                                          num_workers=2, multiprocessing_context="spawn")
    ok(sum(int(y.sum()) for _, y in spawned) == int(labels.sum()),
       "DataLoader with spawned workers reads every label")
    try:
        ds[700]
        ok(False, "an index past the end is refused")
    except IndexError as e:
        ok("700" in str(e), "an index past the end raises IndexError: %s" % e)
    try:
        imgset.Dataset(uris["mmap"], split="validation")
        ok(False, "a bad split is refused")
    except ValueError as e:
        ok("validation" in str(e), "a bad split is refused: %s" % e)


def data_set_functions(workdir, uris):
    info = imgset.open(uris["mmap"])
    ok(info.name == "cifar10" and len(info.classes) == 10 and info.splits["train"].count == 700 and
       info.splits["test"].count == 50 and info.splits["train"].shape == (32, 32, 3),
       "open: name, classes, counts and shapes")
    mixed = "mmap:" + os.path.join(workdir, "mixed")
    imgset.generate("mixed", mixed, train=12, test=3, seed=5)
    ok(imgset.open(mixed).splits["train"].shape is None, "open: a mixed split has no one shape")
    status, out, _ = support.cli("verify", uris["mmap"])
    digest = imgset.digest(uris["mmap"])
    ok(status == 0 and digest["train"] in out and digest["test"] in out,
       "digest: the per-split digests imgset verify prints")
    copy = "hdf5:" + os.path.join(workdir, "copy.h5")
    if "hdf5" not in imgset._imgset.backends():
        copy = "files:" + os.path.join(workdir, "copy")
    imgset.convert(uris["mmap"], copy)
    ok(imgset.digest(copy) == digest, "convert: the copy has the same digests")
    try:
        imgset.convert(uris["mmap"], copy)
        ok(False, "converting onto an existing store is refused")
    except imgset.Error as e:
        ok("exist" in str(e), "converting onto an existing store is refused: %s" % e)
    cli_made = "mmap:" + os.path.join(workdir, "cli")
    support.cli("gen", "--like", "cifar10", "--train", "700", "--test", "50", "--seed", "2",
                "--out", cli_made)
    ok(imgset.digest(cli_made) == digest, "generate: the same bytes as imgset gen for the seed")
    for bad, needle in ((lambda: imgset.open("mmap:" + os.path.join(workdir, "none")), "none"),
                        (lambda: imgset.generate("huge", "mmap:" + workdir + "/x"), "huge"),
                        (lambda: imgset.Dataset("nope:x"), "nope")):
        try:
            bad()
            ok(False, "bad input is refused, naming %s" % needle)
        except imgset.Error as e:
            ok(needle in str(e), "bad input raises imgset.Error naming it: %s" % e)


def main():
    with tap.scratch_dir("imgset-pydataset-") as workdir:
        uris = support.make_stores(workdir, kinds=["files", "hdf5"])
        images, labels = reference(workdir)
        dataset_in_dataloader(uris, images, labels)
        data_set_functions(workdir, uris)
    tap.finish()


if __name__ == "__main__":   # spawned DataLoader workers import this file
    main()
