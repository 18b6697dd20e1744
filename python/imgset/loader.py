"""loader.py — imgset.Loader: batches from any store through the C loader, handed to PyTorch
(or numpy) through DLPack without a copy."""
import os
import sys

from . import _imgset
from .dataset import check_split, info_from_dict

DTYPES = ("float32", "uint8")


def dtype_name(dtype):
    """'float32' or 'uint8' for a name, a numpy dtype or a torch dtype; ValueError otherwise."""
    name = getattr(dtype, "name", None) or str(dtype)
    name = name[len("torch."):] if name.startswith("torch.") else name
    if name not in DTYPES:
        raise ValueError("imgset.Loader: dtype must be 'float32' (N, C, H, W, normalised) or "
                         "'uint8' (N, H, W, C), not %r" % (dtype,))
    return name


def env_int(name):
    """An integer environment variable, or None when unset; ValueError naming it if garbage."""
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError("imgset.Loader: the environment variable %s=%r is not an integer"
                         % (name, value)) from None


def distributed_defaults(rank, world_size):
    """(rank, world size): the arguments where given, else torch.distributed's process group
    when one is initialised, else RANK / WORLD_SIZE from the environment, else 0 / 1."""
    dist = sys.modules.get("torch.distributed")   # a process group means torch is imported
    if dist is not None and dist.is_available() and dist.is_initialized():
        group_rank, group_world = dist.get_rank(), dist.get_world_size()
    else:
        group_rank, group_world = env_int("RANK"), env_int("WORLD_SIZE")
    world_size = world_size if world_size is not None else (group_world or 1)
    rank = rank if rank is not None else (group_rank or 0)
    if not (world_size >= 1 and 0 <= rank < world_size):
        raise ValueError("imgset.Loader: rank %d of world size %d is out of range"
                         % (rank, world_size))
    return rank, world_size


def channel_values(value, name):
    """A per-channel sequence from a number or a sequence."""
    if isinstance(value, (int, float)):
        return (float(value),)
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError("imgset.Loader: %s must be a number or one number per channel, not %r"
                         % (name, value)) from None


def target_size(size):
    """(height, width) for size None (the data set's own), N or (H, W)."""
    if size is None:
        return 0, 0
    if isinstance(size, int):
        size = (size, size)
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError("imgset.Loader: size must be None, N or (H, W), not %r" % (size,)) \
            from None
    if height < 1 or width < 1:
        raise ValueError("imgset.Loader: size %dx%d is not positive" % (height, width))
    return height, width


def cuda_device_index(device):
    """(C loader device, CUDA device number or -1) for 'cpu', 'cuda' or 'cuda:N'."""
    device = str(device)
    if device == "cpu":
        return "cpu", -1
    if device == "cuda":
        return "cuda", -1
    if device.startswith("cuda:") and device[5:].isdigit():
        return "cuda", int(device[5:])
    raise ValueError("imgset.Loader: device must be 'cpu', 'cuda' or 'cuda:N', not %r"
                     % (device,))


