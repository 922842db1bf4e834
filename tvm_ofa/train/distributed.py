"""Data-parallel training over ``torch.distributed`` (launched by ``torchrun``).

Gradients are averaged with one bucketed all-reduce per step rather than through the
``DistributedDataParallel`` wrapper: every step runs several sampled subnets whose gradients
accumulate before a single reduction, and the set of parameters a subnet touches changes from one
forward to the next, which DDP's unused-parameter detection handles only for the last forward.
All ranks sample the same subnets (the draws depend on the step, not the rank), so the reduction
covers the same parameters everywhere.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device: torch.device) -> World:
    """Join the process group that ``torchrun`` describes in the environment; single process
    otherwise. gloo on CPU, NCCL on CUDA."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def broadcast_module(module: torch.nn.Module, world: World) -> None:
    """Give every rank rank 0's parameters and buffers."""
    if world.size > 1:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def average_gradients(module: torch.nn.Module, world: World) -> None:
    """Average gradients over ranks (parameters without a gradient count as zero)."""
    if world.size <= 1:
        return
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= world.size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p))
        offset += n


def all_reduce_mean(value: float, world: World) -> float:
    if world.size <= 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item() / world.size)


def shutdown(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def average_buffers(module: torch.nn.Module, world: World) -> None:
    """Average batch-norm running statistics over ranks (each rank saw its own data shard), so
    that every rank holds the same model when it is saved."""
    if world.size <= 1:
        return
    for name, buf in module.named_buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf.data)
            buf.data /= world.size
