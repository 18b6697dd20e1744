"""support.py — what the Python package's tests share: the package from build/python, the TAP
helpers of test/interop/tap.py, the CLI's batch digest and ours, small data sets, a throwaway
PostgreSQL cluster.

test/run.sh runs each test_*.py here with /usr/bin/python3 and PYTHONPATH=build/python.
"""
import contextlib
import os
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "interop"))

import tap  # noqa: E402  (test/interop/tap.py: ok, skip, finish, imgset, scratch_dir)
from tap import ROOT, ok, imgset as cli  # noqa: E402,F401

BUILD_PYTHON = os.path.join(ROOT, "build", "python")


def import_imgset(script):
    """The package built into build/python. Where it cannot be built (no python3-dev or numpy
    for this python, or NO_PYTHON) the script is skipped saying why; where it could be, a
    missing package is a failure, not a skip."""
    if BUILD_PYTHON not in sys.path:
        sys.path.insert(0, BUILD_PYTHON)
    try:
        import imgset
        return imgset
    except ImportError as e:
        error = e
    import sysconfig
    headers = os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))
    try:
        import numpy  # noqa: F401
    except ImportError:
        headers = False
    if not headers:
        tap.skip_all(script, "the Python package cannot be built here (python3-dev and numpy "
                             "for /usr/bin/python3)")
    ok(False, "%s: the Python package is not built in build/python (run make): %s"
       % (script, error))
    tap.finish()


def python_env(**extra):
    """os.environ for a child python that imports the package from build/python."""
    env = dict(os.environ)
    env["PYTHONPATH"] = BUILD_PYTHON + (os.pathsep + env["PYTHONPATH"]
                                        if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def run_python(code, timeout=120, **env):
    """Run code in a child /usr/bin/python3 with the package; (status, stdout + stderr)."""
    p = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout,
                       env=python_env(**env))
    return p.returncode, p.stdout


def cli_digest(uri, *args):
    """The batch digest `imgset read URI ARGS --digest` prints (after its warm-up epoch, the
    timed epochs 0, 1, …), or None."""
    status, out, err = cli("read", uri, "--digest", *args)
    for line in out.splitlines():
        if line.startswith("batch digest "):
            return line.split()[2]
    print("# imgset read %s %s: status %d: %s" % (uri, " ".join(args), status, err.strip()))
    return None


def loader_digest(loader, epochs):
    """The digest `imgset read --digest` would print for the same batches: XXH3-128 over each
    batch's indices (int64), labels (int32) and uint8 pixels, for `epochs` iterations."""
    import numpy

    parts = []
    for _ in range(epochs):
        for images, labels in loader:
            parts += [loader.indices.tobytes(), numpy.asarray(labels).astype(numpy.int32)
                      .tobytes(), numpy.ascontiguousarray(images).tobytes()]
    from imgset import _imgset
    return _imgset.xxh3_128_hex(b"".join(parts))


def make_stores(workdir, like="cifar10", train=700, test=50, seed=2, kinds=None):
    """One data set in several stores under workdir: {kind: uri}; hdf5 where the build has it."""
    from imgset import _imgset

    base = "mmap:" + os.path.join(workdir, like + "-m")
    _imgset.generate(like, base, train, test, seed)
    uris = {"mmap": base}
    wanted = kinds or ["files", "hdf5", "hdf5-gzip"]
    have = _imgset.backends()
    targets = {"files": "files:" + os.path.join(workdir, like + "-f"),
               "hdf5": "hdf5:" + os.path.join(workdir, like + ".h5"),
               "hdf5-gzip": "hdf5:" + os.path.join(workdir, like + "-gz.h5") +
                            "?compression=gzip"}
    for kind in wanted:
        if kind.split("-")[0] not in have:
            continue
        _imgset.convert(base, targets[kind])
        uris[kind] = targets[kind]
    return uris


def rss_mb():
    """This process's resident set size in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def thread_count():
    """Threads of this process (from /proc)."""
    return len(os.listdir("/proc/self/task"))


@contextlib.contextmanager
def pg_cluster():
    """A throwaway cluster (test/pgcluster.sh) with database imgset_py and the extension; yields
    its postgresql:// URI prefix (add &dataset=NAME), or None when PostgreSQL is not here."""
    script = os.path.join(ROOT, "test", "pgcluster.sh")
    try:
        p = subprocess.run([script, "start"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=120)
    except OSError:
        yield None
        return
    if p.returncode != 0:
        print("# pgcluster.sh start: " + p.stderr.strip().replace("\n", "\n# "))
        yield None
        return
    cluster = p.stdout.strip()
    try:
        env = subprocess.run([script, "env", cluster], stdout=subprocess.PIPE, text=True,
                             check=True).stdout
        settings = dict(kv.split("=", 1) for kv in shlex.split(env.replace("export ", "")))
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", settings["PGHOST"], "-p",
                settings["PGPORT"], "-U", settings["PGUSER"]]
        subprocess.run(psql + ["-d", "postgres", "-c", "CREATE DATABASE imgset_py"], check=True)
        subprocess.run(psql + ["-d", "imgset_py", "-c", "CREATE EXTENSION pg_imgset"],
                       check=True)
        uri = "postgresql:///imgset_py?host=%s&port=%s&user=%s" % (
            settings["PGHOST"], settings["PGPORT"], settings["PGUSER"])
        yield PgCluster(uri, cluster, psql)
    finally:
        subprocess.run([script, "stop", cluster], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


class PgCluster:
    """A started cluster: its URI prefix, folder and psql command line."""

    def __init__(self, uri, folder, psql):
        self.uri, self.folder, self.psql = uri, folder, psql

    def dataset(self, name):
        return self.uri + "&dataset=" + name

    def sql(self, query, database="imgset_py"):
        """Run one statement with psql; its output."""
        return subprocess.run(self.psql + ["-d", database, "-Atc", query], check=True,
                              stdout=subprocess.PIPE, text=True).stdout

    def stop(self):
        """Stop the server now (immediate shutdown), as if it went away."""
        bindir = os.environ.get("IMGSET_PG_BINDIR") or subprocess.run(
            ["pg_config", "--bindir"], stdout=subprocess.PIPE, text=True).stdout.strip()
        cmd = [os.path.join(bindir, "pg_ctl"), "-D", os.path.join(self.folder, "data"), "-m",
               "immediate", "-w", "stop"]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
