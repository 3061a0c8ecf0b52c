"""evolens under DDP: the same three lines on every rank; rank 0 captures, every rank pauses together.

    python -m torch.distributed.run --standalone --nproc_per_node 2 examples/ddp_train.py RUN_DIR [--steps 40]
        [--no-monitor] [--pause-at STEP] [--shard-probes]

A tiny autoencoder trained with DistributedDataParallel on the gloo backend (CPU). With ``--pause-at``, a rule
on a snapshot metric asks to pause at that snapshot: both ranks stop at the same step. Each rank prints its
stopping step and a hash of its parameters. With ``--shard-probes`` every rank samples half of the probes and
rank 0 gathers them into each snapshot.
"""

import argparse
import hashlib

import torch
import torch.distributed as dist

import evolens
from evolens.detect import Threshold

parser = argparse.ArgumentParser()
parser.add_argument("run_dir")
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--no-monitor", action="store_true")
parser.add_argument("--pause-at", type=int, default=None)
parser.add_argument("--shard-probes", action="store_true")
parser.add_argument("--results", default=None, help="also write each rank's line to RESULTS-<rank>.txt")
args = parser.parse_args()

dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Tanh(), torch.nn.Linear(4, 8))
ddp = torch.nn.parallel.DistributedDataParallel(model)
optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05)

monitor = None
if not args.no_monitor:
    def pause_signal(monitor, step, arrays):  # a stand-in for any snapshot metric a rule watches
        return {"pause_signal": float(args.pause_at is not None and step >= args.pause_at)}

    monitor = evolens.Monitor(args.run_dir, lambda p: model(p.noise), every=5, model=model,
                              probes=evolens.Probes.from_noise(6, 8, seed=0), on_snapshot=[pause_signal],
                              rules=[Threshold("pause_signal", above=0.5, pause=True)],
                              shard_probes=args.shard_probes)

data = torch.Generator().manual_seed(100 + rank)
stopped = None
for step in range(args.steps):
    x = torch.randn(16, 8, generator=data)
    loss = ((ddp(x) - x) ** 2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if monitor is not None and monitor.step(step, loss=loss.item()).should_pause:
        stopped = step
        break
if monitor is not None:
    monitor.close()
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest()
line = f"rank {rank} capturing {monitor.is_capturing if monitor else None} stopped {stopped} params {digest}"
print(line, flush=True)
if args.results:  # the ranks' stdout lines can interleave; a file per rank cannot
    with open(f"{args.results}-{rank}.txt", "w") as handle:
        handle.write(line + "\n")
dist.barrier()  # both ranks leave together: a gloo peer that vanishes mid-teardown aborts the other
dist.destroy_process_group()
