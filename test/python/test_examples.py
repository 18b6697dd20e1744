"""test_examples.py — the examples a PyTorch user copies run as their docstrings say, on a small
generated set: python/examples/train.py learns well above chance and saves a model that loads
into imgset.models; train_ddp.py trains on 2 processes under torch.distributed.run."""
import os
import re
import subprocess
import sys

import support
from support import ok, tap

imgset = support.import_imgset("test_examples.py")
import torch  # noqa: E402
from imgset.models import make_model  # noqa: E402

EXAMPLES = os.path.join(support.ROOT, "python", "examples")


def run(args, timeout=600, **env):
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=timeout, env=support.python_env(**env))
    if p.returncode != 0:
        print("# " + p.stdout.strip()[-1500:].replace("\n", "\n# "))
    return p


def check_saved(path, what):
    saved = torch.load(path)
    C, H, W = saved["input"]
    net = make_model(saved["model"], C, H, W, len(saved["classes"]))
    net.load_state_dict(saved["state_dict"])
    ok(saved["model"] == "cnn-small" and (C, H, W) == (3, 32, 32) and len(saved["classes"]) == 10
       and net(torch.zeros(2, C, H, W)).shape == (2, 10),
       "%s: the saved model loads into imgset.models.make_model and runs" % what)


def main():
    with tap.scratch_dir("imgset-pyexamples-") as work:
        uri = "mmap:" + os.path.join(work, "data")
        imgset.generate("cifar10", uri, train=4000, test=500, seed=5)
        model = os.path.join(work, "model.pt")
        p = run([sys.executable, os.path.join(EXAMPLES, "train.py"), uri, "--epochs", "3",
                 "--batch", "64", "--out", model])
        accuracy = [float(a) for a in re.findall(r"test accuracy ([0-9.]+)", p.stdout)]
        ok(p.returncode == 0 and len(accuracy) == 3 and accuracy[-1] > 0.4,
           "train.py: 3 epochs of cnn-small on 4,000 images, test accuracy %s > 0.4 (chance "
           "0.1)" % accuracy)
        if os.path.exists(model):
            check_saved(model, "train.py")

        model = os.path.join(work, "ddp.pt")
        p = run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 "--nproc_per_node", "2", "--redirects", "2", "--tee", "2",
                 os.path.join(EXAMPLES, "train_ddp.py"), uri, "--epochs", "1", "--out", model],
                GLOO_SOCKET_IFNAME="lo")
        ok(p.returncode == 0 and "16 batches per rank" in p.stdout,
           "train_ddp.py under torch.distributed.run --nproc_per_node 2: 16 batches per rank "
           "(4,000 images, batch 128)")
        if os.path.exists(model):
            check_saved(model, "train_ddp.py")
    tap.finish()


main()
