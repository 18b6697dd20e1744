"""imgset — image-classification data sets in files, mmap, HDF5, PostgreSQL or GPU memory,
read into PyTorch without a copy.

    import imgset

    loader = imgset.Loader("mmap:data/cifar10", batch_size=256, shuffle=True, seed=0)
    for epoch in range(10):
        for images, labels in loader:   # float32 (N, C, H, W) and int64 (N,) torch tensors
            ...

- imgset.Loader: batches from any store URI (files:, mmap:, hdf5:, postgresql://…?dataset=,
  gpummap:) through the C loader, handed over through DLPack without a copy; len(),
  set_epoch(), state_dict() / load_state_dict(), sharding by rank for DDP.
- imgset.Dataset: a map-style data set (ds[i] -> (H×W×C uint8 array, label)) for PyTorch's
  own DataLoader and torchvision transforms.
- imgset.open(uri): a data set's metadata; imgset.convert(src, dst), imgset.generate(like,
  out), imgset.digest(uri) over the same C code as the imgset command.
- imgset.pg: imgtensor values as numpy arrays through psycopg 3 and psycopg2 (imported on
  first use, so that `import imgset` does not import a database driver).

Nothing here starts a thread or imports torch at import time.
"""
import importlib

from ._imgset import Error
from .dataset import Dataset, DatasetInfo, SplitInfo, convert, digest, generate, open
from .loader import Loader

__all__ = ["Loader", "Dataset", "DatasetInfo", "SplitInfo", "Error", "open", "convert",
           "generate", "digest"]


def __getattr__(name):
    """imgset.pg on first use (it imports the database driver)."""
    if name == "pg":
        return importlib.import_module(".pg", __name__)
    raise AttributeError("module 'imgset' has no attribute %r" % name)
