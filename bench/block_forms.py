#!/usr/bin/env python
"""One blocked convolution (+ bias + ReLU), tuned alone in a few forms, to see whether a form
reaches a faster schedule than ``host-cpu-nchwc``'s NCHW8c one at the same trial budget.

``--op depthwise`` (``--channels``, ``--kernel``, ``--stride``):

- ``plain``: ``out[n, c, y, x, b] = sum x[n, c, y*s + ry, x*s + rx, b] * w[c, 0, ry, rx, b]``, the
  form ``tvm_ofa.compiler.lower.dwconv2d_nchwc`` computes (with ``--block 8``);
- ``pair``: the weight stored twice and read as ``w[c, 0, ry, rx, x % 2, b]``, so that two
  neighbouring pixels times the block's channels are one contiguous ramp in input, weight and
  output (16 fp32 lanes, one AVX-512 register, with ``--block 8``);
- ``--block 16``: NCHW16c, 16 channels of one pixel per register.

``--op pointwise`` (a 1x1 convolution, ``--channels`` in, ``--out-channels`` out): the product of
``tvm_ofa.compiler.lower.conv2d_nchwc`` without its kernel axes (extent 1), input and output in
the same ``--block``.

Each form is tuned from nothing in a scratch folder (MetaSchedule's ``tune_tir``, the target's
builder and runner, seed 0), then the best record's time is printed. Needs the CPU to itself.

    python bench/block_forms.py --channels 144 --size 56 --kernel 7 --stride 1 --trials 64 --forms plain pair
    python bench/block_forms.py --channels 144 --size 56 --kernel 7 --stride 1 --trials 64 --block 16
    python bench/block_forms.py --op pointwise --channels 16 --out-channels 96 --size 112 --block 16
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _with_bias_relu(x, w, conv):
    """The PrimFunc ``relu(conv + bias)`` over ``conv``'s blocked output."""
    from tvm import te

    b = te.placeholder((1, *conv.shape[1:2], 1, 1, conv.shape[4]), name="b")
    out = te.compute(conv.shape, lambda *i: te.max(conv(*i) + b[0, i[1], 0, 0, i[4]], 0.0),
                     name="T_relu")
    return te.create_prim_func([x, w, b, out]).with_attr("global_symbol", "main")


def depthwise(c: int, h: int, k: int, s: int, block: int, pair: bool):
    """The PrimFunc of one form (no layout-free weights: the forms differ in the weight only)."""
    from tvm import te, topi

    from tvm_ofa.compiler.lower import dwconv2d_nchwc

    p = k // 2
    x = te.placeholder((1, c // block, h, h, block), name="x")
    if not pair:
        w = te.placeholder((c // block, 1, k, k, block), name="w")
        return _with_bias_relu(x, w, dwconv2d_nchwc(x, w, (s, s), (p, p, p, p)))
    ho = (h + 2 * p - k) // s + 1
    w = te.placeholder((c // block, 1, k, k, 2, block), name="w")
    xp = topi.nn.pad(x, (0, 0, p, p, 0), (0, 0, p, p, 0), name="pad_temp")
    ry = te.reduce_axis((0, k), "ry")
    rx = te.reduce_axis((0, k), "rx")
    conv = te.compute((1, c // block, ho, ho, block), lambda n, f, yy, xx, fb: te.sum(
        xp[n, f, yy * s + ry, xx * s + rx, fb] * w[f, 0, ry, rx, xx % 2, fb], axis=[ry, rx]),
        name="depthwise_conv2d_nchwc")
    return _with_bias_relu(x, w, conv)


def pointwise(ci: int, co: int, h: int, block: int):
    """A 1x1 convolution in NCHW{block}c, weights ``(co/block, ci, 1, 1, block)``, reduced over
    the input channels only (``conv2d_nchwc`` also has kernel axes of extent 1)."""
    from tvm import te

    x = te.placeholder((1, ci // block, h, h, block), name="x")
    w = te.placeholder((co // block, ci, 1, 1, block), name="w")
    rc = te.reduce_axis((0, ci), "rc")
    conv = te.compute((1, co // block, h, h, block), lambda n, f, yy, xx, fb: te.sum(
        x[n, rc // block, yy, xx, rc % block] * w[f, rc, 0, 0, fb], axis=[rc]), name="conv2d_nchwc")
    return _with_bias_relu(x, w, conv)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", default="bench/targets/host-cpu-nchwc.yaml")
    ap.add_argument("--op", choices=("depthwise", "pointwise"), default="depthwise")
    ap.add_argument("--out-channels", type=int, default=96, help="with --op pointwise")
    ap.add_argument("--channels", type=int, default=144)
    ap.add_argument("--size", type=int, default=56, help="input height = width")
    ap.add_argument("--kernel", type=int, default=7)
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--block", type=int, default=8, help="channels per block")
    ap.add_argument("--trials", type=int, default=64)
    ap.add_argument("--forms", nargs="+", choices=("plain", "pair"), default=["plain", "pair"])
    args = ap.parse_args(argv)
    for name in ("channels", "out_channels") if args.op == "pointwise" else ("channels",):
        if getattr(args, name) % args.block:
            ap.error(f"--{name.replace('_', '-')} {getattr(args, name)} is not a multiple of "
                     f"--block {args.block}")
    if args.op == "pointwise":
        args.forms = ["plain"]

    import tvm
    from tvm.s_tir import meta_schedule as ms

    from tvm_ofa.compiler import tune as T
    from tvm_ofa.compiler.runners import make_builder, make_runner
    from tvm_ofa.targets import load_target

    cfg = load_target(args.target)
    target = tvm.target.Target(cfg.resolved_target())
    for form in args.forms:
        func = (pointwise(args.channels, args.out_channels, args.size, args.block)
                if args.op == "pointwise" else
                depthwise(args.channels, args.size, args.kernel, args.stride, args.block, form == "pair"))
        mod = tvm.IRModule({"main": func})
        t0 = time.time()
        db = ms.tune_tir(mod, target, tempfile.mkdtemp(prefix="dw_blocks_"),
                         max_trials_global=args.trials, num_trials_per_iter=16,
                         builder=make_builder(cfg), runner=make_runner(cfg),
                         strategy=T._strategy("evolutionary", args.trials), seed=0)
        best = min(sum(float(v) for v in r.run_secs) / len(r.run_secs)
                   for r in db.get_all_tuning_records() if r.run_secs)
        print(f"{args.op} block={args.block} form={form}: best record {best * 1e3:.4f} ms "
              f"({args.trials} trials, {time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
