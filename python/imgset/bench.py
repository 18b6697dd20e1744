"""bench.py — `python3 -m imgset.bench`: the results table of `imgset bench`, trained in PyTorch.

For every store × data-set shape it trains the project's cnn-small (resnet8 for hires; mixed
sizes resized and center-cropped to 64×64) in PyTorch twice: through the loader PyTorch users
write today for that store (torchvision ImageFolder, numpy.load(mmap_mode="r") indexed a batch
at a time, h5py one image at a time, psycopg one `id = ANY(...)` query per batch) and through
imgset.Loader; and once per shape on tensors already in memory, the floor. It reports average
epoch seconds, data-wait, compute and AU = compute / wall, as median (min–max) over runs taken
in rounds (run 1 of every cell, then run 2, …). `--mode read` compares imgset.Loader from
Python with `imgset read` (the C loader alone) in images/s, side by side.

Flags as `imgset bench`'s; it writes OUT/results.md, results.csv, results.json and results.png
(gnuplot), generates the data sets into OUT/data (kept for the next run), and starts its own
throwaway PostgreSQL cluster unless --db names a server. A benchmark: it prints numbers and
never fails on a time.
"""
import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

import numpy
import torch
import torch.nn.functional as F
import torch.utils.data

import imgset
from imgset import _imgset
from imgset.models import make_model

# shape: (full train count, full test count, model, target size for the loader or None)
SHAPES = {
    "cifar10": (50000, 10000, "cnn-small", None),
    "tinyimagenet": (100000, 10000, "cnn-small", None),
    "hires": (5000, 1000, "resnet8", None),
    "mixed": (10000, 2000, "cnn-small", 64),
}
STORES = ["files", "mmap", "gpummap", "hdf5", "pg"]
USER_LOADERS = {"files": "torchvision ImageFolder", "mmap": "numpy.load(mmap_mode='r'), batched",
                "hdf5": "h5py, one image at a time", "pg": "psycopg, id = ANY per batch"}
IMGSET_LOADER = "imgset.Loader"
MEMORY = "tensors in memory (floor)"
UNITS = {"epoch_seconds": "s", "data_wait_seconds": "s", "compute_seconds": "s", "au": "",
         "images_per_s": "images/s"}
MEAN = STD = 0.5    # the C loader's default normalisation, (x / 255 - 0.5) / 0.5

T0 = time.perf_counter()


