"""test_loader.py — imgset.Loader: the DLPack contract, the ownership rule, the C loader's
batches byte for byte (digest equal to `imgset read --digest` in every file store), sharding
for world 1–3, epochs and resume, fork, threads and torch not started at import, bad input,
no RSS growth over 20 epochs."""
import gc
import os
import queue
import threading

import support
from support import ok, tap

imgset = support.import_imgset("test_loader.py")
import numpy  # noqa: E402
import torch  # noqa: E402
from imgset import _imgset  # noqa: E402


def drain(loader):
    """Iterate one epoch, keeping nothing; the number of batches."""
    return sum(1 for _ in loader)


def dlpack_contract(uri):
    """Shape, dtype, strides, device and shared memory of the arrays and of their tensors."""
    c = _imgset.Loader(uri, batch_size=64, want_float=True, workers=1)
    images, labels = c.next()
    ok(images.shape == (64, 3, 32, 32) and images.dtype == "float32" and
       labels.shape == (64,) and labels.dtype == "int64",
       "BatchArrays: float32 (N, C, H, W) images, int64 (N,) labels")
    ok(images.__dlpack_device__() == (1, 0) and labels.__dlpack_device__() == (1, 0),
       "DLPack device (1, 0): the CPU")
    t1, t2 = torch.from_dlpack(images), torch.from_dlpack(images)
    n1 = numpy.from_dlpack(images)
    ok(t1.data_ptr() == t2.data_ptr() == images.data_ptr == n1.ctypes.data,
       "two torch tensors and a numpy array view the same memory (no copy)")
    ok(t1.shape == (64, 3, 32, 32) and t1.dtype == torch.float32 and t1.is_contiguous() and
       t1.stride() == (3 * 32 * 32, 32 * 32, 32, 1) and t1.device.type == "cpu",
       "torch tensor: shape, dtype, C-order strides, device")
    y = torch.from_dlpack(labels)
    ok(y.dtype == torch.int64 and y.shape == (64,) and int(y.min()) >= 0 and int(y.max()) < 10,
       "labels: int64 within the class count")
    t1[0, 0, 0, 0] = 123.0
    ok(float(t2[0, 0, 0, 0]) == 123.0 and float(n1[0, 0, 0, 0]) == 123.0,
       "a write through one view shows in the others (shared memory)")
    capsule = images.__dlpack__()
    del capsule
    try:
        images.__dlpack__(copy=True)
        ok(False, "__dlpack__(copy=True) is refused")
    except BufferError as e:
        ok("copy" in str(e), "__dlpack__(copy=True) is refused: %s" % e)
    del images, labels, t1, t2, n1, y
    gc.collect()
    ok(c.buffer_counts()[0] == 0, "an unconsumed capsule and every view dropped: no batch kept")

    c = _imgset.Loader(uri, batch_size=64, workers=0)
    images, _ = c.next()
    t = torch.from_dlpack(images)
    ok(t.shape == (64, 32, 32, 3) and t.dtype == torch.uint8 and
       t.stride() == (32 * 32 * 3, 32 * 3, 3, 1), "uint8 images: (N, H, W, C), C-order strides")
    c.close()


def ownership(uri):
    """More batches kept than the ring has slots: unchanged, all back after del, deleters on
    another thread, tensors valid after close()."""
    loader = imgset.Loader(uri, batch_size=32, seed=5, dtype="uint8", workers=2)   # 4 slots
    kept = list(loader)
    copies = [(images.clone(), labels.clone()) for images, labels in kept]
    drain(loader)   # another epoch through the ring
    ok(len(kept) == 22 and loader.buffer_counts()[0] == 22,
       "22 batches kept with a ring of 4 slots: the pool grew to hold them")
    ok(all(torch.equal(a, b) and torch.equal(x, y) for (a, x), (b, y) in zip(kept, copies)),
       "every kept batch is unchanged after another epoch went through the ring")
    views = [images[3:5] for images, _ in kept[:3]]
    del kept[:3]
    gc.collect()
    ok(loader.buffer_counts()[0] == 22 and
       all(torch.equal(v, c[0][3:5]) for v, c in zip(views, copies)),
       "a slice keeps its batch alive after the tensor it came from is gone")
    del views
    gc.collect()
    ok(loader.buffer_counts()[0] == 19, "dropping the slices gives their batches back")

    handoff = queue.Queue()

    def drop_them():
        batch = handoff.get()
        del batch[:]   # the last references die on this thread: the deleters run here

    thread = threading.Thread(target=drop_them)
    thread.start()
    handoff.put(kept)
    thread.join()
    del kept
    gc.collect()
    ok(loader.buffer_counts()[0] == 0, "deleters run on another thread: every batch is back")

    held = list(loader)[:5]
    before = [images.clone() for images, _ in held]
    loader.close()
    ok(all(torch.equal(b[0], c) for b, c in zip(held, before)),
       "batches stay valid and unchanged after close() (released afterwards)")


