#!/usr/bin/env python3
"""calibrate_generator.py — how hard is the synthetic generator? (a tool, not a test_ file)

Builds a tiny program from loaders/generate.c, makes images of the cifar10 shape and reports
the test accuracy of (1) a linear classifier on raw pixels (ridge regression to one-hot, fitted
exactly), (2) the same on the amplitude spectrum and (3) a tiny 2-conv CNN trained for one epoch with PyTorch (when installed). The
generator's nuisance constants (loaders/generate.c) are tuned so that the CNN lands well above
chance but far from 100% after one epoch, and clearly above the linear classifier.

    /usr/bin/python3 test/interop/calibrate_generator.py --full   # the calibration (~1 min)
    /usr/bin/python3 test/interop/calibrate_generator.py          # quick TAP check (~5 s)

Options: --like SHAPE (fixed-size shapes only), --train N, --test N, --seed S, --epochs E.
With no --full it runs as a quick TAP check under test/run.sh (2,000 images, a few seconds): a
ridge classifier on the amplitude spectrum must score above 0.5 and below 0.98, and a linear
classifier on (pooled) pixels must be at least 0.2 below it.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.environ.get("IMGSET_ROOT") or os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# Dumps the generator's images without the rest of the library (store_open_with is stubbed:
# generate_open() is not used here).
DUMPER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "generate.h"
#include "error.h"
Store *store_open_with(const StoreOps *ops, const char *name, const char *location, const void *arg)
{ (void)ops; (void)name; (void)location; return NULL; }
int main(int argc, char **argv)
{
    if (argc != 6) { fprintf(stderr, "usage: dump LIKE TRAIN TEST SEED DIR\n"); return 2; }
    GenerateParams p = {argv[1], atoll(argv[2]), atoll(argv[3]), strtoull(argv[4], 0, 10)};
    Generator *g = generator_new(&p);
    if (!g) { fprintf(stderr, "%s\n", imgset_error()); return 1; }
    const DatasetInfo *info = generator_info(g);
    for (int s = 0; s < 2; s++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s.u8", argv[5], split_names[s]);
        FILE *img = fopen(path, "wb");
        snprintf(path, sizeof path, "%s/%s.labels", argv[5], split_names[s]);
        FILE *lab = fopen(path, "wb");
        if (!img || !lab) { perror(path); return 1; }
        ImageShape shape = info->split[s].shape;
        size_t cap = 512 * 512 * 3;
        unsigned char *buf = malloc(cap);
        for (long long i = 0; i < info->split[s].count; i++) {
            int label;
            if (generator_image(g, s, i, buf, cap, &shape, &label) < 0) {
                fprintf(stderr, "%s\n", imgset_error()); return 1;
            }
            fwrite(buf, 1, image_shape_bytes(shape), img);
            fwrite(&label, 4, 1, lab);
        }
        fclose(img); fclose(lab); free(buf);
        printf("%d %d %d\n", shape.height, shape.width, shape.channels);
    }
    generator_free(g);
    return 0;
}
"""


def generate(like, train, test, seed, work):
    """Compile the dumper and return (x_train, y_train, x_test, y_test), x as (N,H,W,C) uint8."""
    src = os.path.join(work, "dump.c")
    exe = os.path.join(work, "dump")
    with open(src, "w") as f:
        f.write(DUMPER)
    loaders = os.path.join(ROOT, "loaders")
    subprocess.run(["cc", "-std=c11", "-D_GNU_SOURCE", "-O2", "-I" + loaders, src,
                    os.path.join(loaders, "generate.c"), os.path.join(loaders, "error.c"),
                    os.path.join(loaders, "dataset.c"), "-lm", "-o", exe], check=True)
    start = time.time()
    out = subprocess.run([exe, like, str(train), str(test), str(seed), work], check=True,
                         capture_output=True, text=True).stdout.split("\n")
    seconds = time.time() - start
    data = []
    for split, line in zip(("train", "test"), out):
        h, w, c = map(int, line.split())
        x = np.fromfile(os.path.join(work, split + ".u8"), dtype=np.uint8).reshape(-1, h, w, c)
        y = np.fromfile(os.path.join(work, split + ".labels"), dtype=np.int32)
        data += [x, y]
    return data, seconds


def linear_accuracy(x_train, y_train, x_test, y_test, classes, pool=1):
    """Ridge regression from raw pixels (averaged over pool x pool blocks) to one-hot labels,
    solved exactly."""
    def features(x):
        n, h, w, c = x.shape
        x = x[:, :h - h % pool, :w - w % pool].astype(np.float64) / 255.0
        f = x.reshape(n, h // pool, pool, w // pool, pool, c).mean(axis=(2, 4)).reshape(n, -1)
        return np.hstack([f, np.ones((len(f), 1))])
    a = features(x_train)
    targets = np.eye(classes)[y_train]
    lam = 1.0 * len(a)   # strong-ish ridge: raw pixels outnumber the images
    if len(a) < a.shape[1]:   # the dual form is the same solution, cheaper for few images
        w = a.T @ np.linalg.solve(a @ a.T + lam * np.eye(len(a)), targets)
    else:
        w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ targets)
    return float(np.mean(np.argmax(features(x_test) @ w, axis=1) == y_test))