def log(message):
    print("[%5.0f s] %s" % (time.perf_counter() - T0, message), file=sys.stderr, flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python3 -m imgset.bench", description=__doc__.split(
        "\n\n")[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default=",".join(SHAPES), help="comma list of %s" % ", ".join(SHAPES))
    p.add_argument("--stores", default=",".join(STORES), help="comma list of %s" % ", ".join(STORES))
    p.add_argument("--mode", default="both", choices=["read", "train", "both"],
                   help="train: the table in PyTorch; read: imgset.Loader from Python next "
                        "to imgset read; both (default), as imgset bench")
    p.add_argument("--epochs", type=int, default=2, help="epochs per run (default 2)")
    p.add_argument("--runs", type=int, default=3, help="runs per cell (default 3)")
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the full counts")
    p.add_argument("--out", default="build/bench-torch", help="output folder")
    p.add_argument("--db", help="a postgresql:// server to use instead of a throwaway cluster")
    p.add_argument("--cold", action="store_true",
                   help="drop the page cache before every run (root: drop_caches; else "
                        "POSIX_FADV_DONTNEED on each file of the store)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--workers", type=int, default=1,
                   help="loader threads / DataLoader worker processes (default 1)")
    p.add_argument("--batch", type=int, default=128, help="training batch (default 128)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    a = p.parse_args(argv)
    a.shapes = checked_list(p, a.shapes, SHAPES, "shape")
    a.stores = checked_list(p, a.stores, STORES, "store")
    if not (0 < a.scale <= 10) or a.epochs < 1 or a.runs < 1 or a.batch < 1 or a.workers < 0:
        p.error("--scale must be in (0, 10], --epochs, --runs and --batch at least 1")
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: this torch sees no CUDA device")
    return a


def checked_list(parser, value, known, what):
    names = [n for n in value.split(",") if n]
    for n in names:
        if n not in known:
            parser.error("unknown %s %r (%s)" % (what, n, ", ".join(known)))
    return names


def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def machine_line(device):
    model = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        memory = int(f.readline().split()[1]) / 1024 ** 2
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "no GPU used"
    return ("%s, %d cores, %.0f GiB, Linux %s; %s; Python %s, torch %s, numpy %s" % (
        model, os.cpu_count(), memory, platform.release(), gpu, platform.python_version(),
        torch.__version__, numpy.__version__))


# ---- data sets and stores ---------------------------------------------------------------

class Stores:
    """Each shape's data set in every store: generated once into OUT/data (kept while the
    counts and seed match), copied into files, hdf5 and the database."""

    def __init__(self, args):
        self.args, self.server, self.uris, self.notes = args, None, {}, {}
        self.data = os.path.join(args.out, "data")

    def prepare(self, shape):
        full_train, full_test = SHAPES[shape][:2]
        train = max(1, int(full_train * self.args.scale + 0.5))
        test = max(1, int(full_test * self.args.scale + 0.5))
        folder = os.path.join(self.data, "%s-%d-%d-s%d" % (shape, train, test, self.args.seed))
        mmap = os.path.join(folder, "mmap")
        if not os.path.exists(os.path.join(mmap, "classes.txt")):
            shutil.rmtree(folder, ignore_errors=True)
            os.makedirs(folder)
            log("generate %s: %d train / %d test images" % (shape, train, test))
            imgset.generate(shape, "mmap:" + mmap, train=train, test=test, seed=self.args.seed)
        have = _imgset.backends()
        targets = {"files": "files:" + os.path.join(folder, "files"), "mmap": "mmap:" + mmap,
                   "gpummap": "gpummap:" + mmap, "hdf5": "hdf5:" + os.path.join(folder, "data.h5")}
        for store in self.args.stores:
            uri, note = targets.get(store), None
            if store == "gpummap" and self.args.device != "cuda":
                note = "n/a — no CUDA device"
            elif (store == "pg" and "postgresql" not in have) or \
                    (store != "pg" and store.split(":")[0] not in have):
                note = "n/a — this build has no %s store" % store
            elif store == "pg":
                uri, note = self.database(shape, train, mmap)
            elif store in ("files", "hdf5") and not os.path.exists(uri.split(":", 1)[1]):
                log("write %s into %s" % (shape, store))
                imgset.convert("mmap:" + mmap, uri)
            self.uris[store, shape], self.notes[store, shape] = uri, note
        return "mmap:" + mmap

    def database(self, shape, train, mmap):
        """The shape's data set in the database: (uri, None) or (None, why not)."""
        try:
            if self.server is None and not self.args.db:
                log("start a throwaway PostgreSQL cluster")
                self.server = _imgset.PgServer(parent=tempfile.gettempdir())
            base = self.args.db or self.server.uri
            uri = base + ("&" if "?" in base else "?") + "dataset=bench_%s_%d" % (shape, train)
            try:
                imgset.open(uri)
            except imgset.Error:
                log("write %s into the database" % shape)
                imgset.convert("mmap:" + mmap, uri)
            return uri, None
        except imgset.Error as e:
            return None, "n/a — %s" % str(e).splitlines()[0][:80]

    def stop(self):
        if self.server is not None:
            self.server.stop()


def drop_cache(uri):
    """Drop the page cache of the store's files (all of it as root); what was done."""
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return "drop_caches"
    except OSError:
        pass
    path = uri.split(":", 1)[1].split("?")[0]
    if uri.startswith("postgresql"):
        return "none (PostgreSQL's cache stays)"
    for root, _, files in os.walk(path) if os.path.isdir(path) else [("", [], [path])]:
        for name in files:
            try:
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
            except OSError:
                pass
    return "POSIX_FADV_DONTNEED per file"


# ---- the loaders PyTorch users write today (module level: DataLoader workers fork) -------

def to_float(u8):
    """(N, H, W, C) uint8 numpy -> (N, C, H, W) float32 tensor, (x / 255 - 0.5) / 0.5."""
    x = torch.from_numpy(numpy.ascontiguousarray(u8.transpose(0, 3, 1, 2))).float()
    return x.mul_(1.0 / (255.0 * STD)).sub_(MEAN / STD)


def collate_images(items):
    """Per-image (H×W×C uint8, label) items -> one float batch, converted once."""
    return (to_float(numpy.stack([image for image, _ in items])),
            torch.tensor([int(label) for _, label in items], dtype=torch.int64))


class MmapBatches(torch.utils.data.Dataset):
    """numpy.load(mmap_mode='r'), indexed with a whole sorted batch of indices."""

    def __init__(self, folder):
        self.images = numpy.load(os.path.join(folder, "train_images.npy"), mmap_mode="r")
        self.labels = numpy.load(os.path.join(folder, "train_labels.npy"))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, indices):
        indices = numpy.sort(numpy.asarray(indices))
        return to_float(self.images[indices]), torch.from_numpy(self.labels[indices])


