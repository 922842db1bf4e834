#!/usr/bin/env python
"""How much do contiguous stride-2 loads (``tvm_ofa.compiler.tir_pipeline``) speed up a tuned build?

Builds each subnet twice with the same tuning records of ``--target``: ``A`` through TVM's own TIR
pipeline (stride-2 vector loads emitted lane by lane), ``B`` through the project's (two contiguous
loads and a shuffle). Both are checked against PyTorch and timed interleaved.

With ``--kernels``, instead: every stride-2 workload of the target's records on this CPU, its best
schedule built both ways and timed alone (3 interleaved rounds of ``time_evaluator``, 7 x 10
calls each, at least 40 ms a repeat), outputs compared.

    python bench/strided_loads.py --subnet largest --resolution 224
    python bench/strided_loads.py --subnet smallest middle largest --resolution 160 224 --rounds 5
    python bench/strided_loads.py --kernels
    python bench/strided_loads.py --kernels --small-tile 0 --min-lanes 2   # without the exceptions
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))


@contextmanager
def tvms_own_pipeline():
    """Builds inside lower through TVM's default TIR pipeline instead of the project's."""
    from tvm_ofa.compiler import tir_pipeline

    register = tir_pipeline.register
    tir_pipeline.register = lambda: "default"
    try:
        yield
    finally:
        tir_pipeline.register = register


def time_kernels(cfg) -> None:
    """Each stride-2 workload's best record built through both pipelines and timed alone."""
    import numpy as np
    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    from tvm_ofa.compiler import tir_pipeline
    from tvm_ofa.compiler.database import open_database
    from tvm_ofa.compiler.retime import _best_records

    target, dev = cfg.tvm_target(), tvm.cpu()
    best = _best_records(open_database(cfg.log_dir()).db, cfg.log_dir())
    rng = np.random.default_rng(0)
    total = {"default": 0.0, tir_pipeline.register(): 0.0}
    print(f"{'workload':52s} {'TVM ms':>8s} {'ours ms':>8s} {'ratio':>6s}")
    for key in sorted(k for k in best if k.endswith(":s2")):
        cand = best[key].as_measure_candidate()
        mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(cand.sch.mod)
        fname = mod.get_global_vars()[0].name_hint
        args = [rng.standard_normal([int(d) for d in a.shape]).astype(a.dtype) for a in cand.args_info]
        libs = {p: tvm.tirx.build(mod, target, pipeline=p) for p in total}
        ms: dict[str, list[float]] = {p: [] for p in total}
        outs = {}
        for _ in range(3):
            for p, lib in libs.items():
                ts = [tvm.runtime.tensor(a, dev) for a in args]
                lib[fname](*ts)
                outs[p] = ts[-1].numpy()
                t = lib.time_evaluator(fname, dev, number=10, repeat=7, min_repeat_ms=40)(*ts)
                ms[p].append(1e3 * statistics.median(t.results))
        a, b = (statistics.median(v) for v in ms.values())
        same = all(np.array_equal(o, outs["default"]) for o in outs.values())
        total["default"] += a
        total[tir_pipeline.register()] += b
        print(f"{key:52s} {a:8.4f} {b:8.4f} {a / b:6.2f}{'' if same else '  OUTPUTS DIFFER'}", flush=True)
    a, b = total.values()
    print(f"{'sum':52s} {a:8.4f} {b:8.4f} {a / b:6.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="host-cpu-prepack")
    p.add_argument("--subnet", nargs="+", default=["largest"], choices=["smallest", "middle", "largest"])
    p.add_argument("--resolution", nargs="+", type=int, default=[224])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--kernels", action="store_true",
                   help="time each stride-2 workload's best record alone, both ways")
    p.add_argument("--small-tile", type=int, default=None,
                   help="override tir_pipeline.SMALL_TILE (0: rewrite loads from any buffer)")
    p.add_argument("--min-lanes", type=int, default=None, help="override tir_pipeline.MIN_LANES")
    args = p.parse_args(argv)

    from tvm_ofa.compiler import tir_pipeline

    # read at each build, in this process: the thresholds apply to both modes
    if args.small_tile is not None:
        tir_pipeline.SMALL_TILE = args.small_tile
    if args.min_lanes is not None:
        tir_pipeline.MIN_LANES = args.min_lanes

    from tvm_ofa.targets import load_target

    cfg = load_target(args.target)
    os.environ.setdefault("TVM_NUM_THREADS", str(cfg.num_threads))
    warnings.filterwarnings("ignore")

    from layout_prepack import bench_subnet, check_and_time
    from tvm_ofa.compiler.build import build
    from tvm_ofa.compiler.database import open_database
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.measure import set_threads

    set_threads(cfg.num_threads)
    print(f"{cfg.name} on {cfg.host_cpu()}, {cfg.num_threads} threads, records {cfg.log_dir()}; "
          f"MIN_LANES {tir_pipeline.MIN_LANES}, SMALL_TILE {tir_pipeline.SMALL_TILE}", flush=True)
    if args.kernels:
        time_kernels(cfg)
        return 0
    target = cfg.tvm_target()
    db = open_database(cfg.log_dir()).db
    for res in args.resolution:
        for which in args.subnet:
            arch, module = bench_subnet(which, res)
            low = lower_module(module, (1, 3, res, res), **cfg.lowering)
            with tvms_own_pipeline():
                a = build(low.mod, target, db)
            b = build(low.mod, target, db)
            per = check_and_time(module, {"A": a, "B": b}, res, args.rounds)
            med = {k: statistics.median(v) for k, v in per.items()}
            print(f"{which}@{res} {arch.id}: A (TVM's pipeline) {med['A']:.3f} ms, B (contiguous "
                  f"stride-2 loads) {med['B']:.3f} ms, A/B {med['A'] / med['B']:.2f}; per-round "
                  f"medians A {[round(v, 2) for v in per['A']]}, B {[round(v, 2) for v in per['B']]}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
