"""The TIR lowering pipeline of every CPU build: TVM's own lowering, then stride-2 vector loads
made contiguous.

In NCHW, neighbouring outputs of a stride-2 convolution read every other input column, so the
schedules that vectorize along output columns load ``A[ramp(b, 2, n)]``. TVM 0.27's LLVM backend
emits such a load one lane at a time (a 16-lane one compiled for znver4 gave 4 ``vmovss`` and 12
``vinsertps``). :func:`contiguous_stride2_loads` rewrites it as two contiguous loads,
``A[b : b + n]`` and ``A[b + n - 1 : b + 2n - 1]``, and a shuffle that keeps every other lane:
the same elements, no read outside them, and LLVM turns the shuffle into a few permutes. The
schedules, the tuning records and the workloads do not change; only the code a schedule becomes.
"""
from __future__ import annotations

from typing import Any

PIPELINE = "tvm_ofa"  # the name builds pass as ``tir_pipeline``/``pipeline``
MIN_LANES = 4  # a 2-lane strided load is two scalar loads either way
SMALL_TILE = 256  # elements: below, a tile the kernel fills just before reading it


def _elements(buffer: Any) -> int | None:
    from tvm import tirx

    size = 1
    for d in buffer.shape:
        if not isinstance(d, tirx.IntImm):
            return None
        size *= d.value
    return size


def _contiguous(load: Any) -> Any:
    from tvm import tirx

    if len(load.indices) != 1:
        return load
    idx = load.indices[0]
    stride = getattr(idx, "stride", None)
    if not isinstance(idx, tirx.Ramp) or not isinstance(stride, tirx.IntImm) or stride.value != 2:
        return load
    size = _elements(load.source)  # only for the strided loads: every load of a kernel comes here
    if size is not None and size < SMALL_TILE:
        return load
    try:
        n = int(idx.lanes)
    except TypeError:  # scalable vectors (vscale): lane count unknown here
        return load
    if n < MIN_LANES:
        return load
    lo = tirx.BufferLoad(load.source, [tirx.Ramp(idx.base, 1, n)])
    hi = tirx.BufferLoad(load.source, [tirx.Ramp(idx.base + (n - 1), 1, n)])
    # lane i is element b + 2i: lane 2i of lo for the first half, lane 2i + 1 - n of hi after
    picks = [2 * i if i < n // 2 else 2 * i + 1 for i in range(n)]
    return tirx.Shuffle([lo, hi], [tirx.IntImm("int32", p) for p in picks])


def contiguous_stride2_loads(func: Any) -> Any:
    """``func`` (a lowered PrimFunc, buffers flattened) with its stride-2 vector loads of at least
    :data:`MIN_LANES` lanes replaced by two contiguous loads and a shuffle.

    Loads from a buffer of fewer than :data:`SMALL_TILE` elements are left alone: such a buffer
    is a tile of the padded input that the kernel wrote element by element just before, and a
    vector load over several of those stores waits for them (on znver5 such kernels ran 2-4x
    slower rewritten: ``bench/strided_loads.py --kernels --small-tile 0 --min-lanes 2``).
    """
    import tvm
    import tvm_ffi

    return tvm_ffi.structural_map(func, (tvm.ir.expr.TensorLoad, _contiguous))


def _on_cpu(func: Any) -> bool:
    target = (func.attrs or {}).get("target")
    return target is not None and target.kind.name == "llvm"


def _function_pass(name: str, rewrite: Any, applies: Any) -> Any:
    """A module pass that rewrites each PrimFunc for which ``applies`` holds."""
    import tvm
    from tvm import tirx

    @tvm.transform.module_pass(opt_level=0, name=name)
    def rewrite_functions(mod: Any, _ctx: Any) -> Any:
        for gv, func in list(mod.functions_items()):
            if isinstance(func, tirx.PrimFunc) and applies(func):
                mod[gv] = rewrite(func)
        return mod

    return rewrite_functions


def _pipeline() -> tuple[Any, Any, Any]:
    import tvm
    from tvm.s_tir.pipeline import default_s_tir_pipeline

    lower, host, device = default_s_tir_pipeline()
    return tvm.transform.Sequential([
        lower,
        _function_pass("tvm_ofa.ContiguousStride2Loads", contiguous_stride2_loads, _on_cpu),
    ]), host, device


def register() -> str:
    """Register the pipeline with TVM (idempotent) and return its name."""
    from tvm.tirx import compilation_pipeline

    compilation_pipeline.register_tir_pipeline(PIPELINE, _pipeline)
    return PIPELINE