class Loader:
    """Mini-batches of a data set in any store, as PyTorch tensors, without a copy.

    Loader(uri, split="train", batch_size=256, shuffle=True, seed=0, drop_last=False,
           size=None, augment=False, dtype="float32", mean=0.5, std=0.5, workers=2,
           rank=None, world_size=None, device="cpu")

    Iterating yields (images, labels): images float32 (N, C, H, W), normalised as
    (x / 255 - mean) / std per channel, or with dtype="uint8" the pixels (N, H, W, C); labels
    int64 (N,). They are torch tensors when torch can be imported (numpy arrays otherwise),
    on the CPU, or with device="cuda" in GPU memory (gpummap: stores are gathered on the GPU,
    others copied from pinned memory). The batches are the C loader's, byte for byte: the
    same seed gives the same batches as `imgset read` and `imgset train`, from every store,
    with any number of workers.

    `size` resizes and center-crops every image to N×N or (H, W) (needed for sets of mixed
    sizes); `augment` adds a random crop (padding 4) and horizontal flip, chosen by seed,
    epoch and image. `workers` threads prefetch batches into a ring of slots.

    Ownership: a batch's memory stays valid, and unchanged, while any tensor or view made from
    it lives. Each batch handed out is taken out of the loader's ring; when the last tensor
    viewing it dies, its DLPack deleter (which touches no Python object and may run on any
    thread) gives the memory back; GPU memory is refilled only after the kernels already
    queued on the consumer's stream have run. A caller who keeps many batches makes the pool
    grow; no batch is ever overwritten while viewed. Batches stay valid after close().

    Epochs: len(loader) is the number of batches of this rank per epoch. Each new iteration
    starts the next epoch (0, 1, 2, …); set_epoch(e) chooses the epoch of the next one, as
    with DistributedSampler. state_dict() records where the iteration is (epoch and the next
    batch); load_state_dict() resumes exactly there.

    Distributed: rank and world_size default to torch.distributed's process group when one is
    initialised, else to the RANK and WORLD_SIZE environment variables, else 0 and 1. Rank r
    takes the positions r, r + world_size, … of each epoch's permutation; with world_size > 1
    every rank gets the same number of batches (no DDP hang at the end of an epoch).

    Threads start on the first iteration, never at import or construction; the wait for the
    next batch releases the GIL. A loader made before fork() raises RuntimeError in the child
    (threads, HDF5 handles and PostgreSQL connections do not survive a fork): make one in the
    child. close() (or a with block) stops the threads and closes the store.
    """

    def __init__(self, uri, split="train", batch_size=256, shuffle=True, seed=0,
                 drop_last=False, size=None, augment=False, dtype="float32", mean=0.5,
                 std=0.5, workers=2, rank=None, world_size=None, device="cpu"):
        check_split(split, "imgset.Loader")
        self.dtype = dtype_name(dtype)
        height, width = target_size(size)
        self.rank, self.world_size = distributed_defaults(rank, world_size)
        loader_device, cuda_device = cuda_device_index(device)
        if int(seed) < 0:
            raise ValueError("imgset.Loader: seed must not be negative, not %d" % seed)
        if int(workers) < 0:
            raise ValueError("imgset.Loader: workers must not be negative, not %d" % workers)
        self.uri, self.split, self.device = uri, split, str(device)
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.drop_last = bool(drop_last)
        self._c = _imgset.Loader(
            uri, split=split, batch_size=self.batch_size, shuffle=self.shuffle, seed=self.seed,
            drop_last=self.drop_last, height=height, width=width, augment=bool(augment),
            want_float=self.dtype == "float32", mean=channel_values(mean, "mean"),
            std=channel_values(std, "std"), workers=int(workers), rank=self.rank,
            world=self.world_size, device=loader_device, cuda_device=cuda_device)
        self._next = (0, 0)     # (epoch, batch) where the next iteration starts
        self._epoch = None      # the epoch of the current (or last) iteration
        self._handed = 0        # batches of that epoch handed out so far
        self._iterator = None   # token of the live iterator; None between iterations
        self._convert = None    # torch.from_dlpack or numpy.from_dlpack, chosen on first use

    def __len__(self):
        return self._c.batches

    @property
    def epoch(self):
        """The epoch of the current (or last) iteration; None before the first."""
        return self._epoch

    @property
    def shape(self):
        """(H, W, C) of every image after resizing."""
        return self._c.shape

    @property
    def classes(self):
        """The class names, label i = classes[i]."""
        return self._c.info()["classes"]

    @property
    def info(self):
        """The data set's metadata (imgset.DatasetInfo)."""
        return info_from_dict(self.uri, self._c.info())

    @property
    def indices(self):
        """The last batch's positions in the split (int64 numpy array)."""
        import numpy

        return numpy.frombuffer(self._c.indices(), dtype=numpy.int64)

    def set_epoch(self, epoch):
        """Make the next iteration epoch `epoch` (from its first batch)."""
        if int(epoch) < 0:
            raise ValueError("imgset.Loader: epoch must not be negative, not %d" % epoch)
        self._next = (int(epoch), 0)

    def state_dict(self):
        """Where the iteration is: {'epoch', 'batch'} of the next batch to hand out, with the
        settings that fix the batches (seed, shuffle, batch size, rank, world size)."""
        if self._iterator is not None:
            epoch, batch = self._epoch, self._handed
            if batch >= len(self):
                epoch, batch = epoch + 1, 0
        else:
            epoch, batch = self._next
        return {"epoch": epoch, "batch": batch, "seed": self.seed, "shuffle": self.shuffle,
                "batch_size": self.batch_size, "rank": self.rank,
                "world_size": self.world_size}

    def load_state_dict(self, state):
        """Resume where state_dict() was taken: the next iteration starts at its batch. The
        settings that fix the batches must be the same (else ValueError naming the one)."""
        for key in ("seed", "shuffle", "batch_size", "world_size"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError("imgset.Loader.load_state_dict: the state has %s=%r, this "
                                 "loader %r" % (key, state[key], getattr(self, key)))
        epoch, batch = int(state["epoch"]), int(state["batch"])
        if epoch < 0 or not 0 <= batch <= len(self):
            raise ValueError("imgset.Loader.load_state_dict: epoch %d batch %d is out of range "
                             "(%d batches per epoch)" % (epoch, batch, len(self)))
        self._next = (epoch, batch)
        self._iterator = None

    def _converter(self):
        """torch.from_dlpack when torch imports, else numpy.from_dlpack."""
        if self._convert is None:
            try:
                import torch
                self._convert = torch.from_dlpack
            except ImportError:
                if self.device != "cpu":
                    raise RuntimeError("imgset.Loader: device=%r needs torch (numpy arrays "
                                       "live on the CPU)" % self.device) from None
                import numpy
                self._convert = numpy.from_dlpack
        return self._convert

    def __iter__(self):
        convert = self._converter()
        epoch, batch = self._next
        self._c.start_epoch(epoch, batch)
        self._next = (epoch + 1, 0)
        self._epoch, self._handed = epoch, batch
        token = self._iterator = object()
        return self._batches(token, convert, self.device != "cpu")

    def _batches(self, token, convert, cuda):
        """The epoch's batches, as long as no newer iteration replaced this one."""
        next_batch = self._c.next
        while True:
            if self._iterator is not token:
                raise RuntimeError("imgset.Loader: this iteration was replaced by a newer "
                                   "iter() of the same loader")
            got = next_batch()
            if got is None:
                self._iterator = None
                return
            self._handed += 1
            images, labels = convert(got[0]), convert(got[1])
            if cuda:
                labels = labels.to(images.device)
            yield images, labels

    def close(self):
        """Stop the worker threads and close the store (idempotent). Batches already handed
        out stay valid."""
        self._iterator = None
        self._c.close()

    @property
    def closed(self):
        return self._c.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def buffer_counts(self):
        """(kept, spare): batches still viewed by tensors or arrays, and spare buffer sets."""
        return self._c.buffer_counts()

    def __repr__(self):
        return ("imgset.Loader(%r, split=%r, batch_size=%d, rank=%d of %d, dtype=%r, "
                "device=%r): %d batches per epoch" % (
                    self.uri, self.split, self.batch_size, self.rank, self.world_size,
                    self.dtype, self.device, len(self) if not self.closed else 0))
