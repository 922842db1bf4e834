"""Batch-norm recalibration and accuracy of extracted subnets."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from tvm_ofa.arch import ArchConfig
from tvm_ofa.data import ImageDataset, elastic_batches


@torch.no_grad()
def recalibrate_bn(module: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Recompute every BatchNorm's running statistics as the plain average over ``batches``.

    A subnet taken from a supernet inherits statistics gathered over many different subnets;
    once-for-all resets them on a few training batches before evaluation."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the batches
    was_training = module.training
    module.train()
    for x in batches:
        module(x)
    for m, (momentum, _) in zip(bns, saved):
        m.momentum = momentum
    module.train(was_training)
    return module.eval()


@torch.no_grad()
def accuracy(module: nn.Module, data: ImageDataset, resolution: int, batch_size: int = 256,
             device: torch.device | str = "cpu", max_batches: int | None = None) -> float:
    """Top-1 accuracy (0..1) of ``module`` on ``data`` at ``resolution``."""
    module.eval().to(device)
    correct = total = 0
    for x, y, _ in elastic_batches(data, batch_size, [resolution], seed=0, augment=False, shuffle=False,
                                   drop_last=False, max_batches=max_batches):
        pred = module(x.to(device)).argmax(1).cpu()
        correct += int((pred == y).sum())
        total += len(y)
    return correct / max(total, 1)


def evaluate_subnet(supernet: nn.Module, arch: ArchConfig, train: ImageDataset, val: ImageDataset,
                    calib_batches: int = 8, batch_size: int = 128, device: torch.device | str = "cpu",
                    max_val_batches: int | None = None) -> float:
    """Extract ``arch``, recalibrate its batch norm on training batches, return its val accuracy."""
    sub = supernet.extract(arch).to(device)
    batches = (x.to(device) for x, _, _ in elastic_batches(train, batch_size, [arch.resolution], seed=1,
                                                            augment=False, max_batches=calib_batches))
    recalibrate_bn(sub, batches)
    return accuracy(sub, val, arch.resolution, batch_size, device, max_val_batches)


def subnet_extractor(supernet: nn.Module, checkpoint: str | None, calib_batches: int = 16,
                     batch_size: int = 64):
    """A function ``arch -> static subnet`` that recalibrates batch norm on the training data the
    checkpoint was trained on (named in its metadata).

    A supernet's running statistics are averaged over the many subnets trained with it; a subnet
    deployed with them can be far off (once-for-all recalibrates before every evaluation). Without
    a known dataset (official checkpoints, untrained supernets) the plain extraction is returned.
    """
    from tvm_ofa.nn.checkpoint import read_checkpoint

    config = {}
    if checkpoint and str(checkpoint).endswith((".pt", ".pth")):
        data = read_checkpoint(checkpoint)
        if isinstance(data, dict):
            config = ((data.get("meta") or {}).get("config")) or {}
    if not config.get("dataset"):
        return lambda arch: supernet.extract(arch).eval()
    from tvm_ofa.data import load_splits

    keep = ("dataset", "image_size", "val_fraction", "seed", "train_subset")
    train, _ = load_splits(**{k: config[k] for k in keep if config.get(k) is not None or k == "train_subset"})

    def extract(arch: ArchConfig) -> nn.Module:
        sub = supernet.extract(arch)
        batches = (x for x, _, _ in elastic_batches(train, batch_size, [arch.resolution], seed=1, augment=False,
                                                    max_batches=calib_batches))
        return recalibrate_bn(sub, batches)

    return extract
