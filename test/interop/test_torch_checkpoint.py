#!/usr/bin/env python3
"""test_torch_checkpoint.py — our checkpoints in PyTorch.

For each architecture (mlp, cnn-small, resnet8 with batch norm, densenet-tiny), and for mlp
and cnn-small with each other activation, loss and normalisation: train one epoch with
`imgset train` on a small generated set, save the safetensors checkpoint, load its weights into
the PyTorch definition of the same model (test/reference/make_reference.py) with the
activation its metadata records, with load_state_dict(strict=True) — every name, shape and
buffer must match — and run it in evaluation mode on the test images, normalised as the
metadata says ((x/255 - mean) / std per channel, NCHW). Its logits must equal `imgset predict
--json`'s within 1e-4 of their largest magnitude, and its classes must be the same. The
momentum buffers must have the weights' shapes. Prints TAP.
"""
import json
import os
import struct
import sys

import tap
from tap import ok

try:
    import numpy as np
    import torch
except ImportError as e:  # Debian's python3-torch / python3-numpy
    tap.skip_all("test_torch_checkpoint", "missing Python package: %s" % e)

tap.require_cli()
sys.path.insert(0, os.path.join(tap.ROOT, "test", "reference"))
import make_reference as ref  # noqa: E402  (the PyTorch definitions of our models)

MODELS = {"mlp": ref.Mlp, "cnn-small": ref.CnnSmall, "resnet8": ref.ResNet8,
          "densenet-tiny": ref.DenseNetTiny}
# (architecture, imgset train options): every architecture as it comes, then each other
# activation, loss and normalisation on the two architectures that take them
RUNS = [(arch, []) for arch in MODELS] + [
    ("mlp", ["--activation", "leaky-relu", "--leaky-slope", "0.2", "--loss", "bce",
             "--normalize", "minmax"]),
    ("mlp", ["--activation", "tanh", "--loss", "mse", "--mean", "auto", "--std", "auto"]),
    ("mlp", ["--activation", "sigmoid", "--loss", "mae", "--mean", "0.4,0.5,0.6",
             "--std", "0.2,0.25,0.3"]),
    ("cnn-small", ["--activation", "leaky-relu", "--loss", "mse", "--mean", "auto"]),
    ("cnn-small", ["--activation", "tanh", "--loss", "bce", "--normalize", "minmax"]),
    ("cnn-small", ["--activation", "sigmoid", "--loss", "mae", "--std", "auto"]),
]
DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    """{name: numpy array}, metadata — the format read by hand (no safetensors package)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, t in header.items():
        start, end = t["data_offsets"]
        raw = data[8 + n + start:8 + n + end]
        tensors[name] = np.frombuffer(raw, dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
    return tensors, meta


def run(*args):
    """Run the CLI; (whether it succeeded, stderr)."""
    rc, _, err = tap.imgset(*args)
    return rc == 0, err.strip()


def main():
    torch.set_num_threads(1)
    with tap.scratch_dir("imgset-torch-ckpt-") as tmp:
        data = os.path.join(tmp, "d")
        ok(run("gen", "--like", "cifar10", "--train", "256", "--test", "48", "--seed", "4",
               "--out", "mmap:" + data)[0], "generate a small cifar10-like set")
        images = np.load(os.path.join(data, "test_images.npy"))  # (N, H, W, C) uint8
        for n, (model, options) in enumerate(RUNS):
            arch = "%s %s" % (model, " ".join(options)) if options else model
            ckpt = os.path.join(tmp, "%d.safetensors" % n)
            pred = os.path.join(tmp, "%d.json" % n)
            good, err = run("train", "mmap:" + data, "--model", model, "--epochs", "1",
                            "--batch", "32", "--device", "cpu", "--save", ckpt, *options)
            good = good and run("predict", ckpt, "mmap:" + data, "--batch", "16",
                                "--json", pred)[0]
            if not ok(good, "%s: train one epoch, save, predict (%s)" % (arch, err or "ok")):
                continue
            tensors, meta = read_safetensors(ckpt)
            C, H, W, K = (int(meta[k]) for k in ("channels", "height", "width", "classes"))
            mean = np.array(json.loads(meta["mean"]), dtype=np.float32)
            std = np.array(json.loads(meta["std"]), dtype=np.float32)
            x = torch.from_numpy(((images.astype(np.float32) / np.float32(255.0) - mean) / std)
                                 .transpose(0, 3, 1, 2).copy())
            act = ref.activation(meta["activation"], float(meta["leaky_slope"]))
            net = MODELS[model](C, H, W, K, act=act) if meta["activation"] != "relu" \
                else MODELS[model](C, H, W, K)
            wanted = dict(zip(options[::2], options[1::2]))
            ok(meta["version"] == "2" and
               meta["activation"] == wanted.get("--activation", "relu") and
               meta["loss"] == wanted.get("--loss", "cce") and
               meta["normalize"] == wanted.get("--normalize", "meanstd") and
               (options or (mean.tolist() == [0.5] * 3 and std.tolist() == [0.5] * 3)),
               "%s: the metadata records activation %s, loss %s, normalize %s, mean %s, std %s"
               % (arch, meta["activation"], meta["loss"], meta["normalize"], meta["mean"],
                  meta["std"]))
            state = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()
                     if not k.startswith("momentum.")}
            # num_batches_tracked is PyTorch bookkeeping we do not keep (momentum is fixed)
            for name, buf in net.state_dict().items():
                if name.endswith("num_batches_tracked"):
                    state[name] = buf
            try:
                net.load_state_dict(state, strict=True)
                loaded = True
            except RuntimeError as e:
                loaded = False
                print("# " + str(e).replace("\n", "\n# "))
            ok(loaded, "%s: load_state_dict(strict=True) takes every tensor of the checkpoint"
               % arch)
            params = dict(net.named_parameters())
            ok(all("momentum." + n in tensors and tensors["momentum." + n].shape ==
                   tuple(p.shape) for n, p in params.items()),
               "%s: a momentum buffer of the right shape for each of the %d parameters"
               % (arch, len(params)))
            if not loaded:
                continue
            net.eval()
            with torch.no_grad():
                torch_logits = net(x).numpy()
            with open(pred) as f:
                ours = json.load(f)["predictions"]
            our_logits = np.array([p["logits"] for p in ours], dtype=np.float32)
            order = [p["index"] for p in ours]
            torch_logits = torch_logits[order]
            diff = float(np.abs(torch_logits - our_logits).max() /
                         max(float(np.abs(torch_logits).max()), 1e-6))
            ok(diff <= 1e-4, "%s: PyTorch's evaluation logits equal imgset predict's "
               "(%.2g <= 1e-4 of the largest)" % (arch, diff))
            ok((torch_logits.argmax(1) == our_logits.argmax(1)).all(),
               "%s: the same class for all %d test images" % (arch, len(order)))
    tap.finish()


if __name__ == "__main__":
    main()
