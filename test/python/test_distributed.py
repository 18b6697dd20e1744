"""test_distributed.py — two processes under `python3 -m torch.distributed.run --nproc_per_node
2` with gloo (ddp_check.py): each takes rank and world size from the process group, the ranks
get the same number of batches (641 images: no DDP hang at the end of the epoch), their shards
are disjoint and cover floor(641 / 2) * 2 images, and after a DDP epoch every rank holds the
same weights."""
import json
import os
import subprocess
import sys

import support
from support import ok, tap

imgset = support.import_imgset("test_distributed.py")
import torch.distributed  # noqa: E402

if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    tap.skip_all("test_distributed.py", "this torch has no gloo backend")

# Debian's torch 1.13 under Python 3.11 cannot parse torch.distributed.run's default
# --redirects / --tee of "0" (its enum lookup skips zero): 2 (stderr only) parses.
RUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
       "--redirects", "2", "--tee", "2"]


def main():
    with tap.scratch_dir("imgset-pyddp-") as work:
        uri = "mmap:" + os.path.join(work, "data")
        imgset.generate("cifar10", uri, train=641, test=10, seed=6)
        try:
            p = subprocess.run(RUN + [os.path.join(support.HERE, "ddp_check.py"), uri, work],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               timeout=300, env=support.python_env(GLOO_SOCKET_IFNAME="lo"))
            status, output = p.returncode, p.stdout
        except subprocess.TimeoutExpired as e:
            status, output = "timeout (a rank waited for the other: uneven shards?)", str(e.output)
        ok(status == 0, "torch.distributed.run --nproc_per_node 2 (gloo) ran one DDP epoch: %s"
           % status)
        if status != 0:
            print("# " + output.strip()[-2000:].replace("\n", "\n# "))
        ranks = []
        for r in range(2):
            path = os.path.join(work, "rank%d.json" % r)
            if os.path.exists(path):
                with open(path) as f:
                    ranks.append(json.load(f))
        if len(ranks) != 2:
            tap.finish()
        ok([(r["rank"], r["world_size"]) for r in ranks] == [(0, 2), (1, 2)],
           "rank and world size come from the process group")
        ok(ranks[0]["len"] == ranks[1]["len"] == ranks[0]["steps"] == ranks[1]["steps"],
           "both ranks have %s batches and took that many steps" % [r["len"] for r in ranks])
        a, b = set(ranks[0]["indices"]), set(ranks[1]["indices"])
        ok(not a & b and len(a) + len(b) == 640 and len(a) == len(b) == 320,
           "the shards are disjoint and cover floor(641 / 2) * 2 = 640 images (%d + %d)"
           % (len(a), len(b)))
        ok(abs(ranks[0]["checksum"] - ranks[1]["checksum"]) <= 1e-9 * abs(ranks[0]["checksum"]),
           "after the DDP epoch both ranks hold the same weights (%.9g, %.9g)"
           % (ranks[0]["checksum"], ranks[1]["checksum"]))
    tap.finish()


main()
