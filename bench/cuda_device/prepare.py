#!/usr/bin/env python
"""Prepare a one-off check of `cuda-sm90` artifacts on a GPU machine that has no TVM.

Builds the subnets for the `cuda-sm90` target here (no GPU needed: nvcc compiles the kernels,
see docs/COMPILER.md), with the supernet and weights of `bench/bench_runtime.py` (random,
seed 0), and writes a self-contained folder: the artifacts with an input and PyTorch's logits
on this CPU, the C++ runner, the wheel's runtime libraries, `run.sh` and `torch_ref.py`.
Copy that folder to the GPU machine and run `bash <folder>/run.sh [out-dir]` there: the C++
runner runs each artifact three times and writes its logits; `torch_ref.py` times PyTorch eager
on the same GPU for the same subnet (when torch is there).

    python bench/cuda_device/prepare.py --out bench/out/devcheck --subnets smallest --resolution 224
    python bench/cuda_device/compare.py bench/out/devcheck <out-dir>   # logits back here
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench/out/devcheck")
    p.add_argument("--subnets", nargs="+", default=["smallest"])
    p.add_argument("--resolution", type=int, default=224)
    args = p.parse_args(argv)

    import numpy as np
    import torch
    import tvm

    import bench_runtime as br
    from tvm_ofa.cli._common import untrained_supernet
    from tvm_ofa.compiler.pipeline import emit
    from tvm_ofa.targets import load_target

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    (out / "lib").mkdir(parents=True)
    net = untrained_supernet()
    br.realistic_init_(net)
    cfg = load_target("cuda-sm90")
    for name in args.subnets:
        arch = net.space.validate(br.subnet(net.space, name, args.resolution))
        module = net.extract(arch).eval()
        folder = emit(cfg, arch, module, out_root=out / "art", log_root=out / "logs", measure=False)
        x = np.random.default_rng(0).standard_normal((1, 3, args.resolution, args.resolution)).astype("float32")
        with torch.no_grad():
            np.save(folder / "ref.npy", module(torch.from_numpy(x)).numpy())
        np.save(folder / "x.npy", x)
        print(f"{folder}", flush=True)
    shutil.rmtree(out / "logs", ignore_errors=True)

    build = out / "cpp-build"
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release",
                    f"-DTVM_OFA_PYTHON={sys.executable}"], check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j2", "--target", "tvm_ofa_run"], check=True,
                   capture_output=True)
    shutil.copy(build / "tvm_ofa_run", out / "tvm_ofa_run")
    shutil.rmtree(build)
    tvm_lib = Path(tvm.__file__).parent / "lib"
    import tvm_ffi
    for lib in [tvm_lib / "libtvm_runtime.so", tvm_lib / "libtvm_runtime_cuda.so",
                Path(tvm_ffi.__file__).parent / "lib" / "libtvm_ffi.so"]:
        shutil.copy(lib, out / "lib" / lib.name)
    here = Path(__file__).parent
    for f in ("run.sh", "torch_ref.py"):
        shutil.copy(here / f, out / f)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