def spectrum_accuracy(x_train, y_train, x_test, y_test, classes):
    """Ridge regression on the log amplitude spectrum's low frequencies (up to 8 cycles per
    image): shift- and phase-invariant features, close to what a CNN learns here."""
    def features(x):
        f = np.abs(np.fft.rfft2(x.astype(np.float32) / 255.0, axes=(1, 2)))
        f = np.concatenate([f[:, :9], f[:, -8:]], axis=1)[:, :, :9]
        return np.log1p(f).reshape(len(x), -1)
    a, b = features(x_train), features(x_test)
    mean, sd = a.mean(axis=0), a.std(axis=0) + 1e-6
    a = np.hstack([(a - mean) / sd, np.ones((len(a), 1))])
    b = np.hstack([(b - mean) / sd, np.ones((len(b), 1))])
    w = np.linalg.solve(a.T @ a + 10.0 * np.eye(a.shape[1]), a.T @ np.eye(classes)[y_train])
    return float(np.mean(np.argmax(b @ w, axis=1) == y_test))


def cnn_accuracy(x_train, y_train, x_test, y_test, classes, epochs, seed):
    """A tiny 2-conv CNN, SGD with momentum, batch 64: test accuracy after each epoch."""
    import torch
    import torch.nn as nn
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    def tensors(x, y):
        t = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255.0)
        return (t - 0.5) / 0.25, torch.from_numpy(y.astype(np.int64))
    xt, yt = tensors(x_train, y_train)
    xv, yv = tensors(x_test, y_test)
    h = x_train.shape[1]
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * (h // 4) * (h // 4), classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    accuracies = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = order[i:i + 64]
            opt.zero_grad()
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            accuracies.append(float((model(xv).argmax(1) == yv).float().mean()))
    return accuracies


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--full", action="store_true", help="run the CNN calibration")
    ap.add_argument("--like", default="cifar10")
    ap.add_argument("--train", type=int)
    ap.add_argument("--test", type=int)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    train = args.train or (5000 if args.full else 2000)
    test = args.test or (2000 if args.full else 1000)
    with tempfile.TemporaryDirectory() as work:
        (x_train, y_train, x_test, y_test), seconds = generate(args.like, train, test,
                                                               args.seed, work)
    classes = int(max(y_train.max(), y_test.max())) + 1
    chance = 1.0 / classes
    counts = np.bincount(y_train, minlength=classes)
    if not args.full:
        # Quick: 2x2-pooled pixels keep the solve small (a few seconds on 2 cores).
        linear = linear_accuracy(x_train, y_train, x_test, y_test, classes, pool=2)
        spectrum = spectrum_accuracy(x_train, y_train, x_test, y_test, classes)
        checks = [
            (counts.min() > 0, "every class occurs in %d train images" % train),
            (spectrum > 0.5, "learnable: spectrum classifier %.3f above 0.5 (chance %.2f)"
             % (spectrum, chance)),
            (spectrum < 0.98, "not trivial: spectrum classifier %.3f below 0.98" % spectrum),
            (linear < spectrum - 0.2, "linear on pooled pixels %.3f well below spectrum %.3f"
             % (linear, spectrum))]
        for n, (cond, what) in enumerate(checks, 1):
            print("%sok %d - %s" % ("" if cond else "not ", n, what))
        print("1..%d" % len(checks))
        return 0 if all(cond for cond, _ in checks) else 1
    print("shape %s, %d train / %d test images %s, %d classes, seed %d (generated in %.2f s)"
          % (args.like, train, test, "x".join(map(str, x_train.shape[1:])), classes, args.seed,
             seconds))
    linear = linear_accuracy(x_train, y_train, x_test, y_test, classes)
    print("chance                      %.3f" % chance)
    print("linear (ridge, raw pixels)  %.3f" % linear)
    print("spectrum (ridge, |FFT|)     %.3f"
          % spectrum_accuracy(x_train, y_train, x_test, y_test, classes))
    try:
        import torch  # noqa: F401
    except ImportError:
        print("cnn                         skipped: PyTorch is not installed")
        return 0
    start = time.time()
    acc = cnn_accuracy(x_train, y_train, x_test, y_test, classes, args.epochs, args.seed)
    for e, a in enumerate(acc, 1):
        print("cnn epoch %-2d                %.3f" % (e, a))
    print("(cnn: %.1f s, 2 threads)" % (time.time() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
