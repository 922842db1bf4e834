"""Once-for-All's claim on our data: subnets taken from the supernet (BN recalibrated, no retraining)
against the same architectures trained alone from scratch with the supernet's first-phase recipe
(epochs, learning rate, augmentation, label smoothing), each at its own resolution. Prints the
table docs/TRAINING.md quotes.

    python bench/training_report.py scratch --config configs/fmnist-cpu.yaml   # trains 4 nets alone
    python bench/training_report.py report  --config configs/fmnist-cpu.yaml --checkpoint tvm_ofa/assets/supernet.pt

`scratch` resumes at the last finished epoch of the architecture in training and keeps finished
ones in bench/out/scratch/results.json; `--only NAME` trains one of them.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tvm_ofa.data import batches_per_epoch, elastic_batches, load_fashion_mnist
from tvm_ofa.nn.checkpoint import load_supernet
from tvm_ofa.nn.ofa_mbv3 import OFAMobileNetV3
from tvm_ofa.nn.profile import count_macs
from tvm_ofa.train.config import load_train_config
from tvm_ofa.train.evaluate import SubnetEvaluator, accuracy
from tvm_ofa.train.shrink import _optimizer, load_datasets

STATE_DIR = Path("bench/out/scratch")


def four_archs(space):
    """The smallest subnet at the lowest resolution, the largest at the highest, and two in
    between: the median subnet at the middle resolution and a seeded random one at the highest."""
    res = sorted(space.resolutions)
    return {"smallest": space.smallest(res[0]), "middle": space.middle(res[len(res) // 2]),
            "random": space.sample(np.random.default_rng(0), resolution=res[-1]),
            "largest": space.largest(res[-1])}


def load_space(cfg):
    from tvm_ofa.arch import SearchSpace

    return SearchSpace.from_dict({**SearchSpace().to_dict(), **cfg.space}) if cfg.space else SearchSpace()


def train_alone(cfg, space, arch, train, epochs: float, lr: float, seed: int = 0) -> torch.nn.Module:
    """Train the static subnet of ``arch`` from a fresh initialization, channels-last, resuming
    from the last epoch saved under ``STATE_DIR``."""
    torch.manual_seed(seed)
    net = OFAMobileNetV3(n_classes=len(train.classes), width_mult=cfg.width_mult, stem_stride=cfg.stem_stride,
                         dropout_rate=cfg.dropout_rate, space=space).extract(arch)
    net = net.to(memory_format=torch.channels_last).train()
    opt = _optimizer(net, cfg, lr)
    per_epoch = batches_per_epoch(len(train), cfg.batch_size, True, cfg.max_batches_per_epoch)
    total = int(round(epochs * per_epoch))
    state_path = STATE_DIR / f"{arch.id}.pt"
    start = 0
    if state_path.is_file():
        state = torch.load(state_path, weights_only=True)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        start = int(state["epoch"])
    for epoch in range(start, math.ceil(total / per_epoch)):
        done = epoch * per_epoch
        for x, y, _ in elastic_batches(train, cfg.batch_size, [arch.resolution], seed=cfg.seed, epoch=epoch,
                                       max_batches=min(per_epoch, total - done)):
            for g in opt.param_groups:
                g["lr"] = 0.5 * lr * (1 + math.cos(math.pi * done / total))
            loss = F.cross_entropy(net(x.contiguous(memory_format=torch.channels_last)), y,
                                   label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        torch.save({"net": net.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1}, state_path)
        print(f"  {arch.id}: epoch {epoch + 1} done", flush=True)
    return net.eval()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=("scratch", "report"))
    p.add_argument("--config", required=True)
    p.add_argument("--checkpoint", help="report: the supernet (default: <out_dir>/supernet.pt)")
    p.add_argument("--only", choices=("smallest", "middle", "random", "largest"), help="scratch: one subnet")
    args = p.parse_args()
    cfg = load_train_config(args.config)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train, val = load_datasets(cfg)
    test = load_fashion_mnist("test")
    space = load_space(cfg)
    archs = four_archs(space)
    first = cfg.phases[0]
    results_path = STATE_DIR / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}

    if args.step == "scratch":
        for name, arch in archs.items():
            if name in results or (args.only and name != args.only):
                continue
            start = time.time()
            net = train_alone(cfg, space, arch, train, first.epochs, first.lr)
            results[name] = {"arch_id": arch.id, "epochs": first.epochs, "lr": first.lr,
                             "val_acc": accuracy(net, val, arch.resolution, 500),
                             "test_acc": accuracy(net, test, arch.resolution, 500),
                             "seconds_this_process": round(time.time() - start, 1)}
            print(name, results[name], flush=True)
            results_path.parent.mkdir(parents=True, exist_ok=True)
            results_path.write_text(json.dumps(results, indent=1) + "\n")
        return 0

    net = load_supernet(args.checkpoint or Path(cfg.out_dir) / "supernet.pt")
    on_test = SubnetEvaluator(net, train, test, calib_batches=16, batch_size=cfg.batch_size)
    print(f"| subnet | arch id | MMACs | from the supernet | trained alone | difference |")
    print("| --- | --- | --- | --- | --- | --- |")
    diffs = []
    for name, arch in archs.items():
        sup = on_test(arch)
        alone = results.get(name, {}).get("test_acc")
        macs = count_macs(arch, net.width_mult, net.n_classes, net.stem_stride) / 1e6
        if alone is not None:
            diffs.append(sup - alone)
        print(f"| {name} | `{arch.id}` | {macs:.1f} | {100 * sup:.2f} % | "
              f"{'not run' if alone is None else f'{100 * alone:.2f} %'} | "
              f"{'' if alone is None else f'{100 * (sup - alone):+.2f}'} |")
    if diffs:
        print(f"\nmean difference (supernet - alone) over {len(diffs)} subnets: {100 * np.mean(diffs):+.2f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
