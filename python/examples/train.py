#!/usr/bin/python3
"""train.py — train an image classifier in PyTorch on a data set in any store, read through
imgset.Loader (batches arrive as torch tensors without a copy).

    python3 python/examples/train.py mmap:data/cifar10 --epochs 5 --out model.pt
    python3 python/examples/train.py "postgresql:///db?dataset=cifar10" --model resnet8
"""
import argparse
import time

import torch
import torch.nn.functional as F

import imgset
from imgset.models import make_model


def evaluate(model, loader):
    """Accuracy on every batch of the loader."""
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in loader:
            correct += int((model(images).argmax(1) == labels).sum())
            total += len(labels)
    return correct / max(total, 1)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("uri", help="files:DIR, mmap:DIR, hdf5:FILE, postgresql://…?dataset=NAME")
    p.add_argument("--model", default="cnn-small", help="cnn-small, resnet8, mlp, densenet-tiny")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--size", type=int, help="resize + center-crop to N×N (mixed sizes)")
    p.add_argument("--augment", action="store_true", help="random crop and flip")
    p.add_argument("--workers", type=int, default=2, help="loader threads")
    p.add_argument("--out", default="model.pt", help="where the trained model goes")
    args = p.parse_args()

    train = imgset.Loader(args.uri, batch_size=args.batch, shuffle=True, seed=0, augment=args.augment,
                          size=args.size, workers=args.workers)
    test = imgset.Loader(args.uri, split="test", batch_size=256, shuffle=False, size=args.size,
                         workers=args.workers)
    H, W, C = train.shape
    torch.manual_seed(0)
    model = make_model(args.model, C, H, W, len(train.classes))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    for epoch in range(args.epochs):
        model.train()
        start, loss_sum = time.perf_counter(), 0.0
        for images, labels in train:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            opt.step()
            loss_sum += float(loss)
        seconds = time.perf_counter() - start
        print(f"epoch {epoch}: {seconds:.2f} s, train loss {loss_sum / len(train):.4f}, "
              f"test accuracy {evaluate(model, test):.4f}", flush=True)
    torch.save({"model": args.model, "input": (C, H, W), "classes": train.classes,
                "state_dict": model.state_dict()}, args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
