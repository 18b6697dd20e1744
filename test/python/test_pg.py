"""test_pg.py — the Python package on the postgresql:// store, against a throwaway cluster: the
C loader's batches (digest equal to `imgset read --digest`, also resized by the server), the
wait for a batch releases the GIL, Dataset in DataLoader workers and a fork()ed child leave the
parent's connections alone, a server gone mid-epoch raises imgset.Error."""
import os
import subprocess
import sys
import threading

import support
from support import ok, tap

imgset = support.import_imgset("test_pg.py")
if "postgresql" not in imgset._imgset.backends():
    tap.skip_all("test_pg.py", "this build has no postgresql store (libpq)")
import numpy  # noqa: E402
import torch.utils.data  # noqa: E402


def digests(pg, mixed_pg):
    want = support.cli_digest(pg, "--epochs", "2", "--batch", "64", "--seed", "9")
    for workers in (0, 2):
        loader = imgset.Loader(pg, batch_size=64, seed=9, dtype="uint8", workers=workers)
        got = support.loader_digest(loader, 2)
        ok(want and got == want, "postgresql, %d workers: the digest of 2 epochs equals imgset "
                                 "read --digest (%s)" % (workers, got))
    want = support.cli_digest(mixed_pg, "--size", "24", "--epochs", "1", "--batch", "8",
                              "--augment")
    loader = imgset.Loader(mixed_pg, size=24, batch_size=8, seed=1, augment=True, dtype="uint8")
    ok(want and support.loader_digest(loader, 1) == want,
       "postgresql, mixed sizes resized by the server: the CLI's batches")


# Run in a child with a time limit: if the wait held the GIL, the thread that releases the lock
# could never run and the child would hang until killed.
GIL_CHILD = r"""
import subprocess, sys, threading, time, imgset
uri, table, psql = sys.argv[1], sys.argv[2], sys.argv[3:]
loader = imgset.Loader(uri, batch_size=16, workers=0)
locker = subprocess.Popen(psql, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
locker.stdin.write("BEGIN; LOCK TABLE %s IN ACCESS EXCLUSIVE MODE; SELECT 'locked';\n" % table)
locker.stdin.flush()
assert locker.stdout.readline().strip() == "locked"
ran = []
def release():
    time.sleep(1.0)
    ran.append(time.monotonic())
    locker.stdin.write("COMMIT;\n")
    locker.stdin.close()
thread = threading.Thread(target=release)
thread.start()
start = time.monotonic()
images, labels = next(iter(loader))     # blocks on the lock until the thread commits
waited = time.monotonic() - start
thread.join()
locker.wait()
print("waited %.2f s; the releasing thread ran while we waited: %s" % (waited, ran[0] < start + waited))
"""


def gil_released(pg, cluster):
    table = cluster.sql("SELECT rel FROM imgset.splits WHERE dataset = 'py_cifar' AND "
                        "split = 'train'").strip()
    try:
        p = subprocess.run([sys.executable, "-c", GIL_CHILD, pg, table] + cluster.psql +
                           ["-d", "imgset_py", "-At"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60,
                           env=support.python_env())
        out = p.stdout.strip()
        good = p.returncode == 0 and out.endswith("True")
    except subprocess.TimeoutExpired:
        out, good = "hung: the wait held the GIL", False
    ok(good, "a Python thread runs while the loader waits for a locked table (%s)"
       % out.splitlines()[-1] if out else "no output")


def dataset_and_fork(pg, images, labels):
    ds = imgset.Dataset(pg)
    loader = torch.utils.data.DataLoader(ds, batch_size=100, num_workers=2)
    x = torch.cat([batch[0] for batch in loader])
    ok(numpy.array_equal(x.numpy(), images), "Dataset on postgresql in DataLoader(num_workers=2)"
                                             ": every image, in order")
    ok(ds[7][1] == labels[7], "the parent's connection still works after the workers exited")

    loader = imgset.Loader(pg, batch_size=64, workers=2)
    it = iter(loader)
    next(it)
    pid = os.fork()
    if pid == 0:
        try:
            next(iter(loader))
            code = 1
        except RuntimeError:
            code = 0
        del loader, it
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    rest = sum(1 for _ in it)
    ok(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and rest == len(loader) - 1,
       "a fork()ed child refuses the loader and leaves its connections: the parent reads the "
       "other %d batches" % rest)


def server_gone(pg, cluster):
    loader = imgset.Loader(pg, batch_size=16, workers=2)
    it = iter(loader)
    next(it)
    cluster.stop()
    try:
        for _ in it:
            pass
        ok(False, "a server gone mid-epoch raises imgset.Error")
    except imgset.Error as e:
        ok("postgresql" in str(e) or "server" in str(e) or "connection" in str(e),
           "a server gone mid-epoch raises imgset.Error: %s" % str(e)[:160])
    try:
        imgset.Loader(pg)
        ok(False, "opening a store on a stopped server fails")
    except imgset.Error as e:
        ok("imgset_py" in str(e) or "connect" in str(e),
           "opening a store on a stopped server raises imgset.Error: %s" % str(e)[:120])


def main():
    with tap.scratch_dir("imgset-pypg-") as workdir, support.pg_cluster() as cluster:
        if cluster is None:
            tap.skip_all("test_pg.py", "no PostgreSQL cluster could be started")
        uris = support.make_stores(workdir, kinds=[])
        pg = cluster.dataset("py_cifar")
        imgset.convert(uris["mmap"], pg)
        mixed = "mmap:" + os.path.join(workdir, "mixed")
        imgset.generate("mixed", mixed, train=30, test=5, seed=3)
        mixed_pg = cluster.dataset("py_mixed")
        imgset.convert(mixed, mixed_pg)
        folder = os.path.join(workdir, "cifar10-m")
        images = numpy.load(os.path.join(folder, "train_images.npy"))
        labels = numpy.load(os.path.join(folder, "train_labels.npy"))
        digests(pg, mixed_pg)
        gil_released(pg, cluster)
        dataset_and_fork(pg, images, labels)
        server_gone(pg, cluster)
    tap.finish()


if __name__ == "__main__":
    main()
