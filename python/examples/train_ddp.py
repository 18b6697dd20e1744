#!/usr/bin/python3
"""train_ddp.py — the same training on several processes with DistributedDataParallel: each
rank reads its own shard through imgset.Loader (rank and world size come from the process
group), and every rank gets the same number of batches.

    python3 -m torch.distributed.run --standalone --nproc_per_node 2 \\
        python/examples/train_ddp.py mmap:data/cifar10 --epochs 3 --out model.pt
"""
import argparse
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import imgset
from imgset.models import make_model


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("uri")
    p.add_argument("--model", default="cnn-small")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch", type=int, default=128, help="per rank")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default="model.pt")
    args = p.parse_args()

    dist.init_process_group("gloo")   # RANK, WORLD_SIZE, MASTER_* from torch.distributed.run
    rank = dist.get_rank()
    torch.set_num_threads(1)
    train = imgset.Loader(args.uri, batch_size=args.batch, shuffle=True, seed=0, augment=True,
                          workers=args.workers)   # this rank's shard of every epoch
    H, W, C = train.shape
    torch.manual_seed(0)   # the same initial weights on every rank (DDP also broadcasts them)
    model = DistributedDataParallel(make_model(args.model, C, H, W, len(train.classes)))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    for epoch in range(args.epochs):
        train.set_epoch(epoch)
        start, loss_sum = time.perf_counter(), torch.zeros(1)
        for images, labels in train:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(images), labels)
            loss.backward()   # gradients are averaged over the ranks here
            opt.step()
            loss_sum += loss.detach()
        dist.all_reduce(loss_sum)
        if rank == 0:
            print(f"epoch {epoch}: {time.perf_counter() - start:.2f} s, {len(train)} batches "
                  f"per rank, mean train loss "
                  f"{float(loss_sum) / (len(train) * dist.get_world_size()):.4f}", flush=True)
    if rank == 0:
        torch.save({"model": args.model, "input": (C, H, W), "classes": train.classes,
                    "state_dict": model.module.state_dict()}, args.out)
        print(f"saved {args.out}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
