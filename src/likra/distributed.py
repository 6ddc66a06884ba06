"""Data-parallel helpers for runs under `accelerate launch`: one process writes, all compute."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return rank_and_world()[0] == 0


def barrier() -> None:
    if rank_and_world()[1] > 1:
        dist.barrier()


def all_gather(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order (just [obj] in a single process)."""
    rank, world = rank_and_world()
    if world == 1:
        return [obj]
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, obj)
    return gathered


def start() -> None:
    """Join the process group that `accelerate launch` prepared (a no-op in a plain process). Without
    CUDA the processes are data-parallel CPU workers (gloo)."""
    import torch
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available())
