#!/usr/bin/env python
"""TVM's parallel launcher against one that hands out work on demand, each beside ONNX Runtime.

A tvm-ofa artifact's kernels split each parallel loop into one fixed piece per thread (TVM's
thread pool), so a kernel waits for its slowest thread. On these shared 2-core VMs the TVM column
moves far more between rounds than ONNX Runtime's, whose pool lets either thread take the next
piece. This script measures whether that split is the cause: ``bench/parallel_launch.c``
(compiled here with ``cc``) replaces the library's ``__TVMBackendParallelLaunch`` pointer with a
launcher whose threads claim ``--chunks`` pieces on demand. Each mode runs in fresh processes,
alternating (static, dynamic, static, ...), each timing ONNX Runtime and the artifact interleaved
(``bench_runtime.interleaved``); it prints each process's TVM / ONNX Runtime ratio and rounds.

    python bench/parallel_launch.py --subnet smallest --resolution 224 --pairs 4
"""
from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="host-cpu-prepack")
    p.add_argument("--subnet", default="smallest", choices=["smallest", "middle", "largest"])
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--chunks", type=int, default=8, help="pieces per parallel loop (dynamic mode)")
    p.add_argument("--pairs", type=int, default=4, help="processes per mode")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--child", choices=["static", "dynamic"], help=argparse.SUPPRESS)
    p.add_argument("--launcher", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def artifact_dir(args) -> Path:
    """The row's artifact, as ``bench/bench_runtime.py`` left it; a one-line exit if missing."""
    import bench_runtime as br
    from tvm_ofa.arch import SearchSpace

    arch = br.subnet(SearchSpace(resolutions=(args.resolution,)), args.subnet, args.resolution)
    art = Path(args.artifacts) / args.target / arch.id
    if not (art / "model.so").exists():
        raise SystemExit(f"error: {art}: no artifact (build it first: python bench/bench_runtime.py "
                         f"--target {args.target} --subnets {args.subnet} --resolutions {args.resolution})")
    return art


def install(model_so: Path, launcher: str, threads: int, chunks: int) -> None:
    """Point the loaded ``model_so``'s parallel launches at the on-demand launcher."""
    if b"TVMBackendParallelBarrier" in model_so.read_bytes():
        raise SystemExit(f"error: {model_so}: its kernels use parallel barriers; the on-demand "
                         "launcher cannot run them")
    lib = ctypes.CDLL(str(model_so), mode=os.RTLD_NOLOAD | ctypes.RTLD_LOCAL)
    ptr = ctypes.c_void_p.in_dll(lib, "__TVMBackendParallelLaunch")
    pl = ctypes.CDLL(launcher)
    pl.launcher_configure(threads, chunks, ctypes.c_long(200000))
    ptr.value = ctypes.cast(pl.launcher_launch, ctypes.c_void_p).value


def child(args) -> int:
    import numpy as np

    import bench_runtime as br
    from tvm_ofa import load_artifact
    from tvm_ofa.arch import SearchSpace
    from tvm_ofa.compiler.measure import set_threads
    from tvm_ofa.nn.ofa_mbv3 import OFAMobileNetV3

    set_threads(args.threads)
    net = OFAMobileNetV3(n_classes=1000, space=SearchSpace(resolutions=(args.resolution,))).eval()
    br.realistic_init_(net)
    module = net.extract(br.subnet(net.space, args.subnet, args.resolution)).eval()
    art = artifact_dir(args)
    x = np.random.default_rng(0).standard_normal((1, 3, args.resolution, args.resolution)).astype("float32")
    with tempfile.TemporaryDirectory() as tmp:
        ort = br.runners(module, x, {}, args.threads, br.export_onnx(module, x, tmp))[br.ORT]
    tvm_art = load_artifact(art, threads=args.threads)
    if args.child == "dynamic":
        install((art / "model.so").resolve(), args.launcher, args.threads, args.chunks)
    want = module(__import__("torch").from_numpy(x)).detach().numpy()
    err = float(np.abs(tvm_art(x) - want).max())
    if err > 1e-3:
        raise SystemExit(f"error: {args.child} launcher: output differs from PyTorch by {err}")
    per = br.interleaved({"ort": ort, "tvm": lambda: tvm_art(x)}, args.rounds, 20)
    o, t = statistics.median(per["ort"]), statistics.median(per["tvm"])
    rounds = " ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(per["tvm"], per["ort"]))
    print(f"{args.child:7s} ONNX Runtime {o:.3f} ms  TVM {t:.3f} ms  TVM/ORT {t / o:.3f}  "
          f"rounds (TVM/ORT ms) {rounds}", flush=True)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    artifact_dir(args)
    with tempfile.TemporaryDirectory() as tmp:
        so = os.path.join(tmp, "launcher.so")
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", so, str(HERE / "parallel_launch.c"),
                        "-lpthread"], check=True)
        ratios = {"static": [], "dynamic": []}
        print(f"{args.subnet}@{args.resolution} ({args.target}), {args.threads} threads, dynamic: "
              f"{args.chunks} pieces per loop; {args.rounds} interleaved rounds of 20 calls per process")
        for _ in range(args.pairs):
            for mode in ratios:
                out = subprocess.run([sys.executable, __file__, *(argv or sys.argv[1:]), "--child", mode,
                                      "--launcher", so], capture_output=True, text=True)
                line = [ln for ln in out.stdout.splitlines() if ln.startswith(mode)]
                if out.returncode or not line:
                    raise SystemExit(out.stderr.strip().splitlines()[-1] if out.stderr.strip()
                                     else f"error: {mode} child failed")
                print(line[0], flush=True)
                ratios[mode].append(float(line[0].split("TVM/ORT ")[1].split()[0]))
    for mode, r in ratios.items():
        print(f"{mode}: TVM/ORT median {statistics.median(r):.3f}, range {min(r):.3f}-{max(r):.3f} "
              f"over {len(r)} processes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
