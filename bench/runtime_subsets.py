#!/usr/bin/env python
"""Does timing the runtimes interleaved in one process cost one of them? (the runtime comparison's
method, checked)

Loads one subnet's runtimes as ``bench/bench_runtime.py`` does (PyTorch eager, ONNX Runtime,
OpenVINO and the tvm-ofa artifact already built under ``artifacts/<target>/<arch-id>/``), then
times each given subset of them interleaved (5 rounds of 20 calls, per-round medians), in the
order given: say ``tvm`` alone, then all four, then ``tvm`` alone again to see how far the machine
itself drifted meanwhile.

    python bench/runtime_subsets.py --subnet largest --resolution 224 tvm torch,ort,ov,tvm ov,tvm tvm
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

NAMES = {"torch": "PyTorch eager", "ort": "ONNX Runtime", "ov": "OpenVINO", "tvm": "tvm-ofa"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("subsets", nargs="+", help="comma-separated runtimes among " + ", ".join(NAMES))
    p.add_argument("--target", default="host-cpu-prepack")
    p.add_argument("--subnet", default="largest", choices=["smallest", "middle", "largest"])
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--artifacts", default="artifacts")
    args = p.parse_args(argv)
    for sub in args.subsets:
        bad = [k for k in sub.split(",") if k not in NAMES]
        if bad:
            p.error(f"unknown runtime {bad[0]!r} in {sub!r} (choose among {', '.join(NAMES)})")

    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    warnings.filterwarnings("ignore")
    import numpy as np

    import bench_runtime as br
    from layout_prepack import bench_subnet
    from tvm_ofa.compiler.measure import set_threads

    set_threads(args.threads)
    arch, module = bench_subnet(args.subnet, args.resolution)
    art = Path(args.artifacts) / args.target / arch.id
    if not (art / "model.so").exists():
        p.error(f"{art}: no artifact; build it first (bench/bench_runtime.py --no-tune --target {args.target})")
    x = np.random.default_rng(0).standard_normal((1, 3, args.resolution, args.resolution)).astype("float32")
    with tempfile.TemporaryDirectory() as tmp:
        fns = br.runners(module, x, {NAMES["tvm"]: str(art)}, args.threads, br.export_onnx(module, x, tmp))
    print(f"{arch.id} ({args.target}), {args.threads} threads; median ms of 5 interleaved rounds of 20 calls")
    for sub in args.subsets:
        per = br.interleaved({NAMES[k]: fns[NAMES[k]] for k in sub.split(",")}, 5, 20)
        print(f"{sub:20s} " + "  ".join(f"{k} {statistics.median(v):.3f}" for k, v in per.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
