"""Once-for-All's claim on our data: subnets taken from the supernet (BN recalibrated, no retraining)
versus the same architectures trained alone from scratch for as many epochs as the supernet's
first phase. Writes docs/TRAINING.md.

    python bench/training_report.py scratch --config configs/fmnist-cpu.yaml   # trains 3 nets alone
    python bench/training_report.py report  --config configs/fmnist-cpu.yaml   # evaluates, writes the doc

Both steps are resumable: finished architectures are kept in <out_dir>/scratch.json.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tvm_ofa.data import batches_per_epoch, elastic_batches
from tvm_ofa.nn.checkpoint import load_supernet, read_checkpoint
from tvm_ofa.nn.ofa_mbv3 import OFAMobileNetV3
from tvm_ofa.nn.profile import count_macs
from tvm_ofa.train.config import load_train_config
from tvm_ofa.train.evaluate import accuracy, evaluate_subnet
from tvm_ofa.train.shrink import load_datasets


def three_archs(space):
    """Smallest, a middle and the largest network, each at the middle resolution."""
    r = space.resolutions[len(space.resolutions) // 2]
    middle = space.sample(np.random.default_rng(0), resolution=r)
    return {"smallest": space.smallest(r), "middle": middle, "largest": space.largest(r)}


def train_alone(cfg, arch, train, epochs, lr, seed=0):
    """Train the static subnet of ``arch`` from a fresh initialization with the supernet's first
    phase recipe (SGD nesterov, cosine, label smoothing), at the arch's own resolution."""
    torch.manual_seed(seed)
    net = OFAMobileNetV3(n_classes=len(train.classes), width_mult=cfg.width_mult, stem_stride=cfg.stem_stride,
                         dropout_rate=cfg.dropout_rate,
                         space=load_space(cfg)).extract(arch).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=cfg.momentum, nesterov=True,
                          weight_decay=cfg.weight_decay)
    per_epoch = batches_per_epoch(len(train), cfg.batch_size, True, cfg.max_batches_per_epoch)
    total, done = int(round(epochs * per_epoch)), 0
    for epoch in range(math.ceil(epochs)):
        for x, y, _ in elastic_batches(train, cfg.batch_size, [arch.resolution], seed=cfg.seed, epoch=epoch,
                                       max_batches=min(per_epoch, total - done)):
            for g in opt.param_groups:
                g["lr"] = 0.5 * lr * (1 + math.cos(math.pi * done / total))
            loss = F.cross_entropy(net(x), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
    return net.eval()


def load_space(cfg):
    from tvm_ofa.arch import SearchSpace

    return SearchSpace.from_dict({**SearchSpace().to_dict(), **cfg.space}) if cfg.space else SearchSpace()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=("scratch", "report"))
    p.add_argument("--config", required=True)
    p.add_argument("--out", default="docs/TRAINING.md")
    args = p.parse_args()
    cfg = load_train_config(args.config)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train, val = load_datasets(cfg)
    space = load_space(cfg)
    archs = three_archs(space)
    first = cfg.phases[0]
    results_path = Path(cfg.out_dir) / "scratch.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}

    if args.step == "scratch":
        for name, arch in archs.items():
            if name in results:
                continue
            start = time.time()
            net = train_alone(cfg, arch, train, first.epochs, first.lr)
            results[name] = {"arch_id": arch.id, "val_acc": accuracy(net, val, arch.resolution, 256),
                             "seconds": round(time.time() - start, 1), "epochs": first.epochs}
            print(name, results[name], flush=True)
            results_path.parent.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=1))
        return 0

    ckpt = Path(cfg.out_dir) / "supernet.pt"
    net = load_supernet(ckpt)
    meta = read_checkpoint(ckpt).get("meta") or {}
    history = (meta.get("trainer") or {}).get("history", [])
    rows = []
    for name, arch in archs.items():
        sup = evaluate_subnet(net, arch, train, val, calib_batches=16, batch_size=256)
        alone = results.get(name, {}).get("val_acc")
        rows.append((name, arch, sup, alone))
    cpu = platform.processor() or platform.machine()
    try:
        import tvm

        cpu = tvm.target.codegen.llvm_get_system_cpu()
    except Exception:  # the report does not need tvm
        pass
    lines = [
        "# Training the supernet",
        "",
        f"Command: `tvm-ofa train --config {args.config}`, then `python bench/training_report.py scratch|report "
        f"--config {args.config}` (this file is written by the latter).",
        "",
        f"- dataset: {cfg.dataset} ({len(train)} training images after `train_subset`, {len(val)} validation "
        f"images held out of the training split), upsampled to {list(space.resolutions)} px, grey repeated to 3 channels",
        f"- network: OFA MobileNetV3, width {cfg.width_mult}, stem stride {cfg.stem_stride}, {net.n_classes} classes; "
        f"space k {list(space.ks_choices)}, e {list(space.e_choices)}, d {list(space.d_choices)}",
        f"- machine: {cpu}, {torch.get_num_threads()} threads, CPU only; batch {cfg.batch_size}",
        "",
        "## Phases",
        "",
        "| phase | stage | epochs | steps | wall time | val acc largest | val acc smallest |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for h in history:
        wall = f"{h['seconds'] / 60:.1f} min" if "seconds" in h else "see note"
        lines.append(f"| {h['phase']} | {h['stage']} | {h.get('epochs', '')} | {h['steps']} | {wall} | "
                     f"{h.get('val_acc_largest', float('nan')):.3f} | {h.get('val_acc_smallest', float('nan')):.3f} |")
    lines += [
        "",
        "Per-phase validation figures are on at most 20 batches, taken at the end of each phase.",
        "",
        "## Subnets from the supernet versus trained alone",
        "",
        f"Accuracy on the {len(val)} held-out validation images. 'From the supernet': extracted, batch norm "
        f"recalibrated on 16 training batches, no retraining. 'Alone': the same architecture trained from "
        f"scratch for {first.epochs} epochs (the supernet's first phase) with the same recipe.",
        "",
        "| subnet | arch id | MMACs | from the supernet | trained alone | alone: wall time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, arch, sup, alone in rows:
        macs = count_macs(arch, net.width_mult, net.n_classes, net.stem_stride) / 1e6
        a = "not run" if alone is None else f"{alone:.3f}"
        sec = results.get(name, {}).get("seconds")
        lines.append(f"| {name} | `{arch.id}` | {macs:.1f} | {sup:.3f} | {a} | "
                     f"{'' if sec is None else f'{sec / 60:.1f} min'} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
