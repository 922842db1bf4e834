"""Progressive shrinking (Once-for-All, Sec. 3.2): train the largest network, then make kernel
size, depth and expand ratio elastic in turn, each phase sampling several subnets per step and
distilling from the largest network.

Resumable: the supernet and the trainer state are written atomically every ``save_every`` steps
and at every epoch and phase boundary; rerunning with the same ``out_dir`` continues from there.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from tvm_ofa.arch import SearchSpace
from tvm_ofa.data import ImageDataset, batches_per_epoch, elastic_batches, load_splits
from tvm_ofa.errors import ConfigError
from tvm_ofa.nn.checkpoint import load_supernet, read_checkpoint, save_supernet
from tvm_ofa.nn.ofa_mbv3 import OFAMobileNetV3
from tvm_ofa.train import distributed as dist_utils
from tvm_ofa.train.config import PhaseConfig, TrainConfig
from tvm_ofa.train.evaluate import evaluate_subnet

Progress = Callable[[dict[str, Any]], None]


def phase_space(space: SearchSpace, phase: PhaseConfig) -> SearchSpace:
    """The sub-space a phase samples from: choices made elastic so far, the largest elsewhere."""
    ks, es, ds = space.ks_choices, space.e_choices, space.d_choices
    top = lambda values, n: tuple(sorted(values)[-n:])  # noqa: E731
    choices = {
        "largest": (top(ks, 1), top(es, 1), top(ds, 1)),
        "kernel": (ks, top(es, 1), top(ds, 1)),
        # depth 4 -> {3, 4} -> {2, 3, 4}; expand 6 -> {4, 6} -> {3, 4, 6}
        "depth": (ks, top(es, 1), top(ds, phase.stage + 1)),
        "expand": (ks, top(es, phase.stage + 1), ds),
    }[phase.phase]
    return SearchSpace(*choices, resolutions=space.resolutions, n_stages=space.n_stages)


def load_datasets(cfg: TrainConfig) -> tuple[ImageDataset, ImageDataset]:
    """Train and validation splits of the configured dataset (validation held out from train)."""
    return load_splits(cfg.dataset, cfg.val_fraction, cfg.seed, cfg.train_subset, cfg.image_size)


@dataclass
class TrainerState:
    phase_index: int = 0
    epoch: int = 0
    batch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _soft_cross_entropy(logits: torch.Tensor, soft_target: torch.Tensor) -> torch.Tensor:
    return torch.mean(torch.sum(-soft_target * F.log_softmax(logits, dim=1), dim=1))


def _optimizer(net: torch.nn.Module, cfg: TrainConfig, lr: float) -> torch.optim.Optimizer:
    # no weight decay on BN, biases and the kernel-transformation matrices
    decay = [p for n, p in net.named_parameters() if p.dim() == 4 or n.endswith("linear.weight")]
    ids = {id(p) for p in decay}
    rest = [p for p in net.parameters() if id(p) not in ids]
    return torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                            {"params": rest, "weight_decay": 0.0}],
                           lr=lr, momentum=cfg.momentum, nesterov=True)


class _Run:
    """Files of one training run in ``out_dir``."""

    def __init__(self, out_dir: str | Path):
        self.dir = Path(out_dir)
        self.supernet = self.dir / "supernet.pt"
        self.teacher = self.dir / "teacher.pt"
        self.trainer = self.dir / "trainer.pt"


def _identity(cfg: TrainConfig, started: int | None = None) -> dict[str, Any]:
    """What must not change between a run and its resumption: the data, the network and the
    phases begun so far (``started``: how many; None, all). Phases not begun yet may be changed,
    added or removed, so a long run can be given more or fewer epochs while it goes."""
    ident = {k: cfg.to_dict()[k] for k in ("dataset", "width_mult", "stem_stride", "space",
                                           "batch_size", "seed", "train_subset", "val_fraction")}
    phases = cfg.to_dict()["phases"]
    ident["phases"] = phases if started is None else phases[:started]
    return ident


def _same_run(saved: dict[str, Any], cfg: TrainConfig, state: "TrainerState") -> bool:
    if not isinstance(saved, dict) or not isinstance(saved.get("phases"), list):
        return False
    # a phase counts as begun once the state is inside it, or past it
    begun = min(len(cfg.phases), state.phase_index + (1 if state.epoch or state.batch else 0))
    return saved["phases"][:begun] == _identity(cfg, begun)["phases"] and \
        {k: v for k, v in saved.items() if k != "phases"} == \
        {k: v for k, v in _identity(cfg).items() if k != "phases"} and len(saved["phases"]) >= begun


@dataclass
class TrainResult:
    supernet: OFAMobileNetV3
    path: Path
    history: list[dict[str, Any]]


def train_supernet(cfg: TrainConfig, progress: Progress | None = None) -> TrainResult:
    """Run (or resume) progressive shrinking.

    Parameters
    ----------
    cfg : TrainConfig
    progress : callable, optional
        Called with a dict per step (``event="step"``) and per phase end (``event="phase"``);
        only on rank 0.
    """
    progress = progress or (lambda event: None)
    device = _device(cfg.device)
    world = dist_utils.init_from_env(device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = _Run(cfg.out_dir)
    train, val = load_datasets(cfg)
    n_classes = cfg.n_classes or len(train.classes)
    space = SearchSpace.from_dict({**SearchSpace().to_dict(), **cfg.space}) if cfg.space else SearchSpace()
    state = TrainerState()
    trainer_blob: dict[str, Any] = {}
    if run.trainer.is_file() and run.supernet.is_file():
        trainer_blob = read_checkpoint(run.trainer)
        state = TrainerState(**trainer_blob["state"])
        if not _same_run(trainer_blob.get("identity"), cfg, state):
            raise ConfigError(f"{run.dir}: holds a run with a different configuration (data, network "
                              "or a phase already begun); use another out_dir or delete that folder "
                              "to start over")
        net = load_supernet(run.supernet)
    else:
        torch.manual_seed(cfg.seed)
        net = OFAMobileNetV3(n_classes=n_classes, width_mult=cfg.width_mult, space=space,
                             dropout_rate=cfg.dropout_rate, stem_stride=cfg.stem_stride)
    # channels-last: the 2-core CPU trains the largest network at 209 images/s in it against 68
    # in NCHW (batch 128, 40 px, bench/train_speed.py); bf16 autocast was slower in both layouts
    net.to(device, memory_format=torch.channels_last)
    dist_utils.broadcast_module(net, world)
    teacher = (load_supernet(run.teacher).to(device, memory_format=torch.channels_last).eval()
               if run.teacher.is_file() else None)

    def save() -> None:
        dist_utils.average_buffers(net, world)
        if not world.is_main:
            return
        run.dir.mkdir(parents=True, exist_ok=True)
        save_supernet(net, run.supernet, meta={"trainer": dict(vars(state)), "config": cfg.to_dict()})
        blob = {"identity": _identity(cfg), "state": dict(vars(state)),
                "optimizer": optimizer.state_dict() if optimizer is not None else None}
        tmp = run.trainer.with_name(run.trainer.name + ".tmp")
        torch.save(blob, tmp)
        tmp.replace(run.trainer)

    optimizer = None
    for pi, phase in enumerate(cfg.phases):
        if pi < state.phase_index:
            continue
        fresh_phase = state.epoch == 0 and state.batch == 0
        if phase.phase == "expand" and fresh_phase:
            # keep the most important hidden channels in front before widths shrink
            net.sort_channels(expand_stage=phase.stage - 1)
        if phase.phase != "largest" and teacher is None:
            teacher = copy.deepcopy(net).eval()
        sub_space = phase_space(space, phase)
        phase_start = time.time()
        optimizer = _optimizer(net, cfg, phase.lr)
        if not fresh_phase and trainer_blob.get("optimizer"):
            optimizer.load_state_dict(trainer_blob["optimizer"])
        per_epoch = batches_per_epoch(len(train), cfg.batch_size * world.size, True, cfg.max_batches_per_epoch)
        total = max(1, int(round(phase.epochs * per_epoch)))
        n_epochs = math.ceil(total / per_epoch)
        phase_seed = cfg.seed * 1000 + pi
        for epoch in range(state.epoch, n_epochs):
            limit = min(per_epoch, total - epoch * per_epoch)
            net.train()
            for x, y, res in elastic_batches(train, cfg.batch_size, space.resolutions, phase_seed, epoch,
                                             state.batch, shard=(world.rank, world.size), max_batches=limit):
                done = epoch * per_epoch + state.batch
                lr = 0.5 * phase.lr * (1 + math.cos(math.pi * done / total))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                x, y = x.to(device, memory_format=torch.channels_last), y.to(device)
                soft = None
                if teacher is not None and phase.phase != "largest" and cfg.kd_ratio > 0:
                    with torch.no_grad():
                        soft = F.softmax(teacher(x, space.largest(res)), dim=1)
                optimizer.zero_grad(set_to_none=True)
                n_sub = 1 if phase.phase == "largest" else phase.subnets_per_step
                loss_sum = correct = 0.0
                for k in range(n_sub):
                    rng = np.random.default_rng([cfg.seed, pi, epoch, state.batch, k])
                    arch = sub_space.sample(rng, resolution=res)
                    logits = net(x, arch)
                    loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                    if soft is not None:
                        loss = loss + cfg.kd_ratio * _soft_cross_entropy(logits, soft)
                    loss.backward()
                    loss_sum += float(loss.detach())
                    correct += float((logits.argmax(1) == y).float().mean())
                dist_utils.average_gradients(net, world)
                optimizer.step()
                state.batch += 1
                state.step += 1
                if cfg.save_every and state.step % cfg.save_every == 0:
                    save()
                if world.is_main:
                    progress({"event": "step", "phase": f"{phase.phase}{phase.stage if phase.phase in ('depth', 'expand') else ''}",
                              "phase_index": pi, "n_phases": len(cfg.phases), "epoch": epoch,
                              "done": done + 1, "total": total, "loss": loss_sum / n_sub,
                              "acc": correct / n_sub, "lr": lr, "resolution": res})
            state.epoch, state.batch = epoch + 1, 0
            save()
        if phase.phase == "largest":
            teacher = copy.deepcopy(net).eval()
            if world.is_main:
                save_supernet(teacher, run.teacher, meta={"note": "largest network after phase 'largest'"})
        # wall time of this process's part of the phase (a resumed phase counts from the resume)
        summary = {"phase": phase.phase, "stage": phase.stage, "steps": total, "epochs": phase.epochs,
                   "seconds": round(time.time() - phase_start, 1), "world_size": world.size}
        if world.is_main:
            for name, arch in (("largest", space.largest(max(space.resolutions))),
                               ("smallest", space.smallest(min(space.resolutions)))):
                summary[f"val_acc_{name}"] = evaluate_subnet(net, arch, train, val, calib_batches=4,
                                                             batch_size=cfg.batch_size, device=device,
                                                             max_val_batches=20)
            progress({"event": "phase", **summary})
        state.history.append(summary)
        state.phase_index, state.epoch, state.batch = pi + 1, 0, 0
        save()
    dist_utils.shutdown(world)
    return TrainResult(net, run.supernet, state.history)
