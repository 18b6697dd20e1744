#!/usr/bin/python3
"""compare_torch.py — imgset against what PyTorch users write today, side by side, on this machine.

1. Loader only: for the cifar10 and tinyimagenet shapes and every store (files, mmap, hdf5,
   hdf5-gzip, pg), a torch DataLoader written the way its users write it at its best (batch
   128, shuffle, num_workers 0 and 2, persistent workers, no pinning) next to
   `imgset read URI --batch 256 --workers 2 --float`, with the ratio and the goal of issue 4.
2. Training: cnn-small in PyTorch (2 threads, batch 128, SGD momentum 0.9, data in memory;
   contiguous and channels_last, the better one counts) next to `imgset train` on the same data.

A benchmark: it prints numbers and never fails on a time. Without python3-torch,
-torchvision, -h5py, -psycopg2 or -numpy it prints "skipped: ..." and exits 0.
See test/bench/README.md for how to run it and read the table.

usage: test/bench/compare_torch.py [--scale F | --full] [--epochs E] [--shapes ...]
                                   [--stores ...] [--out DIR] [--json FILE] [--no-train]
"""
import argparse
import ctypes
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PGCLUSTER = os.path.join(ROOT, "test", "pgcluster.sh")

SHAPES = {  # shape: (default train count, full train count, test count, H, W, C)
    "cifar10": (20000, 50000, 2000, 32, 32, 3),
    "tinyimagenet": (20000, 100000, 1000, 64, 64, 3),
}
STORES = ["files", "mmap", "hdf5", "hdf5-gzip", "pg"]
GOAL = {"files": 3.0, "mmap": 3.0, "hdf5": 4.0, "hdf5-gzip": 4.0, "pg": 4.0}
TRAIN_GOAL = 1.5
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
BATCH = 128
FALLBACK_CORES = ("Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Sandybridge")


T0 = time.perf_counter()


def log(msg):
    print(f"[{time.perf_counter() - T0:5.0f} s] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- machine


def cpu_info():
    model, flags = "unknown CPU", ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "unknown CPU":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1]
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return model, set(flags.split()), mem


def detected_blas_core():
    """The kernel OpenBLAS picks by itself here (asked in a child, with OPENBLAS_CORETYPE unset,
    so that this process's own copy is still free to be told a better one)."""
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    code = ("import ctypes\n"
            "for n in ('libblas.so.3', 'libopenblas.so.0'):\n"
            "    try:\n"
            "        f = ctypes.CDLL(n).openblas_get_corename\n"
            "    except (OSError, AttributeError):\n"
            "        continue\n"
            "    f.restype = ctypes.c_char_p; print(f().decode()); break\n")
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or None


def torch_blas_line(torch):
    """BLAS_INFO from torch's build config, the BLAS library actually mapped, and the OpenBLAS
    core it runs (after one matmul, so the library is loaded)."""
    cfg = torch.__config__.show()
    m = re.search(r"BLAS_INFO=([^,\s]+)", cfg)
    info = m.group(1) if m else "?"
    a = torch.ones(64, 64)
    (a @ a).sum().item()
    libs = []
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if ("blas" in p or "mkl" in p) and p.startswith("/") and p not in libs:
                libs.append(p)
    core, config = None, None
    for p in libs:
        try:
            lib = ctypes.CDLL(p)
            g, c = lib.openblas_get_config, lib.openblas_get_corename
        except (OSError, AttributeError):
            continue
        g.restype = c.restype = ctypes.c_char_p
        config, core = g().decode(), c().decode()
        break
    names = ", ".join(os.path.basename(p) for p in libs) or "no BLAS library mapped"
    return info, names, config, core


# --------------------------------------------------------------------------- helpers


