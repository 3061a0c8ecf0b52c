"""evolens under Hugging Face accelerate: the Monitor is created on every process; rank 0 captures.

    python -m torch.distributed.run --standalone --nproc_per_node 2 examples/accelerate_train.py RUN_DIR
    accelerate launch --config_file CONFIG examples/accelerate_train.py RUN_DIR   # a MULTI_CPU or GPU config

A tiny autoencoder prepared by ``Accelerator`` (multi-CPU, gloo). The sampler uses the unwrapped model. With
``--pause-at`` a rule on a snapshot metric pauses the run there: every process stops at the same step. Each
process writes its stopping step and a hash of its parameters to ``RESULTS-<rank>.txt``.
"""

import argparse
import hashlib

import torch
from accelerate import Accelerator

import evolens
from evolens.detect import Threshold

parser = argparse.ArgumentParser()
parser.add_argument("run_dir")
parser.add_argument("--steps", type=int, default=40)
parser.add_argument("--no-monitor", action="store_true")
parser.add_argument("--pause-at", type=int, default=None)
parser.add_argument("--results", default=None)
args = parser.parse_args()

accelerator = Accelerator(cpu=True)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Tanh(), torch.nn.Linear(4, 8))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
data = torch.utils.data.TensorDataset(torch.randn(16 * args.steps, 8, generator=torch.Generator().manual_seed(1)))
loader = torch.utils.data.DataLoader(data, batch_size=8)
model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
plain_model = accelerator.unwrap_model(model)

monitor = None
if not args.no_monitor:
    def pause_signal(monitor, step, arrays):  # a stand-in for any snapshot metric a rule watches
        return {"pause_signal": float(args.pause_at is not None and step >= args.pause_at)}

    monitor = evolens.Monitor(args.run_dir, lambda p: plain_model(p.noise), every=5, model=plain_model,
                              probes=evolens.Probes.from_noise(6, 8, seed=0), on_snapshot=[pause_signal],
                              rules=[Threshold("pause_signal", above=0.5, pause=True)])

stopped = None
for step, (x,) in enumerate(loader):
    if step == args.steps:
        break
    loss = ((model(x) - x) ** 2).mean()
    optimizer.zero_grad()
    accelerator.backward(loss)
    optimizer.step()
    if monitor is not None and monitor.step(step, loss=loss.item()).should_pause:
        stopped = step
        break
if monitor is not None:
    monitor.close()
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in plain_model.parameters())).hexdigest()
line = f"rank {accelerator.process_index} capturing {monitor.is_capturing if monitor else None} stopped {stopped} params {digest}"
if args.results:
    with open(f"{args.results}-{accelerator.process_index}.txt", "w") as handle:
        handle.write(line + "\n")
accelerator.wait_for_everyone()
accelerator.end_training()