def digests(uris):
    """The batch sequence is the C loader's: the digest of `imgset read --digest`."""
    for kind, uri in uris.items():
        want = support.cli_digest(uri, "--epochs", "2", "--batch", "64", "--seed", "9")
        for workers in (0, 2):
            loader = imgset.Loader(uri, batch_size=64, seed=9, dtype="uint8", workers=workers)
            got = support.loader_digest(loader, 2)
            ok(want is not None and got == want,
               "%s, %d workers: the digest of 2 epochs equals imgset read --digest (%s)"
               % (kind, workers, got))
    uri = uris["mmap"]
    want = support.cli_digest(uri, "--epochs", "1", "--batch", "50", "--seed", "3", "--augment",
                              "--no-shuffle", "--drop-last")
    loader = imgset.Loader(uri, batch_size=50, seed=3, augment=True, shuffle=False,
                           drop_last=True, dtype="uint8")
    ok(want and support.loader_digest(loader, 1) == want and len(loader) == 14,
       "augment, no shuffle, drop_last: the CLI's batches")

    uint8 = imgset.Loader(uri, batch_size=64, seed=1, dtype="uint8", workers=0)
    floats = imgset.Loader(uri, batch_size=64, seed=1, mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3),
                           workers=0)
    worst = 0.0
    for (p, _), (f, _) in zip(uint8, floats):
        mean = torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)
        std = torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
        want = (p.permute(0, 3, 1, 2).float() / 255 - mean) / std
        worst = max(worst, float((want - f).abs().max()))
    ok(worst < 1e-5, "float32 batches are (x / 255 - mean) / std of the uint8 ones, per "
                     "channel, channels-first (max difference %.2g)" % worst)


def mixed_sizes(workdir):
    uri = "mmap:" + os.path.join(workdir, "mixed")
    imgset.generate("mixed", uri, train=40, test=5, seed=3)
    try:
        imgset.Loader(uri)
        ok(False, "mixed sizes without size= are refused")
    except imgset.Error as e:
        ok("mixed image sizes" in str(e), "mixed sizes without size= are refused: %s" % e)
    want = support.cli_digest(uri, "--size", "24x40", "--epochs", "1", "--batch", "8")
    loader = imgset.Loader(uri, size=(24, 40), batch_size=8, seed=1, dtype="uint8")
    got = support.loader_digest(loader, 1)
    ok(want and got == want and loader.shape == (24, 40, 3),
       "size=(24, 40) on mixed sizes: the CLI's --size 24x40 batches")


def sharding(uri, count):
    """World 1–3: equal len() on every rank, disjoint shards, and the ranks' batch b together
    are the single-process batch b of world × batch size."""
    for world in (1, 2, 3):
        for drop_last in (False, True):
            loaders = [imgset.Loader(uri, batch_size=32, seed=4, rank=r, world_size=world,
                                     drop_last=drop_last, dtype="uint8", workers=1)
                       for r in range(world)]
            lengths = {len(loader) for loader in loaders}
            seen, per_batch = [], []
            for loader in loaders:
                mine = []
                for _ in loader:
                    mine.append(set(loader.indices.tolist()))
                per_batch.append(mine)
                seen += [i for batch in mine for i in batch]
            covered = count if world == 1 else count // world * world
            ok(len(lengths) == 1 and len(seen) == len(set(seen)) and
               (len(seen) == covered or drop_last),
               "world %d%s: every rank has %s batches; shards disjoint, %d of %d images"
               % (world, ", drop_last" if drop_last else "", lengths, len(seen), count))
            if world > 1 and not drop_last:
                single = imgset.Loader(uri, batch_size=32 * world, seed=4, dtype="uint8",
                                       workers=1)
                union_ok = True
                for b, _ in enumerate(single):
                    if b < len(per_batch[0]) and len(per_batch[0][b]) == 32:
                        union = set().union(*(ranks[b] for ranks in per_batch))
                        union_ok &= union == set(single.indices.tolist())
                ok(union_ok, "world %d: the ranks' full batch b together are the single-process "
                             "batch b of %d" % (world, 32 * world))
    short = [imgset.Loader(uri, split="test", batch_size=16, seed=4, rank=r, world_size=3)
             for r in range(3)]
    ok(len({len(loader) for loader in short}) == 1 and
       len({drain(loader) for loader in short}) == 1,
       "50 images, world 3, batch 16: every rank iterates the same number of batches (%s)"
       % [len(loader) for loader in short])
    env = dict(os.environ)
    try:
        os.environ.update(RANK="1", WORLD_SIZE="3")
        loader = imgset.Loader(uri, batch_size=32)
        ok(loader.rank == 1 and loader.world_size == 3,
           "rank and world size from RANK / WORLD_SIZE")
        os.environ["WORLD_SIZE"] = "two"
        try:
            imgset.Loader(uri)
            ok(False, "a garbage WORLD_SIZE is refused")
        except ValueError as e:
            ok("WORLD_SIZE" in str(e), "a garbage WORLD_SIZE is refused: %s" % e)
    finally:
        os.environ.clear()
        os.environ.update(env)