def run(cmd, what, timeout=1800, env=None):
    """Run a command; return its CompletedProcess, or raise RuntimeError naming what failed."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what}: timed out after {timeout} s")
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{what}: exit {p.returncode}: {' | '.join(tail)}")
    return p


def summary(rates):
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates),
            "runs": [round(r, 1) for r in rates]}


def fmt_rate(r):
    return f"{r:,.0f}"


def fmt_cell(s, extra=""):
    if s is None:
        return "n/a"
    star = "*" if s.get("partial") else ""
    return f"{fmt_rate(s['median'])}{star} ({fmt_rate(s['min'])}–{fmt_rate(s['max'])}){extra}"


def pg_uri(env, dataset):
    return (f"postgresql:///{env['PGDATABASE']}?host={env['PGHOST']}&port={env['PGPORT']}"
            f"&user={env['PGUSER']}&dataset={dataset}")


# --------------------------------------------------------------------------- PyTorch datasets
# Defined at module level so that DataLoader workers (forked) find them; each opens its
# handle (h5py file, database connection) lazily in the process that uses it.


def make_datasets(torch, np):
    from torch.utils.data import Dataset

    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    scale = 1.0 / (255.0 * std)
    shift = mean / std

    def to_float(u8):
        """N×H×W×C uint8 numpy → N×C×H×W float32, (x/255 − mean) / std, contiguous."""
        x = torch.from_numpy(np.ascontiguousarray(u8.transpose(0, 3, 1, 2))).float()
        return x.mul_(scale).sub_(shift)

    def collate_u8(items):
        """Per-image (H×W×C uint8, label) items → one float batch, converted once."""
        u8 = np.stack([im for im, _ in items])
        return to_float(u8), torch.tensor([int(lab) for _, lab in items], dtype=torch.int64)

    class MmapBatches(Dataset):
        """numpy.load(mmap_mode='r'), indexed with a whole sorted batch of indices."""

        def __init__(self, d):
            self.images = np.load(os.path.join(d, "train_images.npy"), mmap_mode="r")
            self.labels = np.load(os.path.join(d, "train_labels.npy"))

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, idx):
            idx = np.sort(np.asarray(idx))
            return to_float(self.images[idx]), torch.from_numpy(self.labels[idx])

    class H5Batches(Dataset):
        """h5py, one File per process (opened on first use there), sorted fancy indexing."""

        def __init__(self, path):
            self.path, self.pid, self.f = path, None, None
            import h5py
            with h5py.File(path, "r") as f:
                self.labels = f["train/labels"][:]

        def __len__(self):
            return len(self.labels)

        def close(self):
            if self.f is not None and self.pid == os.getpid():
                self.f.close()
            self.f, self.pid = None, None

        def __getitem__(self, idx):
            if self.pid != os.getpid():
                import h5py
                self.f, self.pid = h5py.File(self.path, "r"), os.getpid()
                self.images = self.f["train/images"]
            idx = np.sort(np.asarray(idx))
            return to_float(self.images[idx]), torch.from_numpy(self.labels[idx])

    class H5Images(H5Batches):
        """h5py map-style: one image per __getitem__ (ds[i]), batched by collate_u8."""

        def __getitem__(self, i):
            if self.pid != os.getpid():
                import h5py
                self.f, self.pid = h5py.File(self.path, "r"), os.getpid()
                self.images = self.f["train/images"]
            return self.images[i], self.labels[i]

    class PgBatches(Dataset):
        """psycopg2, one connection per process, one query per batch by id = ANY(...).
        mode 'copy': COPY (SELECT label, img ...) TO STDOUT (FORMAT binary), the rows cut out of
        the binary stream by numpy without a Python loop (fixed-shape images: fixed row size);
        mode 'bytea': SELECT label, img::bytea ..., psycopg2's C hex decoder, bytes joined."""

        def __init__(self, dsn, table, n, hwc, mode):
            self.dsn, self.table, self.n, self.hwc, self.mode = dsn, table, n, hwc, mode
            self.pid, self.conn = None, None

        def __len__(self):
            return self.n

        def close(self):
            if self.conn is not None and self.pid == os.getpid():
                self.conn.close()
            self.conn, self.pid = None, None

        def cursor(self):
            if self.pid != os.getpid():
                import psycopg2
                self.conn, self.pid = psycopg2.connect(self.dsn), os.getpid()
                self.conn.autocommit = True
                self.cur = self.conn.cursor()
            return self.cur

        def __getitem__(self, idx):
            cur = self.cursor()
            ids = sorted(int(i) for i in idx)
            h, w, c = self.hwc
            p = h * w * c
            if self.mode == "bytea":
                cur.execute(f"SELECT label, img::bytea FROM {self.table} WHERE id = ANY(%s)",
                            (ids,))
                rows = cur.fetchall()
                labels = np.fromiter((r[0] for r in rows), np.int64, len(rows))
                u8 = np.frombuffer(b"".join(r[1] for r in rows), np.uint8)
                return to_float(u8.reshape(len(rows), h, w, c)), torch.from_numpy(labels)
            buf = io.BytesIO()
            sql = cur.mogrify(f"COPY (SELECT label, img FROM {self.table} WHERE id = ANY(%s)) "
                              "TO STDOUT (FORMAT binary)", (ids,)).decode()
            cur.copy_expert(sql, buf)
            data = buf.getvalue()
            # 19-byte header; per row: int16 nfields, int32 len + int32 label,
            # int32 len + imgtensor (20-byte header + payload); int16 -1 trailer.
            row = 2 + 4 + 4 + 4 + 20 + p
            n = len(ids)
            if len(data) != 19 + n * row + 2:
                raise RuntimeError(f"pg {self.table}: COPY returned {len(data)} bytes, "
                                   f"expected {19 + n * row + 2} for {n} rows")
            rows = np.frombuffer(data, np.uint8, n * row, 19).reshape(n, row)
            labels = rows[:, 6:10].copy().view(">i4").astype(np.int64).reshape(n)
            u8 = rows[:, 34:].reshape(n, h, w, c)
            return to_float(u8), torch.from_numpy(labels)

    return MmapBatches, H5Batches, H5Images, PgBatches, collate_u8


