#!/usr/bin/python3
"""make_reference.py — PyTorch reference tensors for test/unit/test_model.c.

Builds each architecture of trainer/nn/graph.h in PyTorch (same layers, same state_dict names),
with the case's hidden activation (ReLU, LeakyReLU, tanh, sigmoid) and loss (softmax
cross-entropy; BCE of per-class sigmoids, MSE or MAE of the softmax, each against one-hot
targets), fills the parameters and the input from a formula the C test reproduces exactly,
and runs:
  1. a training-mode forward, the loss (mean) and backward;
  2. two steps of torch.optim.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
     (the second after a fresh forward/backward on the same batch);
  3. an evaluation-mode forward.
It writes, per case, test/reference/<case>.safetensors (our own loader reads it) holding:
  labels (N) as F32, logits (N, K), loss (1), grad.<name> (every stride-th element of the
  gradient of each trainable tensor, stride = max(1, numel // 256)), running.<name> (BN
  running statistics after the first forward), loss2 (1), after.<name> (every stride-th
  parameter after the two SGD steps), eval_logits (N, K).

The formula (float32 arithmetic throughout, as the C test does it):
  u = the SplitMix64 stream of loaders/rng.h, rng_make(REF_SEED, fnv1a64(name)), each draw
      (next >> 40) * 2^-24;
  conv / linear weight and bias: (2u - 1) * float32(1 / sqrt(fan_in)), fan_in = the
      weight's numel / its first dimension;
  BN weight: 0.5 + u; BN bias: (2u - 1) * 0.5; running_mean: (2u - 1) * 0.2;
  running_var: 0.5 + u;
  input x (N, C, H, W) in NCHW order: 2u - 1 from the stream named "input".
Run it with Debian's python3-torch: /usr/bin/python3 test/reference/make_reference.py
"""
import importlib.util
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

REF_SEED = 20240601
MASK = (1 << 64) - 1
CASES = [
    # name, arch, C, H, W, K, N[, activation, loss]
    ("mlp", "mlp", 2, 3, 5, 5, 4),
    ("cnn-small", "cnn-small", 3, 9, 7, 5, 4),
    ("resnet8", "resnet8", 3, 8, 8, 5, 4),
    ("resnet8-large", "resnet8", 1, 130, 130, 3, 2),
    ("densenet-tiny", "densenet-tiny", 3, 8, 8, 5, 4),
    ("mlp-leaky-relu-bce", "mlp", 2, 3, 5, 5, 4, "leaky-relu", "bce"),
    ("mlp-tanh-mse", "mlp", 2, 3, 5, 5, 4, "tanh", "mse"),
    ("mlp-sigmoid-mae", "mlp", 2, 3, 5, 5, 4, "sigmoid", "mae"),
    ("cnn-small-leaky-relu-mse", "cnn-small", 3, 9, 7, 5, 4, "leaky-relu", "mse"),
    ("cnn-small-tanh-mae", "cnn-small", 3, 9, 7, 5, 4, "tanh", "mae"),
    ("cnn-small-sigmoid-bce", "cnn-small", 3, 9, 7, 5, 4, "sigmoid", "bce"),
]
LEAKY_SLOPE = 0.1   # the references' negative slope (the trainer's default is 0.01)


def activation(name, slope=LEAKY_SLOPE):
    """The hidden activation called `name` in graph.h (relu, leaky-relu, tanh, sigmoid)."""
    return {"relu": F.relu, "leaky-relu": lambda x: F.leaky_relu(x, slope),
            "tanh": torch.tanh, "sigmoid": torch.sigmoid}[name]


def loss_of(name, logits, labels):
    """The mean loss `name` (nn.h's NnLoss) of logits against labels, as one-hot targets."""
    if name == "cce":
        return F.cross_entropy(logits, labels)
    onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    if name == "bce":
        return F.binary_cross_entropy(torch.sigmoid(logits), onehot)
    probs = F.softmax(logits, 1)
    return F.mse_loss(probs, onehot) if name == "mse" else F.l1_loss(probs, onehot)
SGD = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)