class H5Images(torch.utils.data.Dataset):
    """h5py, one file per process (opened on first use there), one image per item."""

    def __init__(self, path):
        import h5py
        self.path, self.pid = path, None
        with h5py.File(path, "r") as f:
            self.labels = f["train/labels"][:]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        if self.pid != os.getpid():
            import h5py
            self.file, self.pid = h5py.File(self.path, "r"), os.getpid()
            self.images = self.file["train/images"]
        return self.images[i], self.labels[i]


class PgBatches(torch.utils.data.Dataset):
    """psycopg (or psycopg2), one connection per process, one `id = ANY` query per batch."""

    def __init__(self, uri, shape):
        parts = urllib.parse.urlsplit(uri)
        query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "dataset"]
        self.dataset = dict(urllib.parse.parse_qsl(parts.query))["dataset"]
        self.dsn = "%s://%s%s?%s" % (parts.scheme, parts.netloc, parts.path,
                                     urllib.parse.urlencode(query))
        self.shape, self.pid = shape, None
        info = imgset.open(uri)
        self.count = info.splits["train"].count
        cursor = self.cursor()
        cursor.execute("SELECT rel::text FROM imgset.splits WHERE dataset = %s AND "
                       "split = 'train'", (self.dataset,))
        self.table = cursor.fetchone()[0]
        self.pid = None   # a fresh connection in every process that reads

    def cursor(self):
        if self.pid != os.getpid():
            try:
                import psycopg
                self.conn = psycopg.connect(self.dsn, autocommit=True)
            except ImportError:
                import psycopg2
                self.conn = psycopg2.connect(self.dsn)
                self.conn.autocommit = True
            self.pid = os.getpid()
        return self.conn.cursor()

    def __len__(self):
        return self.count

    def __getitem__(self, indices):
        cursor = self.cursor()
        cursor.execute("SELECT label, img::bytea FROM %s WHERE id = ANY(%%s)" % self.table,
                       (sorted(int(i) for i in indices),))
        rows = cursor.fetchall()
        pixels = numpy.frombuffer(b"".join(bytes(r[1]) for r in rows), numpy.uint8)
        labels = numpy.fromiter((r[0] for r in rows), numpy.int64, len(rows))
        return to_float(pixels.reshape((len(rows),) + self.shape)), torch.from_numpy(labels)