# --------------------------------------------------------------------------- measurements


def time_loader(torch, make_loader, epochs, n, cap):
    """One untimed epoch, then `epochs` timed ones; images/s of each timed epoch. An epoch
    stops after `cap` seconds (the rate is then over the batches read; partial is set)."""
    loader = make_loader()
    rates, partial = [], False
    try:
        for e in range(epochs + 1):
            t0, seen = time.perf_counter(), 0
            for x, y in loader:
                seen += y.shape[0]
                if time.perf_counter() - t0 > cap:
                    break
            dt = time.perf_counter() - t0
            if seen != n:
                if dt <= cap or seen > n:
                    raise RuntimeError(f"epoch delivered {seen} images, expected {n}")
                partial = True
            if e > 0:
                rates.append(seen / dt)
    finally:
        it = getattr(loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()
        close = getattr(loader.dataset, "close", None)
        if close:
            close()
        del loader
    s = summary(rates)
    s["partial"] = partial
    return s


def torch_loaders(torch, np, store, paths, shape, n, pg):
    """[(variant label, factory(workers) -> DataLoader)] for one store."""
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler
    MmapBatches, H5Batches, H5Images, PgBatches, collate_u8 = make_datasets(torch, np)
    H, W, C = SHAPES[shape][3:]

    def batched(new):  # a fresh dataset per loader: no handle crosses a fork
        def make(w):
            ds = new()
            return DataLoader(ds, sampler=BatchSampler(RandomSampler(ds), BATCH, drop_last=False),
                              batch_size=None, num_workers=w, persistent_workers=w > 0,
                              pin_memory=False)
        return make

    if store == "files":
        import torchvision
        from torchvision import transforms
        tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
        ds = torchvision.datasets.ImageFolder(os.path.join(paths["files"], "train"), transform=tf)

        def make(w):
            return DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=w,
                              persistent_workers=w > 0, pin_memory=False)
        return [("ImageFolder", make)]
    if store == "mmap":
        return [("memmap", batched(lambda: MmapBatches(paths["mmap"])))]
    if store in ("hdf5", "hdf5-gzip"):
        def per_image(w):
            return DataLoader(H5Images(paths[store]), batch_size=BATCH, shuffle=True,
                              num_workers=w, persistent_workers=w > 0, pin_memory=False,
                              collate_fn=collate_u8)
        return [("h5py batch", batched(lambda: H5Batches(paths[store]))),
                ("h5py per-image", per_image)]
    if store == "pg":
        dsn = (f"host={pg['env']['PGHOST']} port={pg['env']['PGPORT']} "
               f"user={pg['env']['PGUSER']} dbname={pg['env']['PGDATABASE']}")
        table = pg["tables"][shape]
        return [(f"psycopg2 {m}", batched(lambda m=m: PgBatches(dsn, table, n, (H, W, C), m)))
                for m in ("copy", "bytea")]
    raise ValueError(store)


