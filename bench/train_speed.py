#!/usr/bin/env python
"""Training throughput of the supernet's largest network on this CPU: images per second of one
SGD step (forward, backward, update) in NCHW and channels-last, fp32 and bf16 autocast, at the
given batch sizes. docs/TRAINING.md quotes it; run it alone on the machine.

    python bench/train_speed.py --batch 64 128 --resolution 40 --threads 2
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def images_per_second(layout: str, precision: str, batch: int, resolution: int, steps: int) -> float:
    import torch
    import torch.nn.functional as F

    from tvm_ofa.arch import SearchSpace
    from tvm_ofa.nn.ofa_mbv3 import OFAMobileNetV3

    torch.manual_seed(0)
    space = SearchSpace(resolutions=(resolution,))
    net = OFAMobileNetV3(n_classes=10, space=space)
    fmt = torch.channels_last if layout == "channels-last" else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    arch = space.largest(resolution)
    x = torch.randn(batch, 3, resolution, resolution).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(net(x, arch).float(), y)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main(argv=None) -> int:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, nargs="+", default=[64, 128])
    p.add_argument("--resolution", type=int, default=40)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10, help="timed steps per setting (after 3 warm-up steps)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"largest network, {args.resolution} px, {args.threads} threads, torch {torch.__version__}")
    for layout, precision, batch in itertools.product(("NCHW", "channels-last"), ("fp32", "bf16"), args.batch):
        ips = images_per_second(layout, precision, batch, args.resolution, args.steps)
        print(f"  {layout:<13} {precision:<4} batch {batch:>4}: {ips:6.0f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
