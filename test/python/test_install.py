"""test_install.py — the package installs as the README says: `make install` puts it in
/usr/bin/python3's site folder (checked with DESTDIR), and `pip install --no-build-isolation
./python` works in a venv made with --system-site-packages; both import from anywhere and read
a batch."""
import os
import shutil
import subprocess
import sys

import support
from support import ok, tap

imgset = support.import_imgset("test_install.py")

READ_A_BATCH = ("import sys, imgset\n"
                "loader = imgset.Loader(sys.argv[1], batch_size=16, dtype='uint8')\n"
                "images, labels = next(iter(loader))\n"
                "print(imgset.__file__, tuple(images.shape))\n")


def run(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=600, **kw)
    if p.returncode != 0:
        print("# " + " ".join(cmd) + ":\n# " + p.stdout.strip().replace("\n", "\n# "))
    return p


def main():
    with tap.scratch_dir("imgset-pyinstall-") as work:
        uri = "mmap:" + os.path.join(work, "data")
        imgset.generate("cifar10", uri, train=40, test=8, seed=1)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

        dest = os.path.join(work, "dest")
        p = run(["make", "-s", "-C", support.ROOT, "install-python", "DESTDIR=" + dest])
        site = [os.path.join(root) for root, dirs, _ in os.walk(dest) if "imgset" in dirs]
        ok(p.returncode == 0 and len(site) == 1 and
           site[0].startswith(os.path.join(dest, "usr", "local", "lib", "python3")),
           "make install-python puts the package under /usr/local/lib/python3*/ (DESTDIR %s)"
           % (site[0][len(dest):] if site else "none"))
        if site:
            p = run([sys.executable, "-c", READ_A_BATCH, uri], cwd="/",
                    env=dict(env, PYTHONPATH=site[0]))
            ok(p.returncode == 0 and p.stdout.startswith(site[0]) and "(16, 32, 32, 3)" in p.stdout,
               "the installed package imports from / and reads a batch")

        # pip builds in the source folder: a copy of python/ keeps the checkout clean.
        source = os.path.join(work, "python")
        shutil.copytree(os.path.join(support.ROOT, "python"), source,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        venv = os.path.join(work, "venv")
        p = run([sys.executable, "-m", "venv", "--system-site-packages", venv])
        pip = os.path.join(venv, "bin", "pip")
        if p.returncode == 0:
            p = run([pip, "install", "--no-build-isolation", "--no-index", "--quiet", source],
                    env=dict(env, IMGSET_ROOT=support.ROOT))
        ok(p.returncode == 0, "pip install --no-build-isolation ./python in a venv with "
                              "--system-site-packages")
        p = run([os.path.join(venv, "bin", "python"), "-c", READ_A_BATCH, uri], cwd="/", env=env)
        ok(p.returncode == 0 and p.stdout.startswith(venv) and "(16, 32, 32, 3)" in p.stdout,
           "the venv's python imports its own imgset and reads a batch: %s" % p.stdout.strip())
    tap.finish()


main()
