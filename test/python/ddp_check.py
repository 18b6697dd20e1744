"""ddp_check.py — one rank of test_distributed.py, started by `python3 -m torch.distributed.run
--nproc_per_node 2`: reads its shard of one epoch through imgset.Loader (rank and world size
from the gloo process group), trains cnn-small with DistributedDataParallel on every batch,
and writes what it saw to OUT/rank<r>.json for the test to check.

usage: ddp_check.py URI OUT"""
import json
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import imgset
from imgset.models import make_model

uri, out = sys.argv[1], sys.argv[2]
dist.init_process_group("gloo")
torch.set_num_threads(1)
loader = imgset.Loader(uri, batch_size=32, seed=3, workers=1)
H, W, C = loader.shape
torch.manual_seed(dist.get_rank())   # different initial weights: DDP must broadcast rank 0's
model = DistributedDataParallel(make_model("cnn-small", C, H, W, len(loader.classes)))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
indices, steps = [], 0
for images, labels in loader:   # a rank with more batches than the other would hang here
    indices += loader.indices.tolist()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(images), labels).backward()
    opt.step()
    steps += 1
checksum = sum(float(p.double().sum()) for p in model.module.parameters())
with open(os.path.join(out, "rank%d.json" % dist.get_rank()), "w") as f:
    json.dump({"rank": loader.rank, "world_size": loader.world_size, "len": len(loader),
               "steps": steps, "indices": indices, "checksum": checksum}, f)
dist.destroy_process_group()
