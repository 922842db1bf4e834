#!/usr/bin/env python
"""Does weight prepacking speed up the tuned library? (issue 3's layout question)

MetaSchedule's ``RewriteLayout`` postprocessor can store a convolution's weights in the tiled
layout its schedule reads, but only for buffers marked layout-free
(``relax.transform.AttachAttrLayoutFreeBuffers``), which ``lower_module`` does not do. This script
builds one subnet of the 1000-class 128-224 px space two ways and times them interleaved:

- ``A``: the project's lowering, built with the target's shipped records;
- ``B``: the same plus ``AttachAttrLayoutFreeBuffers``, tuned at ``--trials`` per task into
  ``--log-root`` (other workloads: the attribute is part of a workload's structure), built with
  ``SplitLayoutRewritePreproc`` + ``FoldConstant`` so that the weights are packed once, at
  compile time (they are bound constants).

    python bench/layout_prepack.py --subnet smallest --resolution 224 --trials 16
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def bench_subnet(which: str, res: int):
    """``(arch, static module)`` of the runtime benchmark's ``which`` subnet at ``res`` px, from the
    untrained 1000-class supernet with realistic random weights."""
    from bench_runtime import realistic_init_, subnet
    from tvm_ofa.cli._common import untrained_supernet

    net = untrained_supernet()
    realistic_init_(net)
    arch = net.space.validate(subnet(net.space, which, res))
    return arch, net.extract(arch).eval()


def check_and_time(module, executables: dict, res: int, rounds: int) -> dict[str, list[float]]:
    """Check each built executable against PyTorch (printing the max abs diff), then time them
    interleaved: ``rounds`` rounds of 30 calls each; per name, the median ms of each round."""
    import numpy as np
    import torch
    import tvm
    from tvm import relax

    dev = tvm.cpu()
    x = np.random.default_rng(0).standard_normal((1, 3, res, res)).astype("float32")
    with torch.no_grad():
        ref = module(torch.from_numpy(x)).numpy()
    vms = {}
    for name, ex in executables.items():
        vm = relax.VirtualMachine(ex, dev)
        xt = tvm.runtime.tensor(x, dev)
        print(f"{name} max abs diff to PyTorch {float(np.abs(vm['main'](xt).numpy() - ref).max()):.2e}", flush=True)
        for _ in range(10):
            vm["main"](xt)
        vms[name] = (vm, xt)
    per: dict[str, list[float]] = {k: [] for k in vms}
    for _ in range(rounds):
        for name, (vm, xt) in vms.items():
            ts = []
            for _ in range(30):
                t = time.perf_counter()
                vm["main"](xt)
                ts.append(1e3 * (time.perf_counter() - t))
            per[name].append(statistics.median(ts))
    return per


def build_and_compare(cfg, arch, module, a, b, res: int, log_root: str, rounds: int,
                      names: tuple[str, str] = ("A", "B")) -> None:
    """Build lowering ``a`` with the target's shipped records and ``b`` with those under
    ``log_root``, check and time both (:func:`check_and_time`), and print their medians and A/B;
    ``names`` label A and B in that line."""
    from tvm_ofa.compiler.build import build
    from tvm_ofa.compiler.database import open_database

    target = cfg.tvm_target()
    # build's apply_database packs marked weights once (SplitLayoutRewritePreproc + FoldConstant)
    ex = {"A": build(a.mod, target, open_database(cfg.log_dir()).db),
          "B": build(b.mod, target, open_database(cfg.log_dir(log_root)).db)}
    per = check_and_time(module, ex, res, rounds)
    med = {k: statistics.median(v) for k, v in per.items()}
    print(f"{arch.id} ({cfg.host_cpu()}, {cfg.num_threads} threads): {names[0]} {med['A']:.3f} ms, "
          f"{names[1]} {med['B']:.3f} ms, A/B {med['A'] / med['B']:.2f}; per-round medians "
          f"A {[round(v, 2) for v in per['A']]}, B {[round(v, 2) for v in per['B']]}", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="host-cpu")
    p.add_argument("--subnet", default="smallest", choices=["smallest", "middle", "largest"])
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--trials", type=int, default=16, help="trials per task for B (A uses the shipped records)")
    p.add_argument("--log-root", default="bench/out/prepack_logs", help="B's tuning records (resumable)")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)

    from tvm_ofa.targets import load_target

    cfg = load_target(args.target)
    os.environ.setdefault("TVM_NUM_THREADS", str(cfg.num_threads))
    warnings.filterwarnings("ignore")
    from tvm import relax

    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.tune import tune

    res = args.resolution
    arch, module = bench_subnet(args.subnet, res)
    a = lower_module(module, (1, 3, res, res))
    b = lower_module(module, (1, 3, res, res))
    b.mod = relax.transform.AttachAttrLayoutFreeBuffers()(b.mod)
    t0 = time.time()
    rep = tune(cfg, b, trials_per_task=args.trials, log_root=args.log_root)
    print(f"B tuned {rep.tasks_tuned} tasks, {rep.new_trials} trials in {time.time() - t0:.0f} s", flush=True)
    build_and_compare(cfg, arch, module, a, b, res, args.log_root, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
