"""dataset.py — a map-style data set for PyTorch's DataLoader, and the data-set functions
(open, convert, generate, digest) over the C library."""
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from . import _imgset

SPLITS = ("train", "test")


def check_split(split, who):
    """Refuse a split name that is not 'train' or 'test', naming the caller."""
    if split not in SPLITS:
        raise ValueError("%s: split must be 'train' or 'test', not %r" % (who, split))


@dataclass(frozen=True)
class SplitInfo:
    """One split: its image count and shape (H, W, C), or None when sizes vary."""
    count: int
    shape: Optional[Tuple[int, int, int]]


@dataclass(frozen=True)
class DatasetInfo:
    """A data set's metadata as its store reports it."""
    uri: str
    name: str
    classes: List[str]
    splits: Dict[str, SplitInfo]


def info_from_dict(uri, d):
    """DatasetInfo from the C module's dict."""
    splits = {name: SplitInfo(s["count"], s["shape"]) for name, s in d["splits"].items()}
    return DatasetInfo(uri, d["name"], list(d["classes"]), splits)


def open(uri):
    """The metadata of the data set at `uri` (splits, counts, shapes, class names).

    Raises imgset.Error naming the file, table or value when the store cannot be read.
    """
    store = _imgset.Store(uri)
    try:
        return info_from_dict(uri, store.info())
    finally:
        store.close()


def convert(src, dst):
    """Copy every image, label and class name of the data set at URI `src` into a new store
    at URI `dst`. The destination appears only when the copy is complete; an existing one is
    refused. Ctrl-C stops the copy and leaves nothing at `dst`."""
    _imgset.convert(src, dst)


def generate(like, out, train=None, test=None, seed=1):
    """Write a synthetic, learnable data set shaped like `like` ('cifar10', 'tinyimagenet',
    'hires' or 'mixed') to URI `out`: `train` / `test` images (None: the shape's defaults);
    the same seed gives the same bytes."""
    _imgset.generate(like, out, -1 if train is None else int(train),
                     -1 if test is None else int(test), int(seed))


def digest(uri):
    """{'train': hex, 'test': hex}: each split's content digest (class names, and every image's
    shape, label and pixels in order), as `imgset verify` prints it."""
    return _imgset.digest(uri)


class Dataset:
    """A map-style data set over any store, for torch.utils.data.DataLoader.

    ds[i] is (image, label): the image an H×W×C uint8 numpy array (writable, channels-last as
    the store holds it; sizes may differ in a mixed set), the label an int; `transform` and
    `target_transform` are applied to them when given (torchvision transforms take the
    array). len(ds) is the split's image count and ds.classes the class names.

    Safe in DataLoader(num_workers > 0): each process opens its own store handle on first use
    (a handle, such as a PostgreSQL connection, never crosses a fork()), and a pickled Dataset
    carries only its URI and split.
    """

    def __init__(self, uri, split="train", transform=None, target_transform=None):
        check_split(split, "imgset.Dataset")
        self.uri = uri
        self.split = split
        self.transform = transform
        self.target_transform = target_transform
        self._store = _imgset.Store(uri)
        self._pid = os.getpid()
        self.info = info_from_dict(uri, self._store.info())
        self.classes = self.info.classes
        self._count = self.info.splits[split].count

    def _reader(self):
        """This process's store handle (a new one in a fork()ed or spawned worker)."""
        if self._store is None or self._pid != os.getpid():
            self._store = None   # the parent's handle is left to the parent
            self._store = _imgset.Store(self.uri)
            self._pid = os.getpid()
        return self._store

    def __len__(self):
        return self._count

    def __getitem__(self, index):
        import numpy

        i = int(index)
        if i < 0:
            i += self._count
        if not 0 <= i < self._count:
            raise IndexError("imgset.Dataset: index %d is out of range for the %d %s images "
                             "of %s" % (index, self._count, self.split, self.uri))
        pixels, shape, label = self._reader().read(self.split, i)
        image = numpy.frombuffer(pixels, dtype=numpy.uint8).reshape(shape)
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_store"] = None
        return state

    def close(self):
        """Close this process's store handle (reopened on the next access)."""
        if self._store is not None and self._pid == os.getpid():
            self._store.close()
        self._store = None

    def __repr__(self):
        return "imgset.Dataset(%r, split=%r): %d images, %d classes" % (
            self.uri, self.split, self._count, len(self.classes))
