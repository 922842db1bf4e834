"""``tvm-ofa demo``: the README's first command, run on the embedded default."""
from __future__ import annotations

import argparse

HELP = "run the main job on the embedded default (shipped checkpoint and tuning logs)"
DESCRIPTION = """Run the end-to-end job on the embedded default: load the shipped supernet, take
its smallest, a middle and its largest subnet, and describe each one."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", metavar="FILE", help="use this supernet instead of the shipped one")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from tvm_ofa.cli._common import load_model
    from tvm_ofa.nn.profile import count_macs

    net, source = load_model(args)
    space = net.space
    middle = space.sample(np.random.default_rng(0), resolution=space.resolutions[len(space.resolutions) // 2])
    print(f"supernet: {source} ({net.width_mult}x width, {net.n_classes} classes, "
          f"{space.size():.2e} subnets)")
    print(f"{'subnet':<26} {'params':>9} {'MACs':>9}  output")
    for arch in (space.smallest(), middle, space.largest()):
        sub = net.extract(arch)
        with torch.no_grad():
            out = sub(torch.zeros(1, 3, arch.resolution, arch.resolution))
        params = sum(p.numel() for p in sub.parameters())
        macs = count_macs(arch, net.width_mult, net.n_classes, net.stem_stride)
        print(f"{arch.id:<26} {params / 1e6:>8.2f}M {macs / 1e6:>8.1f}M  {tuple(out.shape)}")
    return 0
