#!/usr/bin/env python
"""Layer by layer against ONNX Runtime: where a tvm-ofa artifact loses its time to ORT.

For one artifact of the ImageNet-shaped supernet (``bench_runtime.py`` builds them), runs the same
subnet in ONNX Runtime with its profiler on and in the artifact with the Relax VM's call hook, and
pairs their convolutions in network order (each convolution is one kernel in both: TVM fuses
bias, activation and residual into it, ORT into ``FusedConv`` or the convolution itself). Prints
the convolutions whose per-call time differs most, then the sums per kind of operator.

ORT's profiler adds its own cost to every node (its end-to-end time with the profiler on is
printed beside the plain one), so the pairs show where the two differ, not exact ratios.

    python bench/ort_layers.py artifacts/host-cpu-prepack/r224-d44444-26d5eef6 --top 15

Run it alone on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="an artifact folder of the 1000-class supernet")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--runs", type=int, default=40, help="profiled inferences of each runtime")
    p.add_argument("--top", type=int, default=15, help="convolutions to list, largest gap first")
    return p.parse_args(argv)


def ort_nodes(onnx_path: str, x, threads: int, runs: int, tmp: str) -> tuple[list, float, float]:
    """``[(op type, node name, ms per run)]`` in execution order, the plain end-to-end ms and the
    end-to-end ms with the profiler on."""
    import onnxruntime as ort

    def session(profile: bool):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as bench_runtime
        if profile:
            so.enable_profiling, so.profile_file_prefix = True, os.path.join(tmp, "ort")
        return ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])

    def timed(sess) -> float:
        for _ in range(10):
            sess.run(None, {"x": x})
        t0 = time.perf_counter()
        for _ in range(runs):
            sess.run(None, {"x": x})
        return (time.perf_counter() - t0) / runs * 1e3

    plain = timed(session(False))
    sess = session(True)
    profiled = timed(sess)
    events = [e for e in json.loads(Path(sess.end_profiling()).read_text())
              if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_run = len(events) // (runs + 10)
    events = events[-runs * per_run:]  # the timed runs, after the warm-up
    total: dict[int, float] = defaultdict(float)
    for i, e in enumerate(events):
        total[i % per_run] += e["dur"] / 1e3 / runs
    nodes = [(e["args"].get("op_name", "?"), e["name"].removesuffix("_kernel_time"), total[i])
             for i, e in enumerate(events[:per_run])]
    return nodes, plain, profiled


def tvm_kernels(art, x, runs: int) -> tuple[list, float]:
    """``[(kernel name, argument shapes, ms per run)]`` in call order, and the plain end-to-end
    ms (no hook)."""
    import tvm

    from tvm_ofa.compiler.measure import time_calls

    xt = tvm.runtime.tensor(x, art.device)
    main = art.vm[art.metadata.get("entry", "main")]
    plain = time_calls(lambda: main(xt), warmup=10, repeats=runs).median_ms
    calls: list = []
    started = [0.0]

    def hook(func, symbol, before, ret, *args):
        if before:
            started[0] = time.perf_counter()
        elif not symbol.startswith("vm."):
            calls.append((symbol, [tuple(a.shape) for a in args if hasattr(a, "shape")],
                          time.perf_counter() - started[0]))
        return 0

    art.vm.set_instrument(hook)
    for _ in range(runs):
        main(xt)
    art.vm.set_instrument(None)
    per_run = len(calls) // runs
    total: dict[int, float] = defaultdict(float)
    for i, (_, _, dt) in enumerate(calls):
        total[i % per_run] += dt * 1e3 / runs
    return [(calls[i][0], calls[i][1], total[i]) for i in range(per_run)], plain


def main(argv=None) -> int:
    import numpy as np

    from bench_runtime import export_onnx, realistic_init_
    from tvm_ofa import load_artifact
    from tvm_ofa.arch import ArchConfig
    from tvm_ofa.cli._common import untrained_supernet
    from tvm_ofa.compiler.measure import set_threads
    from tvm_ofa.errors import TvmOfaError

    args = parse_args(argv)
    set_threads(args.threads)
    try:
        art = load_artifact(args.artifact, threads=args.threads)
    except TvmOfaError as exc:
        raise SystemExit(f"error: {exc}") from None
    net = untrained_supernet()
    realistic_init_(net)
    arch = net.space.validate(ArchConfig.from_dict(art.metadata["arch"]))
    module = net.extract(arch).eval()
    x = np.random.default_rng(0).standard_normal(art.input_shape).astype("float32")
    with tempfile.TemporaryDirectory() as tmp:
        nodes, ort_plain, ort_profiled = ort_nodes(export_onnx(module, x, tmp), x, args.threads,
                                                   args.runs, tmp)
    kernels, tvm_plain = tvm_kernels(art, x, args.runs)

    print(f"{art.path} ({art.metadata['cpu']['name'] if art.metadata.get('cpu') else '?'}, "
          f"{args.threads} threads, {args.runs} runs each)")
    print(f"end to end: ONNX Runtime {ort_plain:.3f} ms ({ort_profiled:.3f} with its profiler), "
          f"tvm-ofa {tvm_plain:.3f} ms")
    convs_tvm = [k for k in kernels if "conv2d" in k[0]]
    convs_ort = [n for n in nodes if "Conv" in n[0]]
    if len(convs_tvm) != len(convs_ort):
        raise SystemExit(f"cannot pair the convolutions: {len(convs_tvm)} kernels in TVM, "
                         f"{len(convs_ort)} nodes in ONNX Runtime")
    pairs = [(t[2] - o[2], t[2], o[2], t[0], t[1], o[0]) for t, o in zip(convs_tvm, convs_ort)]
    print(f"convolutions: {len(pairs)}, sum TVM {sum(p[1] for p in pairs):.3f} ms, "
          f"ONNX Runtime {sum(p[2] for p in pairs):.3f} ms")
    print(f"everything else: TVM {sum(k[2] for k in kernels if 'conv2d' not in k[0]):.3f} ms, "
          f"ONNX Runtime {sum(n[2] for n in nodes if 'Conv' not in n[0]):.3f} ms")
    ops: dict[str, float] = defaultdict(float)
    for op, _, ms in nodes:
        ops[op] += ms
    print("ONNX Runtime per operator: " + ", ".join(
        f"{op} {ms:.3f}" for op, ms in sorted(ops.items(), key=lambda kv: -kv[1])))
    by_kernel: dict[str, list] = {}
    for gap, t, o, name, shapes, _ in pairs:
        entry = by_kernel.setdefault(name, [0.0, 0.0, 0, shapes])
        entry[0] += t
        entry[1] += o
        entry[2] += 1
    print("\nconvolutions by TVM kernel, largest gap first (ms per run: TVM, ONNX Runtime, "
          "gap, calls, input shape)")
    for name, (t, o, n, shapes) in sorted(by_kernel.items(), key=lambda kv: kv[1][1] - kv[1][0])[:args.top]:
        print(f"  {t:7.3f}  {o:7.3f}  {t - o:+7.3f}  x{n}  {name}  {shapes[0] if shapes else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