def user_loader(store, uri, shape_info, args):
    """The DataLoader a PyTorch user writes today for the store (fixed-size images; for mixed
    sizes only ImageFolder, which resizes)."""
    H, W, C = shape_info
    common = dict(num_workers=args.workers, persistent_workers=args.workers > 0,
                  pin_memory=args.device == "cuda")
    generator = torch.Generator().manual_seed(args.seed)

    def batched(dataset):
        sampler = torch.utils.data.BatchSampler(
            torch.utils.data.RandomSampler(dataset, generator=generator), args.batch, False)
        return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, **common)

    path = uri.split(":", 1)[1]
    if store == "files":
        import torchvision
        from torchvision import transforms as T
        steps = [T.Resize(H), T.CenterCrop(H)] if shape_info.resized else []
        dataset = torchvision.datasets.ImageFolder(
            os.path.join(path, "train"),
            transform=T.Compose(steps + [T.ToTensor(), T.Normalize((MEAN,) * C, (STD,) * C)]))
        return torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True,
                                           generator=generator, **common)
    if store == "mmap":
        return batched(MmapBatches(path))
    if store == "hdf5":
        return torch.utils.data.DataLoader(H5Images(path), batch_size=args.batch, shuffle=True,
                                           generator=generator, collate_fn=collate_images,
                                           **common)
    return batched(PgBatches(uri, (H, W, C)))


class ShapeInfo(tuple):
    """(H, W, C) of the model's input, and whether the loader resizes to it."""

    def __new__(cls, hwc, resized):
        self = super().__new__(cls, hwc)
        self.resized = resized
        return self


# ---- training -----------------------------------------------------------------------------

class InMemory:
    """The floor: the whole train split as normalised float tensors on the training device,
    batches gathered by index from a seeded permutation each epoch."""

    def __init__(self, uri, size, args):
        loader = imgset.Loader(uri, batch_size=1024, shuffle=False, size=size, workers=2)
        images, labels = zip(*((x.clone(), y.clone()) for x, y in loader))
        loader.close()
        self.images = torch.cat(images).to(args.device)
        self.labels = torch.cat(labels).to(args.device)
        self.batch, self.generator = args.batch, torch.Generator().manual_seed(args.seed)

    def __iter__(self):
        order = torch.randperm(len(self.labels), generator=self.generator).to(
            self.labels.device)
        for start in range(0, len(order), self.batch):
            index = order[start:start + self.batch]
            yield self.images[index], self.labels[index]


