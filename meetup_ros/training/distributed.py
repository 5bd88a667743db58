"""Data-parallel setup when launched by ``torchrun`` (gloo on CPU, nccl on CUDA).

Gradients are averaged with one all-reduce of all gradients flattened together after each
backward pass (what DistributedDataParallel does, without wrapping the model: trainers whose
loss closes over the bare module keep working). The loss value DFW needs is averaged the same
way, so every rank computes the same ``gamma`` and the weights stay identical.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size``; ``owns_group`` if it set it up."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and shows progress."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True when the environment names a world of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: str) -> DistributedContext:
    """Join the process group if launched with several processes; else a 1-process context.

    ``device`` decides the backend: ``cuda...`` uses nccl (and this process's GPU is
    ``cuda:LOCAL_RANK``), anything else gloo.
    """
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size(),
                                  int(os.environ.get("LOCAL_RANK", "0")), owns_group=False)
    if not launched_by_torchrun():
        return DistributedContext()
    backend = "nccl" if device.startswith("cuda") else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    ctx = DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank,
                             owns_group=True)
    logger.info("data-parallel: rank %d of %d (%s)", ctx.rank, ctx.world_size, backend)
    return ctx


def device_for(ctx: DistributedContext, device: str) -> torch.device:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun; other devices are kept."""
    if ctx.enabled and device == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return torch.device(device)


def barrier(ctx: DistributedContext) -> None:
    """Wait for every rank. Called before leaving the group after a run: rank 0 still writes
    the last checkpoint and metrics, and a rank that tore gloo down while its peer was busy
    was seen to abort the peer (SIGABRT, "terminate called without an active exception")."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()


def teardown(ctx: DistributedContext) -> None:
    """Leave the process group if :func:`setup` joined it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_module(ctx: DistributedContext, module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not ctx.enabled:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor, src=0)


def average_gradients(ctx: DistributedContext, params: list[torch.Tensor]) -> None:
    """Average ``p.grad`` over ranks with one all-reduce (a missing grad counts as zero)."""
    if not ctx.enabled:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        chunk = flat[offset:offset + n].view_as(g)
        if p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)
        offset += n


def average_scalar(ctx: DistributedContext, value: torch.Tensor) -> torch.Tensor:
    """The mean of a 0-dim tensor over ranks (a copy; the input is not changed)."""
    if not ctx.enabled:
        return value
    out = value.detach().clone()
    dist.all_reduce(out)
    return out / ctx.world_size


def is_main_process() -> bool:
    """True on rank 0 (or without torchrun); usable after :func:`teardown` (reads RANK).

    Trainers call it before writing exported weights so that only one rank writes them.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0
