#!/usr/bin/env python
"""Do the two ways this project times a compiled subnet agree?

``bench/collect_latency_data.py`` times the in-memory build; ``tvm-ofa compile`` / ``emit`` time
the exported ``model.so`` after reloading it (and pin the thread pool with
``runtime.config_threadpool``). This builds one arch once, then times both paths interleaved in
one process, ``--rounds`` times each, and prints the medians, so a gap between the paths can be
told apart from drift between processes (run the script more than once for that).

    python bench/timing_paths.py --log-dir tuning_logs/host-cpu/cascadelake [--resolution 48 --seed 3] [--pin]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="host-cpu")
    p.add_argument("--log-dir", required=True, help="tuning database folder whose schedules to apply")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--seed", type=int, default=0, help="which random arch (ignored with --arch-json)")
    p.add_argument("--arch-json", default=None)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--pin", action="store_true", help="call runtime.config_threadpool as artifacts do")
    args = p.parse_args(argv)

    from tvm_ofa.targets import load_target

    cfg = load_target(args.target)
    os.environ.setdefault("TVM_NUM_THREADS", str(cfg.num_threads))
    import numpy as np
    import torch
    import tvm
    from tvm import relax

    from tvm_ofa.arch import ArchConfig, SearchSpace
    from tvm_ofa.compiler.artifact import export
    from tvm_ofa.compiler.build import build
    from tvm_ofa.compiler.database import open_database
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.measure import benchmark_vm, set_threads, time_calls
    from tvm_ofa.nn.ofa_mbv3 import OFAMobileNetV3

    space = SearchSpace(resolutions=(args.resolution,))
    torch.manual_seed(0)
    net = OFAMobileNetV3(n_classes=10, width_mult=1.0, space=space).eval()
    arch = (ArchConfig.from_dict(json.loads(Path(args.arch_json).read_text())) if args.arch_json
            else space.sample(np.random.default_rng(args.seed)))
    lowered = lower_module(net.extract(arch), (1, 3, arch.resolution, arch.resolution), **cfg.lowering)
    ex = build(lowered.mod, cfg.tvm_target(), open_database(args.log_dir).db)
    dev = tvm.cpu()
    x = np.random.default_rng(0).standard_normal(lowered.input_shape).astype("float32")
    tmp = Path(tempfile.mkdtemp())
    export(ex, tmp)
    lib = tvm.runtime.load_module(str(tmp / "model.so"))
    if args.pin:
        set_threads(cfg.num_threads)
    vms = {"in-memory": relax.VirtualMachine(ex, dev), "exported": relax.VirtualMachine(lib, dev)}
    xt = tvm.runtime.tensor(x, dev)
    res: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, vm in vms.items():
            res.setdefault(name + " time_evaluator", []).append(
                benchmark_vm(vm, dev, x, 10, args.repeats).median_ms)

            def call(vm=vm):
                vm["main"](xt)
            res.setdefault(name + " wall clock", []).append(time_calls(call, 10, args.repeats).median_ms)
    print(f"arch {arch.id}, {cfg.num_threads} threads, pin={args.pin}, loadavg {os.getloadavg()[0]:.2f}, "
          f"{time.strftime('%H:%M:%S')}")
    for k, v in res.items():
        print(f"  {k:28s} median of {args.rounds} rounds {np.median(v):.3f} ms  "
              f"(rounds: {' '.join(f'{t:.3f}' for t in v)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