def train_run(make_batches, model_name, shape_info, classes, args, steps=None):
    """One run: a fresh model trained for args.epochs epochs on the batches (or only `steps`
    batches, to warm up); per-epoch (wall, data-wait, compute, images)."""
    H, W, C = shape_info
    torch.manual_seed(args.seed)
    model = make_model(model_name, C, H, W, classes).to(args.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    cuda = args.device == "cuda"
    batches = make_batches()
    epochs = []
    try:
        for _ in range(args.epochs):
            wait = compute = 0.0
            images = 0
            start = time.perf_counter()
            it = iter(batches)
            while True:
                t = time.perf_counter()
                try:
                    x, y = next(it)
                except StopIteration:
                    break
                if cuda:
                    x, y = x.to("cuda", non_blocking=True), y.to("cuda", non_blocking=True)
                    torch.cuda.synchronize()
                t1 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                opt.step()
                if cuda:
                    torch.cuda.synchronize()
                wait += t1 - t
                compute += time.perf_counter() - t1
                images += len(y)
                if steps is not None and images >= steps * args.batch:
                    return epochs
            epochs.append((time.perf_counter() - start, wait, compute, images))
    finally:
        close = getattr(batches, "close", None)
        if close:
            close()
        iterator = getattr(batches, "_iterator", None)
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
    return epochs


def run_summary(epochs):
    """A run's average epoch seconds, data-wait and compute per epoch, AU, images/s."""
    n = len(epochs)
    wall = sum(e[0] for e in epochs)
    return {"epoch_seconds": wall / n, "data_wait_seconds": sum(e[1] for e in epochs) / n,
            "compute_seconds": sum(e[2] for e in epochs) / n,
            "au": sum(e[2] for e in epochs) / wall, "images_per_s": sum(e[3] for e in epochs) / wall}


# ---- loader only: imgset.Loader from Python next to imgset read -------------------------

def cli_path():
    """The imgset command: $IMGSET, then the PATH, then this checkout's build/imgset."""
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (os.environ.get("IMGSET"), shutil.which("imgset"),
                      os.path.join(here, "..", "..", "imgset")):
        if candidate and os.access(candidate, os.X_OK) and os.path.isfile(candidate):
            return os.path.abspath(candidate)
    return None


READ_BATCH, READ_WORKERS = 256, 2   # as imgset bench's loader-only runs


def python_read(uri, size, args):
    """images/s of each timed epoch through imgset.Loader (float32, as training reads)."""
    loader = imgset.Loader(uri, batch_size=READ_BATCH, seed=args.seed, workers=READ_WORKERS,
                           size=size)
    rates = []
    for epoch in range(args.epochs + (0 if args.cold else 1)):
        start, images = time.perf_counter(), 0
        for _, labels in loader:
            images += labels.shape[0]
        if epoch > 0 or args.cold:
            rates.append(images / (time.perf_counter() - start))
    loader.close()
    return rates


def cli_read(cli, uri, size, args):
    """images/s of each timed epoch of `imgset read` with the same settings."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [cli, "read", uri, "--batch", str(READ_BATCH), "--workers", str(READ_WORKERS),
               "--float", "--epochs", str(args.epochs), "--seed", str(args.seed), "--json",
               out.name] + (["--size", str(size)] if size else []) + \
              (["--cold"] if args.cold else [])
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            raise RuntimeError("imgset read %s: %s" % (uri, p.stderr.strip()[:200]))
        with open(out.name) as f:
            return [e["images_per_s"] for e in json.load(f)["epochs"]]


# ---- the rounds ---------------------------------------------------------------------------

def bench(args):
    stores = Stores(args)
    torch.set_num_threads(args.threads)
    cli = cli_path() if args.mode in ("read", "both") else None
    train_cells, read_cells = {}, {}   # key -> list of run summaries / rates
    info = {}
    try:
        for shape in args.shapes:
            mmap_uri = stores.prepare(shape)
            size = SHAPES[shape][3]
            with imgset.Loader(mmap_uri, size=size, batch_size=1) as probe:
                info[shape] = (ShapeInfo(probe.shape, size is not None), len(probe.classes),
                               mmap_uri)
        for run in range(args.runs):
            for shape in args.shapes:
                shape_info, classes, mmap_uri = info[shape]
                model = SHAPES[shape][2]
                order = args.stores[run % len(args.stores):] + args.stores[:run % len(args.stores)]
                if args.mode in ("train", "both"):
                    floor = InMemory(mmap_uri, SHAPES[shape][3], args)
                    if run == 0:   # untimed: torch's thread pool and allocator get going
                        train_run(lambda: floor, model, shape_info, classes, args, steps=3)
                    cell = train_cells.setdefault(("memory", MEMORY, shape), [])
                    cell.append(run_summary(train_run(lambda: floor, model, shape_info, classes,
                                                      args)))
                    log("run %d %s %s: %.2f s/epoch" % (run + 1, shape, MEMORY,
                                                        cell[-1]["epoch_seconds"]))
                    del floor
                for store in order:
                    uri, note = stores.uris[store, shape], stores.notes[store, shape]
                    if note:
                        continue
                    if args.mode in ("train", "both"):
                        train_store(store, uri, shape, shape_info, classes, model, run, args,
                                    train_cells)
                    if args.mode in ("read", "both"):
                        read_store(cli, store, uri, shape, run, args, read_cells)
    finally:
        stores.stop()
    return stores, train_cells, read_cells


def train_store(store, uri, shape, shape_info, classes, model, run, args, cells):
    size = SHAPES[shape][3]
    device = "cuda" if args.device == "cuda" else "cpu"
    variants = [(IMGSET_LOADER, lambda: imgset.Loader(
        uri, batch_size=args.batch, seed=args.seed, size=size, workers=args.workers,
        device=device))]
    if store in USER_LOADERS:
        variants.insert(0, (USER_LOADERS[store], lambda: user_loader(store, uri, shape_info,
                                                                     args)))
    for name, make in variants:
        if name != IMGSET_LOADER and shape_info.resized and store != "files":
            cells.setdefault((store, name, shape), None)   # ragged arrays: no stock loader
            continue
        if args.cold:
            drop_cache(uri)
        summary_ = run_summary(train_run(make, model, shape_info, classes, args))
        cells.setdefault((store, name, shape), []).append(summary_)
        log("run %d %s %s %s: %.2f s/epoch, AU %.3f" % (
            run + 1, shape, store, name, summary_["epoch_seconds"], summary_["au"]))


def read_store(cli, store, uri, shape, run, args, cells):
    """Both loaders one after the other (which goes first alternates with the run), so that
    the ratio of a run compares the two under the same load."""
    size = SHAPES[shape][3]
    measured = {}
    for who in (("python", "c") if run % 2 == 0 else ("c", "python")):
        if args.cold:
            drop_cache(uri)
        if who == "python":
            measured[who] = python_read(uri, size, args)
        else:
            measured[who] = cli_read(cli, uri, size, args) if cli else []
    py, c = measured["python"], measured["c"]
    cell = cells.setdefault((store, shape), {"python": [], "c": [], "ratios": []})
    cell["python"] += py
    cell["c"] += c
    if c:
        cell["ratios"].append(statistics.median(py) / statistics.median(c))
    log("run %d %s %s: imgset.Loader %.0f images/s, imgset read %s" % (
        run + 1, shape, store, statistics.median(py),
        "%.0f images/s" % statistics.median(c) if c else "n/a (no imgset command found)"))


# ---- reports -------------------------------------------------------------------------------

def fmt(s, digits=2, unit=""):
    if s is None:
        return "n/a"
    f = "%%.%df" % digits
    return (f + " (" + f + "–" + f + ")%s") % (s["median"], s["min"], s["max"], unit)


def report(args, stores, train_cells, read_cells):
    os.makedirs(args.out, exist_ok=True)
    machine = machine_line(args.device)
    settings = ("%s; %d runs of %d epochs in rounds; batch %d, %d torch threads, %d loader "
                "workers, seed %d; %s cache; mean = std = 0.5" % (
                    args.device, args.runs, args.epochs, args.batch, args.threads, args.workers,
                    args.seed, "cold" if args.cold else "warm"))
    rows, csv_rows, cells_json = [], [], []
    metrics = ("epoch_seconds", "data_wait_seconds", "compute_seconds", "au", "images_per_s")
    stats = {}
    for key, runs in train_cells.items():
        stats[key] = {m: summary([r[m] for r in runs]) for m in metrics} if runs else None
    floor = {shape: stats.get(("memory", MEMORY, shape)) for shape in args.shapes}
    keys = [("memory", MEMORY)] + [(s, n) for s in args.stores
                                   for n in (USER_LOADERS.get(s), IMGSET_LOADER) if n]
    lines = ["# python -m imgset.bench: training in PyTorch", "", "machine: " + machine,
             "settings: " + settings, ""]

    def note(store, name, shape):
        """Why a cell has no number, or None."""
        if stats.get((store, name, shape)):
            return None
        if (store, name, shape) in train_cells:
            return "n/a — no stock PyTorch loader for mixed sizes"
        return (stores.notes.get((store, shape)) if store != "memory" else None) or "n/a"

    def table(title, metric, render):
        lines.extend(["## " + title, "", "| store | loader | " + " | ".join(args.shapes) + " |",
                      "|---|---|" + "---|" * len(args.shapes)])
        for store, name in keys:
            cells = []
            for shape in args.shapes:
                s = stats.get((store, name, shape))
                cells.append(render(s[metric], shape) if s else note(store, name, shape))
            lines.append("| %s | %s | %s |" % (store, name, " | ".join(cells)))
        lines.append("")

    if train_cells:
        table("Average epoch seconds (lower is better)", "epoch_seconds", lambda s, _: fmt(s))

        def versus(s, shape):
            base = floor.get(shape)
            if not base:
                return "n/a"
            return "%+.1f%%" % (100 * (s["median"] / base["epoch_seconds"]["median"] - 1))
        table("Epoch against PyTorch on tensors in memory (median / floor's median − 1)",
              "epoch_seconds", versus)
        table("AU = compute / wall", "au", lambda s, _: fmt(s, 3))
        table("Data-wait seconds per epoch", "data_wait_seconds", lambda s, _: fmt(s, 3))
        for store, name, shape in ((k + (shape,)) for k in keys for shape in args.shapes):
            s = stats.get((store, name, shape))
            cell = {"store": store, "loader": name, "shape": shape, "device": args.device,
                    "note": note(store, name, shape)}
            for m in metrics:
                cell[m] = s[m] if s else None
                if s:
                    csv_rows.append([store, name, shape, m, s[m]["median"], s[m]["min"],
                                     s[m]["max"], UNITS[m], ""])
            cells_json.append(cell)
    read_json = []
    if read_cells:
        lines.extend(["## Loader only: imgset.Loader from Python next to imgset read "
                      "(images/s over every timed epoch; batch %d, %d workers, float32; higher "
                      "is better; Python / C: each run's ratio of medians, the two measured "
                      "back to back)" % (READ_BATCH, READ_WORKERS), "",
                      "| store | shape | imgset.Loader (Python) | imgset read (C) | Python / C |",
                      "|---|---|---|---|---|"])
        for (store, shape), rates in read_cells.items():
            py, c, ratio = (summary(rates[k]) for k in ("python", "c", "ratios"))
            lines.append("| %s | %s | %s | %s | %s |" % (store, shape, fmt(py, 0), fmt(c, 0),
                                                         fmt(ratio, 3)))
            read_json.append({"store": store, "shape": shape, "python_images_per_s": py,
                              "cli_images_per_s": c, "ratio": ratio})
            for who, s in (("python", py), ("cli", c)):
                if s:
                    csv_rows.append([store, who, shape, "read_images_per_s", s["median"],
                                     s["min"], s["max"], "images/s", ""])
        lines.append("")
    plot = plot_png(args, stats, keys)
    lines.append("plot: " + plot)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["store", "loader", "shape", "metric", "median", "min", "max", "unit",
                    "note"])
        w.writerows(csv_rows)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"machine": machine, "settings": settings, "cells": cells_json,
                   "read": read_json}, f, indent=1)
    print("\n".join(lines))


def plot_png(args, stats, keys):
    """results.png: epoch seconds per store/loader and shape (gnuplot), or why not."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot or not stats:
        return "none (no gnuplot, or no training cells)"
    data = os.path.join(args.out, "results.dat")
    with open(data, "w") as f:
        f.write("cell " + " ".join(args.shapes) + "\n")
        for store, name in keys:
            values = []
            for shape in args.shapes:
                s = stats.get((store, name, shape))
                values.append("%.4f" % s["epoch_seconds"]["median"] if s else "NaN")
            f.write('"%s: %s" %s\n' % (store, name.split(",")[0], " ".join(values)))
    script = ("set terminal pngcairo size 1400,700 noenhanced; set output '%s'; set yrange [0:*];"
              "set style data histograms; set style histogram clustered; set style fill solid;"
              "set ylabel 'average epoch seconds (PyTorch)'; set xtics rotate by -30;"
              "set key autotitle columnheader; plot for [i=2:%d] '%s' using i:xtic(1)" % (
                  os.path.join(args.out, "results.png"), len(args.shapes) + 1, data))
    p = subprocess.run([gnuplot, "-e", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    os.unlink(data)
    return "results.png" if p.returncode == 0 else "none (gnuplot: %s)" % p.stderr.strip()[:80]


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    stores, train_cells, read_cells = bench(args)
    report(args, stores, train_cells, read_cells)
    return 0


if __name__ == "__main__":
    sys.exit(main())
