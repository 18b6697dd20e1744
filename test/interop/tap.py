"""tap.py — the TAP helpers the interop tests share: ok/skip lines, the plan, the imgset CLI.

Each test_*.py here does `import tap`: Python puts a script's own directory first on sys.path,
so this module is found when test/run.sh runs `/usr/bin/python3 test/interop/test_X.py`.
IMGSET and IMGSET_ROOT come from the environment (test/run.sh sets both), else from this
checkout's build/.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager

ROOT = os.environ.get("IMGSET_ROOT") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMGSET = os.environ.get("IMGSET") or os.path.join(ROOT, "build", "imgset")

results = []  # one bool per TAP line printed so far; a skip counts as passed


def ok(cond, what):
    """Print one TAP line; return cond."""
    results.append(bool(cond))
    print(("ok" if cond else "not ok") + " %d - %s" % (len(results), what), flush=True)
    return cond


def skip(what, reason):
    """Print one skipped TAP line (test/run.sh counts it as skipped)."""
    results.append(True)
    print("ok %d - %s # SKIP %s" % (len(results), what, reason), flush=True)


def finish():
    """Print the plan (1..N) and exit: 0 when every line was ok, else 1."""
    print("1..%d" % len(results))
    sys.exit(0 if all(results) else 1)


def skip_all(what, reason):
    """Skip the whole script: one skipped line, the plan, and exit."""
    skip(what, reason)
    finish()


def require_cli():
    """A CLI that is not built is a failure, never a skip: one not-ok line, the plan, exit."""
    if not (os.path.isfile(IMGSET) and os.access(IMGSET, os.X_OK)):
        ok(False, "the imgset CLI is built (%s; run make)" % IMGSET)
        finish()


def imgset(*args, timeout=300, merge=False):
    """Run the CLI; (exit status, stdout, stderr), stderr folded into stdout when merge."""
    p = subprocess.run([IMGSET, *args], stdout=subprocess.PIPE, text=True, timeout=timeout,
                       stderr=subprocess.STDOUT if merge else subprocess.PIPE)
    return p.returncode, p.stdout, p.stderr or ""


@contextmanager
def scratch_dir(prefix):
    """A temporary directory, removed (whatever is left in it) when the block ends."""
    path = tempfile.mkdtemp(prefix=prefix)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
