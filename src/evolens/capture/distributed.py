"""Rank awareness for distributed training (torch.distributed, torchrun, accelerate, Lightning).

One process captures: global rank 0. Every other rank gets a follower Monitor with the same API that captures
and stores nothing. Pauses are agreed on at the schedule's steps, which every rank reaches together: rank 0
broadcasts its verdict there, so all ranks stop at the same step (a rank that stopped alone would leave the
others waiting in their next collective).
"""

from __future__ import annotations

import os

__all__ = ["broadcast_flag", "distributed_world", "gather_to_rank0", "global_rank"]


def global_rank() -> int:
    """This process's global rank: from ``torch.distributed`` when initialised, else the ``RANK`` variable
    that torchrun, accelerate and Lightning set, else 0."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_rank())
    return int(os.environ.get("RANK", "0") or 0)


def distributed_world() -> int:
    """The number of processes in the initialised default group (1 when not distributed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size())
    return 1


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank (a no-op outside an initialised group of several processes)."""
    import torch
    import torch.distributed as dist

    if distributed_world() == 1:
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.broadcast(tensor, src=0)
    return bool(tensor.item())


def gather_to_rank0(obj: object) -> list | None:
    """Every rank's picklable ``obj``, in rank order, on rank 0 (None on the other ranks); ``[obj]`` outside
    an initialised group of several processes."""
    import torch.distributed as dist

    if distributed_world() == 1:
        return [obj]
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered
