#!/usr/bin/env python
"""Does an NHWC convolution layout speed up the tuned, prepacked library? (issue 3's 1x1 question)

Builds one subnet of the 1000-class 128-224 px space two ways, both with ``prepack`` (weights
packed at compile time into the layout each schedule reads), and times them interleaved:

- ``A``: the project's NCHW lowering, built with the ``host-cpu-prepack`` records;
- ``B``: the same lowering with ``relax.transform.ConvertLayout`` putting every conv2d in NHWC
  (weights OHWI) first, tuned at ``--trials`` per task into ``--log-root`` (other workloads).

    python bench/layout_nhwc.py --subnet smallest --resolution 224 --trials 16
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


@contextmanager
def nhwc_convolutions():
    """``lower_module`` with ConvertLayout(conv2d -> NHWC/OHWI) ahead of its pass pipeline (the
    pipeline looks its passes up by name in ``relax.transform``, so the first one is wrapped)."""
    import tvm
    from tvm import relax

    first = relax.transform.DecomposeOpsForInference
    relax.transform.DecomposeOpsForInference = lambda: tvm.transform.Sequential(
        [relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]}), first()])
    try:
        yield
    finally:
        relax.transform.DecomposeOpsForInference = first


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subnet", default="smallest", choices=["smallest", "middle", "largest"])
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--trials", type=int, default=16, help="trials per task for B")
    p.add_argument("--log-root", default="bench/out/nhwc_logs", help="B's tuning records (resumable)")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args(argv)

    from tvm_ofa.targets import load_target

    cfg = load_target("host-cpu-prepack")
    os.environ.setdefault("TVM_NUM_THREADS", str(cfg.num_threads))
    warnings.filterwarnings("ignore")

    from layout_prepack import bench_subnet, build_and_compare
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.tune import tune

    res = args.resolution
    arch, module = bench_subnet(args.subnet, res)
    a = lower_module(module, (1, 3, res, res), prepack=True)
    with nhwc_convolutions():
        b = lower_module(module, (1, 3, res, res), prepack=True)
    t0 = time.time()
    rep = tune(cfg, b, trials_per_task=args.trials, log_root=args.log_root)
    print(f"B: {len(b.mod.functions) - 1} functions, tuned {rep.tasks_tuned} tasks, {rep.new_trials} trials "
          f"in {time.time() - t0:.0f} s", flush=True)
    build_and_compare(cfg, arch, module, a, b, res, args.log_root, args.rounds, ("A (NCHW)", "B (NHWC)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
