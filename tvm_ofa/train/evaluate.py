"""Batch-norm recalibration and accuracy of extracted subnets."""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from tvm_ofa.arch import ArchConfig
from tvm_ofa.data import ImageDataset, elastic_batches

# The batch-norm recalibration every subnet gets, whether it is measured for the accuracy predictor
# or built into a library: the same training images (seed 1), so the accuracy measured for an
# arch is the accuracy of the library compiled from it.
CALIB_BATCHES, CALIB_BATCH_SIZE = 16, 128


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


def library_accuracy(run: Callable[[np.ndarray], np.ndarray], data: ImageDataset, resolution: int,
                     batch_size: int = 500) -> float:
    """Top-1 accuracy (0..1) of a compiled library on ``data``, one image per call.

    Parameters
    ----------
    run : callable
        ``run(x) -> logits`` for a ``1 x 3 x resolution x resolution`` float32 array, as a loaded
        artifact is called (an artifact is compiled for batch 1).
    data : ImageDataset
        Preprocessed as for training and evaluation (resize, normalization); ``batch_size`` is only
        how many images are resized at a time.
    """
    correct = total = 0
    for x, y, _ in elastic_batches(data, batch_size, [resolution], seed=0, augment=False, shuffle=False,
                                   drop_last=False):
        images = x.numpy()
        pred = np.array([int(np.argmax(run(images[i:i + 1])[0])) for i in range(len(images))])
        correct += int((pred == y.numpy()).sum())
        total += len(pred)
    return correct / max(total, 1)


class SubnetEvaluator:
    """Accuracy of many subnets of one supernet on one dataset, BN recalibrated per subnet.

    The resized calibration and evaluation images are made once per resolution and kept, in
    channels-last layout (on the 2-core CPUs the depthwise convolutions run about 3x faster in
    it), so evaluating the next subnet costs only its forward passes.

    Parameters
    ----------
    supernet : nn.Module
        Has ``extract(arch)``.
    train, val : ImageDataset
        Recalibration images come from ``train`` (the same batches for every subnet), accuracy
        from ``val``.
    calib_batches, batch_size : int
        Recalibration uses ``calib_batches`` batches of ``batch_size`` training images.
    max_val_batches : int, optional
        Evaluate on at most this many batches of ``batch_size`` images.
    """

    def __init__(self, supernet: nn.Module, train: ImageDataset, val: ImageDataset,
                 calib_batches: int = CALIB_BATCHES, batch_size: int = CALIB_BATCH_SIZE,
                 device: torch.device | str = "cpu", max_val_batches: int | None = None):
        self.supernet, self.train, self.val = supernet, train, val
        self.calib_batches, self.batch_size, self.device = calib_batches, batch_size, torch.device(device)
        self.max_val_batches = max_val_batches
        self._cache: dict[int, tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor]]]] = {}

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.device).contiguous(memory_format=torch.channels_last)

    def _images(self, resolution: int):
        if resolution not in self._cache:
            calib = [self._layout(x) for x, _, _ in elastic_batches(
                self.train, self.batch_size, [resolution], seed=1, augment=False, max_batches=self.calib_batches)]
            val = [(self._layout(x), y) for x, y, _ in elastic_batches(
                self.val, self.batch_size, [resolution], seed=0, augment=False, shuffle=False, drop_last=False,
                max_batches=self.max_val_batches)]
            self._cache[resolution] = calib, val
        return self._cache[resolution]

    @property
    def n_images(self) -> int:
        """How many images each accuracy is measured on."""
        n = len(self.val)
        return n if self.max_val_batches is None else min(n, self.max_val_batches * self.batch_size)

    @torch.no_grad()
    def __call__(self, arch: ArchConfig) -> float:
        """Top-1 accuracy (0..1) of ``arch``'s subnet, its BN recalibrated first."""
        calib, val = self._images(arch.resolution)
        sub = self.supernet.extract(arch).to(self.device).to(memory_format=torch.channels_last)
        recalibrate_bn(sub, calib)
        correct = sum(int((sub(x).argmax(1).cpu() == y).sum()) for x, y in val)
        return correct / max(sum(len(y) for _, y in val), 1)


def evaluate_subnet(supernet: nn.Module, arch: ArchConfig, train: ImageDataset, val: ImageDataset,
                    calib_batches: int = CALIB_BATCHES, batch_size: int = CALIB_BATCH_SIZE,
                    device: torch.device | str = "cpu",
                    max_val_batches: int | None = None) -> float:
    """Extract ``arch``, recalibrate its batch norm on training batches, return its val accuracy.

    For many subnets keep one :class:`SubnetEvaluator`: it resizes the images once."""
    return SubnetEvaluator(supernet, train, val, calib_batches, batch_size, device, max_val_batches)(arch)


def subnet_extractor(supernet: nn.Module, checkpoint: str | None, calib_batches: int = CALIB_BATCHES,
                     batch_size: int = CALIB_BATCH_SIZE):
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