def epochs_and_resume(uri):
    loader = imgset.Loader(uri, batch_size=64, seed=2, dtype="uint8")
    orders = []
    for _ in range(2):
        orders.append([loader.indices.tolist() for _ in loader])
    ok(loader.epoch == 1 and orders[0] != orders[1], "each new iteration is the next epoch")
    loader.set_epoch(0)
    again = [loader.indices.tolist() for _ in loader]
    ok(again == orders[0] and loader.epoch == 0, "set_epoch(0) repeats epoch 0's batches")

    loader.set_epoch(1)
    for b, _ in enumerate(loader):
        if b == 2:
            break
    state = loader.state_dict()
    ok(state["epoch"] == 1 and state["batch"] == 3, "state_dict after 3 batches of epoch 1: %s"
       % {k: state[k] for k in ("epoch", "batch")})
    resumed = imgset.Loader(uri, batch_size=64, seed=2, dtype="uint8")
    resumed.load_state_dict(state)
    tail = [resumed.indices.tolist() for _ in resumed]
    ok(tail == orders[1][3:], "load_state_dict resumes at batch 3 of epoch 1, the same batches")
    ok(resumed.state_dict()["epoch"] == 2 and resumed.state_dict()["batch"] == 0,
       "after the resumed epoch the state points at epoch 2")
    try:
        imgset.Loader(uri, batch_size=64, seed=3).load_state_dict(state)
        ok(False, "a state taken with another seed is refused")
    except ValueError as e:
        ok("seed" in str(e), "a state taken with another seed is refused: %s" % e)
    it = iter(loader)
    next(it)
    iter(loader)
    try:
        next(it)
        ok(False, "an iterator replaced by a newer iter() says so")
    except RuntimeError as e:
        ok("newer" in str(e), "an iterator replaced by a newer iter() says so")


def fork_safety(uri):
    loader = imgset.Loader(uri, batch_size=64, workers=2)
    next(iter(loader))
    pid = os.fork()
    if pid == 0:
        try:
            next(iter(loader))
            code = 1
        except RuntimeError as e:
            code = 0 if "fork" in str(e) else 2
        del loader
        gc.collect()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    ok(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
       "a loader used in a fork()ed child raises RuntimeError naming fork (no hang)")
    ok(drain(loader) == len(loader), "the parent's loader still works after the child")


def threads_and_imports(uri):
    code = ("import os, sys\n"
            "n = lambda: len(os.listdir('/proc/self/task'))\n"
            "before = n()\n"
            "import imgset\n"
            "after_import = n()\n"
            "loader = imgset.Loader(%r, batch_size=64, workers=3)\n"
            "after_open = n()\n"
            "torch_imported = any(m in sys.modules for m in ('torch', 'psycopg', 'psycopg2'))\n"
            "import torch\n"
            "with_torch = n()\n"
            "next(iter(loader))\n"
            "print(before, after_import, after_open, torch_imported, with_torch, n())\n" % uri)
    status, out = support.run_python(code)
    counts = out.split()
    ok(status == 0 and counts[:3] == [counts[0]] * 3 and counts[3] == "False" and
       int(counts[5]) == int(counts[4]) + 3,
       "no thread at import or construction, no torch or psycopg import; 3 workers on the "
       "first batch "
       "(threads: %s)" % out.strip())
    code = ("import sys; sys.modules['torch'] = None\n"
            "import imgset, numpy\n"
            "loader = imgset.Loader(%r, batch_size=64, seed=9, dtype='uint8')\n"
            "x, y = next(iter(loader))\n"
            "assert type(x) is numpy.ndarray and x.shape == (64, 32, 32, 3), (type(x), x.shape)\n"
            "assert y.dtype == numpy.int64\n"
            "print(int(x.sum()), y.tolist()[:4])\n" % uri)
    status, out = support.run_python(code)
    ref = imgset.Loader(uri, batch_size=64, seed=9, dtype="uint8")
    x, y = next(iter(ref))
    ok(status == 0 and out.strip() == "%d %s" % (int(x.sum()), y.tolist()[:4]),
       "without torch: numpy arrays, the same batch (%s)" % out.strip()[:60])