def fnv1a64(name):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def uniforms(stream, count):
    """count draws of rng_uniform(rng_make(REF_SEED, stream)) as float32."""
    state = (REF_SEED ^ ((stream * 0x9E3779B97F4A7C15) & MASK) ^ 0xD1B54A32D192ED03) & MASK
    out = np.empty(count, dtype=np.float32)
    for i in range(count):
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        z ^= z >> 31
        out[i] = np.float32((z >> 40) * (1.0 / 16777216.0))
    return out


# The PyTorch definitions of our models are the Python package's (python/imgset/models.py),
# loaded from the source tree by path so that this script needs no built package.
_spec = importlib.util.spec_from_file_location(
    "imgset_models", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                  "python", "imgset", "models.py"))
models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(models)
Mlp, CnnSmall, ResNet8 = models.Mlp, models.CnnSmall, models.ResNet8
DenseNetTiny, ARCHS = models.DenseNetTiny, models.ARCHS


def fill_parameters(net):
    """Set every parameter and BN buffer from the formula in the module docstring."""
    one, two, half = np.float32(1), np.float32(2), np.float32(0.5)
    state = net.state_dict()
    with torch.no_grad():
        for name, t in state.items():
            if name.endswith("num_batches_tracked"):
                continue
            prefix, kind = name.rsplit(".", 1)
            u = uniforms(fnv1a64(name), t.numel())
            weight = state.get(prefix + ".weight")
            is_bn = (prefix + ".running_mean") in state
            if is_bn:
                if kind == "weight":
                    v = half + u
                elif kind == "bias":
                    v = (two * u - one) * half
                elif kind == "running_mean":
                    v = (two * u - one) * np.float32(0.2)
                else:
                    v = half + u
            else:
                fan_in = weight.numel() // weight.shape[0]
                bound = np.float32(1.0 / math.sqrt(fan_in))
                v = (two * u - one) * bound
            t.copy_(torch.from_numpy(v.reshape(tuple(t.shape))))


def sampled(t):
    flat = t.detach().reshape(-1)
    return flat[:: max(1, flat.numel() // 256)].clone()


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def make_case(name, arch, C, H, W, K, N, act="relu", loss="cce", out_dir="."):
    torch.manual_seed(0)
    net = ARCHS[arch](C, H, W, K, act=activation(act)) if act != "relu" else ARCHS[arch](C, H, W, K)
    fill_parameters(net)
    x = torch.from_numpy((np.float32(2) * uniforms(fnv1a64("input"), N * C * H * W) - np.float32(1)).reshape(N, C, H, W))
    labels = torch.tensor([(3 * n + 1) % K for n in range(N)])
    net.train()
    out = {"labels": labels.to(torch.float32)}
    logits = net(x)
    value = loss_of(loss, logits, labels)
    value.backward()
    out["logits"], out["loss"] = logits.detach(), value.detach().reshape(1)
    for pname, p in net.named_parameters():
        out["grad." + pname] = sampled(p.grad)
    for bname, b in net.named_buffers():
        if not bname.endswith("num_batches_tracked"):
            out["running." + bname] = b.detach().clone()
    opt = torch.optim.SGD(net.parameters(), **SGD)
    opt.step()
    opt.zero_grad()
    loss2 = loss_of(loss, net(x), labels)
    loss2.backward()
    opt.step()
    out["loss2"] = loss2.detach().reshape(1)
    for pname, p in net.named_parameters():
        out["after." + pname] = sampled(p)
    net.eval()
    with torch.no_grad():
        out["eval_logits"] = net(x)
    meta = {"arch": arch, "channels": str(C), "height": str(H), "width": str(W), "classes": str(K),
            "batch": str(N), "ref_seed": str(REF_SEED), "torch": torch.__version__,
            "sgd": json.dumps(SGD)}
    if (act, loss) != ("relu", "cce"):   # the first cases' files predate these keys
        meta.update(activation=act, leaky_slope=repr(LEAKY_SLOPE), loss=loss)
    path = os.path.join(out_dir, name + ".safetensors")
    write_safetensors(path, out, meta)
    print(f"{path}: loss {value.item():.6f} loss2 {loss2.item():.6f} ({os.path.getsize(path)} bytes)")


def main():
    torch.set_num_threads(1)
    out_dir = os.path.dirname(os.path.abspath(__file__))
    for case in CASES:
        make_case(*case, out_dir=out_dir)


if __name__ == "__main__":
    sys.exit(main())