def imgset_read(imgset, uri, epochs, work):
    jf = os.path.join(work, "read.json")
    run([imgset, "read", uri, "--batch", "256", "--workers", "2", "--float", "--epochs",
         str(epochs), "--json", jf], f"imgset read {uri}")
    with open(jf) as f:
        j = json.load(f)
    os.unlink(jf)
    rates = [e["images_per_s"] for e in j["epochs"]]
    return {"median": j["median_images_per_s"], "min": j["min_images_per_s"],
            "max": j["max_images_per_s"], "runs": rates}


def torch_train(torch, np, mmap_dir, runs, train_batches, infer_batches):
    """cnn-small on the mmap store's train split held in memory as normalised float NCHW;
    images/s of training and inference for contiguous and channels_last."""
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(2)
    u8 = np.load(os.path.join(mmap_dir, "train_images.npy"))
    labels = torch.from_numpy(np.load(os.path.join(mmap_dir, "train_labels.npy")))
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    X = torch.from_numpy(u8).permute(0, 3, 1, 2).contiguous().float().div_(255).sub_(mean).div_(std)
    del u8
    n, C, H, W = X.shape
    K = int(labels.max()) + 1
    res = {}
    for fmt in ("contiguous", "channels_last"):
        mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
        torch.manual_seed(1)
        net = nn.Sequential(nn.Conv2d(C, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(64 * (H // 4) * (W // 4), 128), nn.ReLU(),
                            nn.Linear(128, K)).to(memory_format=mf)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        gen = torch.Generator().manual_seed(2)

        def batches(count):
            perm = torch.randperm(n, generator=gen)
            for b in range(count):
                idx = perm[(b * BATCH) % (n - BATCH):][:BATCH]
                yield X[idx].contiguous(memory_format=mf), labels[idx]

        def train(count):
            net.train()
            for x, y in batches(count):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(x), y).backward()
                opt.step()

        def infer(count):
            net.eval()
            with torch.no_grad():
                for x, _ in batches(count):
                    net(x).argmax(1)

        train(3)
        infer(3)
        tr, inf = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            train(train_batches)
            tr.append(train_batches * BATCH / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            infer(infer_batches)
            inf.append(infer_batches * BATCH / (time.perf_counter() - t0))
        res[fmt] = {"train": summary(tr), "infer": summary(inf)}
        log(f"  pytorch cnn-small {fmt}: train {fmt_cell(res[fmt]['train'])}, "
            f"infer {fmt_cell(res[fmt]['infer'])} img/s")
    return res


def imgset_train(imgset, mmap_dir, epochs, test_n, work):
    jf = os.path.join(work, "train.json")
    run([imgset, "train", "mmap:" + mmap_dir, "--epochs", str(epochs), "--batch", str(BATCH),
         "--threads", "2", "--json", jf], f"imgset train mmap:{mmap_dir}", timeout=3600)
    with open(jf) as f:
        j = json.load(f)
    os.unlink(jf)
    tr = [e["images_per_s"] for e in j["epochs"]]
    inf = [test_n / e["eval_seconds"] for e in j["epochs"] if e.get("eval_seconds", 0) > 0]
    return {"train": summary(tr), "infer": summary(inf) if inf else None,
            "au": statistics.median(e["au"] for e in j["epochs"])}


# --------------------------------------------------------------------------- data


def prepare(imgset, data_dir, shape, n_train, n_test, stores, pg):
    """Generate the shape into mmap and convert into the other stores (reusing what exists).
    Returns ({store: path or URI}, {store: why not}) ."""
    base = os.path.join(data_dir, f"{shape}-{n_train}")
    paths = {"mmap": base + ".mmap", "files": base + ".files", "hdf5": base + ".h5",
             "hdf5-gzip": base + ".gzip.h5"}
    uris = {"mmap": "mmap:" + paths["mmap"], "files": "files:" + paths["files"],
            "hdf5": "hdf5:" + paths["hdf5"],
            "hdf5-gzip": "hdf5:" + paths["hdf5-gzip"]}
    missing = {}
    t0 = time.perf_counter()
    if not os.path.exists(paths["mmap"]):
        run([imgset, "gen", "--like", shape, "--train", str(n_train), "--test", str(n_test),
             "--seed", "1", "--out", uris["mmap"]], f"imgset gen {shape}")
    for s in stores:
        if s in ("mmap", "pg") or os.path.exists(paths[s]):
            continue
        try:
            dst = uris[s] + ("?compression=gzip" if s == "hdf5-gzip" else "")
            run([imgset, "convert", uris["mmap"], dst], f"imgset convert into {s}")
        except RuntimeError as e:
            missing[s] = str(e)
    if "pg" in stores:
        if pg.get("why"):
            missing["pg"] = pg["why"]
        else:
            name = f"cmp_{shape}"
            uris["pg"] = pg_uri(pg["env"], name)
            try:
                run([imgset, "convert", uris["mmap"], uris["pg"]], "imgset convert into pg")
                p = run(["psql", "-XAtqc", f"SELECT imgset.split_table('{name}', 'train')"],
                        "psql split_table", env=pg["fullenv"])
                pg["tables"][shape] = p.stdout.strip()
            except RuntimeError as e:
                missing["pg"] = str(e)
    log(f"  data {shape}: {n_train} train / {n_test} test ready in "
        f"{time.perf_counter() - t0:.1f} s under {data_dir}")
    return paths, uris, missing


def start_pg(work, shared_buffers):
    """A throwaway cluster with the extension created; {'dir', 'env', 'fullenv', 'tables'} or
    {'why': reason}."""
    pg = {"tables": {}}
    sharedir = subprocess.run(["pg_config", "--sharedir"], capture_output=True,
                              text=True).stdout.strip() if shutil.which("pg_config") else ""
    ctl = os.path.join(sharedir or "/usr/share/postgresql/15", "extension", "pg_imgset.control")
    if not os.path.exists(ctl):
        pg["why"] = "n/a — pg_imgset not installed (make -C extension install)"
        return pg
    env = dict(os.environ, PGCLUSTER_SHARED_BUFFERS=shared_buffers)
    try:
        p = run([PGCLUSTER, "start"], "pgcluster start", timeout=180, env=env)
    except RuntimeError as e:
        pg["why"] = f"n/a — {e}"
        return pg
    pg["dir"] = p.stdout.strip().splitlines()[-1]
    out = run([PGCLUSTER, "env", pg["dir"]], "pgcluster env").stdout.strip()
    e = {}
    for kv in out.replace("export ", "").split():
        k, v = kv.split("=", 1)
        e[k] = v.strip("'")
    pg["env"] = e
    pg["fullenv"] = dict(os.environ, **e)
    try:
        run(["psql", "-XAtqc", "CREATE EXTENSION pg_imgset"], "CREATE EXTENSION",
            env=pg["fullenv"])
    except RuntimeError as err:
        pg["why"] = f"n/a — {err}"
    return pg


def stop_pg(pg):
    if pg and pg.get("dir"):
        subprocess.run([PGCLUSTER, "stop", pg["dir"]], capture_output=True, timeout=120)
        pg["dir"] = None


# --------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply the default train counts (20,000 per shape)")
    ap.add_argument("--full", action="store_true", help="full counts: 50,000 / 100,000 train")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per loader (default 3)")
    ap.add_argument("--shapes", default="cifar10,tinyimagenet")
    ap.add_argument("--stores", default=",".join(STORES))
    ap.add_argument("--out", help="keep the data sets in DIR (reused by the next run)")
    ap.add_argument("--imgset", default=os.path.join(ROOT, "build", "imgset"))
    ap.add_argument("--json", help="write every number to FILE")
    ap.add_argument("--no-train", action="store_true", help="loader comparison only")
    ap.add_argument("--no-read", action="store_true", help="training comparison only")
    ap.add_argument("--epoch-cap", type=float, default=3.0,
                    help="stop a PyTorch loader epoch after this many seconds (3)")
    ap.add_argument("--train-epochs", type=int, default=2, help="imgset train epochs (2)")
    ap.add_argument("--torch-runs", type=int, default=3, help="PyTorch training runs (3)")
    ap.add_argument("--torch-train-batches", type=int, default=12,
                    help="batches per PyTorch training run (12)")
    ap.add_argument("--keep-blas", action="store_true",
                    help="do not set OPENBLAS_CORETYPE when OpenBLAS falls back to an old core")
    a = ap.parse_args()
    shapes = [s for s in a.shapes.split(",") if s]
    stores = [s for s in a.stores.split(",") if s]
    for s in shapes:
        if s not in SHAPES:
            ap.error(f"unknown shape {s!r} (cifar10, tinyimagenet)")
    for s in stores:
        if s not in STORES:
            ap.error(f"unknown store {s!r} ({', '.join(STORES)})")

    # OpenBLAS 0.3.21 does not know recent CPUs and falls back to Prescott kernels; PyTorch at
    # its best gets the kernel the CPU can run (as `imgset train` does for itself).
    model, flags, mem = cpu_info()
    detected = detected_blas_core()
    blas_note = ""
    if (not a.keep_blas and "OPENBLAS_CORETYPE" not in os.environ and detected in FALLBACK_CORES):
        better = "SkylakeX" if "avx512f" in flags else "Haswell" if "avx2" in flags else None
        if better:
            os.environ["OPENBLAS_CORETYPE"] = better
            blas_note = f" (OpenBLAS detected {detected}; OPENBLAS_CORETYPE={better} set here)"

    missing = []
    mods = {}
    for mod, pkg in (("numpy", "python3-numpy"), ("torch", "python3-torch"),
                     ("torchvision", "python3-torchvision"), ("h5py", "python3-h5py"),
                     ("psycopg2", "python3-psycopg2")):
        try:
            mods[mod] = __import__(mod)
        except ImportError:
            missing.append(pkg)
    if missing:
        print(f"skipped: {', '.join(missing)} not installed")
        return 0
    if not os.access(a.imgset, os.X_OK):
        print(f"skipped: {a.imgset} not built (make all)")
        return 0
    np, torch = mods["numpy"], mods["torch"]

    info, libs, config, core = torch_blas_line(torch)
    print(f"machine: {model}, {os.cpu_count()} cores, {mem / 2**30:.1f} GiB; torch "
          f"{torch.__version__} (BLAS_INFO={info}; {libs}; "
          f"{config or 'no OpenBLAS'}; core {core or '?'}){blas_note}; "
          f"torchvision {mods['torchvision'].__version__}, h5py {mods['h5py'].__version__}, "
          f"numpy {np.__version__}")
    print(f"load average at start {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores: other "
          f"work shares these CPUs, so the numbers are noisy (min–max shows how much)")
    sys.stdout.flush()

    counts = {s: (SHAPES[s][1] if a.full else max(BATCH * 4, int(SHAPES[s][0] * a.scale)),
                  SHAPES[s][2]) for s in shapes}
    work = tempfile.mkdtemp(prefix="compare_torch.")
    data_dir = os.path.abspath(a.out) if a.out else os.path.join(work, "data")
    os.makedirs(data_dir, exist_ok=True)
    results = {"machine": model, "torch": torch.__version__, "blas_core": core,
               "counts": counts, "epochs": a.epochs, "read": [], "train": None}
    pg = None
    t_start = time.perf_counter()

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)  # also when started in the background (SIG_IGN)
    try:
        if "pg" in stores and not a.no_read:
            big = a.full or max(c[0] for c in counts.values()) > 40000
            pg = start_pg(work, "2GB" if big else "1GB")
            if pg.get("why"):
                log(f"  pg: {pg['why']}")
        data = {}
        for s in shapes:
            st = stores if not a.no_read else ["mmap"]
            data[s] = prepare(a.imgset, data_dir, s, counts[s][0], counts[s][1], st, pg or {})

        if not a.no_read:
            # One intra-op thread: the per-batch tensor ops are small, and a second OpenMP
            # thread on a busy 2-core machine made them up to 25x slower (workers use 1 anyway).
            torch.set_num_threads(1)
            for s in shapes:
                paths, uris, why = data[s]
                n = counts[s][0]
                for store in stores:
                    row = {"store": store, "shape": s, "images": n, "torch": {}, "imgset": None}
                    results["read"].append(row)
                    if store in why:
                        row["note"] = why[store] if why[store].startswith("n/a") else \
                            "n/a — " + why[store]
                        log(f"  {store} {s}: {row['note']}")
                        continue
                    for variant, make in torch_loaders(torch, np, store, paths, s, n, pg):
                        for w in (0, 2):
                            log(f"  {store} {s}: pytorch {variant}, {w} workers ...")
                            try:
                                row["torch"][f"{variant}, {w}w"] = time_loader(
                                    torch, lambda: make(w), a.epochs, n, a.epoch_cap)
                            except Exception as e:  # noqa: BLE001 — report and go on
                                row["torch"][f"{variant}, {w}w"] = {"error": str(e)}
                                log(f"    failed: {e}")
                    log(f"  {store} {s}: imgset read ...")
                    try:
                        row["imgset"] = imgset_read(a.imgset, uris[store], a.epochs, work)
                    except RuntimeError as e:
                        row["imgset_error"] = str(e)
                        log(f"    failed: {e}")
                    ok = {k: v for k, v in row["torch"].items() if "median" in v}
                    if ok:
                        best = max(ok, key=lambda k: ok[k]["median"])
                        row["torch_best"], row["torch_best_config"] = ok[best], best
                        if row["imgset"]:
                            row["ratio"] = row["imgset"]["median"] / ok[best]["median"]
                    log(f"    pytorch best {fmt_cell(row.get('torch_best'))} "
                        f"[{row.get('torch_best_config')}], imgset {fmt_cell(row['imgset'])}")

        if not a.no_train and "cifar10" in data:
            paths = data["cifar10"][0]
            log("  training: pytorch cnn-small ...")
            tt = torch_train(torch, np, paths["mmap"], a.torch_runs, a.torch_train_batches,
                             2 * a.torch_train_batches)
            log("  training: imgset train ...")
            it = imgset_train(a.imgset, paths["mmap"], a.train_epochs, counts["cifar10"][1], work)
            results["train"] = {"torch": tt, "imgset": it}
        elif not a.no_train:
            log("  training: skipped (needs the cifar10 shape in --shapes)")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        stop_pg(pg)
        shutil.rmtree(work, ignore_errors=True)  # with --out the data lives elsewhere

    report(results, a)
    print(f"total {time.perf_counter() - t_start:.0f} s; load average at the end "
          f"{os.getloadavg()[0]:.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def report(results, a):
    if results["read"]:
        print()
        print(f"Loader only, warm cache, images/s: median (min–max) of {a.epochs} epochs after "
              f"one untimed epoch. PyTorch: DataLoader batch {BATCH}, shuffle, float normalised "
              f"NCHW, best of 0/2 workers [config]; imgset: read --batch 256 --workers 2 --float. "
              f"* = PyTorch epochs stopped after {a.epoch_cap:g} s, rate over the batches read.")
        hdr = ("store", "shape", "PyTorch best [config]", "imgset", "ratio", "goal", "met")
        rows = []
        for r in results["read"]:
            if "note" in r:
                rows.append((r["store"], r["shape"], r["note"], "", "", f"≥{GOAL[r['store']]:g}×",
                             ""))
                continue
            ratio = r.get("ratio")
            rows.append((r["store"], r["shape"],
                         fmt_cell(r.get("torch_best"), f" [{r.get('torch_best_config')}]"),
                         fmt_cell(r["imgset"]) if r["imgset"] else "failed",
                         f"{ratio:.1f}×" if ratio else "n/a", f"≥{GOAL[r['store']]:g}×",
                         ("yes" if ratio >= GOAL[r["store"]] else "no") if ratio else ""))
        table(hdr, rows)
        print()
        print("Every PyTorch configuration (images/s, median (min–max)):")
        rows = []
        for r in results["read"]:
            for k, v in r["torch"].items():
                rows.append((r["store"], r["shape"], k,
                             fmt_cell(v) if "median" in v else "failed: " + v["error"][:60]))
        table(("store", "shape", "PyTorch config", "images/s"), rows)
    t = results["train"]
    if t:
        tt, it = t["torch"], t["imgset"]
        best_fmt = max(tt, key=lambda k: tt[k]["train"]["median"])
        bt, bi = tt[best_fmt]["train"], tt[best_fmt]["infer"]
        print()
        print(f"Training cnn-small, cifar10 shape from the mmap store, batch {BATCH}, 2 threads, "
              f"SGD momentum 0.9, images/s median (min–max). PyTorch: data in memory, "
              f"{a.torch_runs} runs of {a.torch_train_batches} batches (inference "
              f"{2 * a.torch_train_batches}), best memory format [{best_fmt}]; imgset: train "
              f"--epochs {a.train_epochs} (inference = test split / eval seconds).")
        rows = [("train", fmt_cell(bt), fmt_cell(it["train"]),
                 f"{it['train']['median'] / bt['median']:.1f}×", f"≥{TRAIN_GOAL:g}×",
                 "yes" if it["train"]["median"] / bt["median"] >= TRAIN_GOAL else "no"),
                ("inference", fmt_cell(bi), fmt_cell(it["infer"]),
                 f"{it['infer']['median'] / bi['median']:.1f}×" if it["infer"] else "n/a", "",
                 "")]
        table(("mode", "PyTorch", "imgset", "ratio", "goal", "met"), rows)
        for fmt in tt:
            if fmt != best_fmt:
                print(f"PyTorch {fmt}: train {fmt_cell(tt[fmt]['train'])}, "
                      f"inference {fmt_cell(tt[fmt]['infer'])}")
        print(f"imgset train AU (compute / wall) {it['au']:.2f}")


def table(hdr, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(hdr, *rows)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    print(line(hdr))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in rows:
        print(line(r))


if __name__ == "__main__":
    sys.exit(main())
