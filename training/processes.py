"""The processes of a data-parallel run under ``torchrun``: one process, or a group (gloo on CPU, NCCL on GPUs)
that gathers tensors, averages gradients and checks that every process holds the same weights.

torch is imported inside the functions: importing the module must not need it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world_size: int = 1
    device: str = "cpu"

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def processes_start() -> Processes:
    """One process, or the group torchrun describes in the environment (gloo on CPU, NCCL on GPUs)."""
    import torch
    import torch.distributed as dist

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world_size == 1:
        return Processes(device="cuda" if cuda else "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local_rank)
    else:  # processes share the cores: oversubscribed threads slow every one of them down
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world_size))))
    return Processes(rank=dist.get_rank(), world_size=world_size, device=f"cuda:{local_rank}" if cuda else "cpu")


def processes_stop(processes: Processes) -> None:
    import torch.distributed as dist

    if processes.distributed and dist.is_initialized():
        dist.destroy_process_group()


def gathered(tensor, processes: Processes):
    """The tensor of every process, concatenated along the first dimension (same shape on each)."""
    import torch
    import torch.distributed as dist

    if not processes.distributed:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(processes.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def parameters_in_sync(parameters, processes: Processes) -> bool:
    """Whether every process holds the same weights (a cheap fingerprint: the sum of each parameter)."""
    import torch

    fingerprint = torch.stack([parameter.detach().double().sum() for parameter in parameters])
    every = gathered(fingerprint.unsqueeze(0), processes)
    return bool(torch.allclose(every, every[:1].expand_as(every), rtol=0, atol=1e-6))


def gradients_average(parameters, processes: Processes) -> None:
    import torch.distributed as dist

    if not processes.distributed:
        return
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad /= processes.world_size