def bad_input(workdir, uri):
    def refused(what, exc_type, needle, fn):
        try:
            fn()
            ok(False, what)
        except exc_type as e:
            ok(needle in str(e), "%s: %s" % (what, e))

    refused("an unknown scheme is named", imgset.Error, "nope", lambda: imgset.Loader("nope:x"))
    missing = os.path.join(workdir, "missing")
    refused("a missing store names its path", imgset.Error, missing,
            lambda: imgset.Loader("mmap:" + missing))
    refused("a bad split is named", ValueError, "'val'", lambda: imgset.Loader(uri, split="val"))
    refused("a wrong dtype is named", ValueError, "float16",
            lambda: imgset.Loader(uri, dtype="float16"))
    refused("batch_size 0 is refused", ValueError, "batch_size",
            lambda: imgset.Loader(uri, batch_size=0))
    refused("rank outside the world is refused", ValueError, "rank 2 of world size 2",
            lambda: imgset.Loader(uri, rank=2, world_size=2))
    refused("five means are refused", ValueError, "mean",
            lambda: imgset.Loader(uri, mean=[0.1] * 5))
    refused("a bad device is named", ValueError, "tpu", lambda: imgset.Loader(uri, device="tpu"))
    if not _imgset.HAVE_CUDA:
        refused("device='cuda' in a build without CUDA says so", imgset.Error, "CUDA",
                lambda: imgset.Loader(uri, device="cuda"))
    else:
        refused("device='cuda' without a GPU says so", imgset.Error, "no CUDA device",
                lambda: imgset.Loader(uri, device="cuda"))

    broken = os.path.join(workdir, "broken")
    imgset.convert(uri, "files:" + broken)
    victim = None
    for folder, _, files in os.walk(os.path.join(broken, "train")):
        for name in files:
            if name.lstrip("0").startswith("123."):
                victim = os.path.join(folder, name)
    with open(victim, "rb") as f:
        head = f.read(60)   # the header survives, the pixels are cut off
    with open(victim, "wb") as f:
        f.write(head)
    loader = imgset.Loader("files:" + broken, batch_size=64, shuffle=False, workers=2)
    refused("a corrupt PNG mid-epoch raises naming the file", imgset.Error,
            os.path.basename(victim), lambda: drain(loader))
    ok(drain(imgset.Loader(uri, batch_size=64)) == 11, "the loader goes on after errors")
    closed = imgset.Loader(uri)
    closed.close()
    refused("a closed loader says so", ValueError, "closed", lambda: next(iter(closed)))


def no_rss_growth(uri):
    loader = imgset.Loader(uri, batch_size=16, seed=1, workers=2)

    def one_epoch():
        total = 0.0
        for images, labels in loader:
            total += float(images[0, 0, 0, 0]) + int(labels[0])
        return total

    for epoch in range(20):
        one_epoch()
        if epoch == 1:
            gc.collect()
            start = support.rss_mb()
    gc.collect()
    growth = support.rss_mb() - start
    ok(growth < 4.0 and loader.buffer_counts()[0] == 0,
       "20 epochs (%d batches): RSS grew %.2f MB after epoch 2, no batch left kept"
       % (20 * len(loader), growth))


def main():
    with tap.scratch_dir("imgset-pytest-") as workdir:
        uris = support.make_stores(workdir)
        mmap = uris["mmap"]
        dlpack_contract(mmap)
        ownership(mmap)
        digests(uris)
        mixed_sizes(workdir)
        sharding(mmap, 700)
        epochs_and_resume(mmap)
        fork_safety(mmap)
        threads_and_imports(mmap)
        bad_input(workdir, mmap)
        no_rss_growth(mmap)
    tap.finish()


main()
