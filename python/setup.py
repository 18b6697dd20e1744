"""setup.py — the C extension of the imgset package, for pip (`pip install --no-build-isolation
./python` from the repository root): the loaders library is built by the project's Makefile
(`make python-flags`), which also says how to compile against it and link it."""
import glob
import os
import shlex
import subprocess

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("IMGSET_ROOT") or os.path.dirname(HERE)


def library_flags():
    """(compile flags, link flags) from `make python-flags`, which builds libimgset.a first."""
    try:
        out = subprocess.run(["make", "-s", "-C", ROOT, "python-flags"], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit("imgset: `make -C %s python-flags` failed (%s): run `make` there, it "
                         "says which library is missing (./deps.sh installs them)" % (ROOT, e))
    flags = dict(line.split(" ", 1) for line in out.splitlines()
                 if line.startswith(("CFLAGS ", "LDFLAGS ")))
    if set(flags) != {"CFLAGS", "LDFLAGS"}:
        raise SystemExit("imgset: `make python-flags` printed no flags:\n" + out)
    return shlex.split(flags["CFLAGS"]), shlex.split(flags["LDFLAGS"])


compile_flags, link_flags = library_flags()
setup(
    ext_modules=[Extension(
        "imgset._imgset",
        sources=sorted(glob.glob(os.path.join("src", "*.c"))),
        include_dirs=["src"],
        extra_compile_args=["-std=c11"] + compile_flags,
        extra_link_args=link_flags,
    )],
)
