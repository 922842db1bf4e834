"""Row-split parallel loops (``split_rows`` targets): the permutation keeps every result, turns a
channel split into a row split, and the tuning postproc refuses schedules it cannot turn."""
from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvm_ofa.compiler import parallel, tir_pipeline  # noqa: E402


def _pointwise(rows: int, channels: int = 16, inputs: int = 8):
    """A 1x1 convolution, NCHW: ``out[0, c, h, w] = sum_k x[0, k, h, w] * wt[c, k]``."""
    from tvm import te

    x = te.placeholder((1, inputs, rows, rows), name="x")
    wt = te.placeholder((channels, inputs), name="wt")
    k = te.reduce_axis((0, inputs), name="k")
    out = te.compute((1, channels, rows, rows),
                     lambda n, c, h, w: te.sum(x[n, k, h, w] * wt[c, k], axis=k), name="conv")
    return te.create_prim_func([x, wt, out])


def _scheduled(func, order: str, mark: bool = True):
    """``func`` tiled as MetaSchedule does (channel tile outermost), its outer tiles parallel:
    ``channels`` and rows (``tiles``) or the channel tile alone (``channels``)."""
    if mark:
        func = func.with_attr(parallel.ATTR, True)
    sch = tvm.s_tir.Schedule(func)
    n, c, h, w, k = sch.get_loops(sch.get_sblock("conv"))
    c0, c1 = sch.split(c, [4, None])
    h0, h1 = sch.split(h, [2, None])
    sch.reorder(n, c0, h0, c1, h1, w, k)
    sch.parallel(sch.fuse(n, c0, h0) if order == "tiles" else sch.fuse(n, c0))
    return sch.mod["main"]


def _split(func) -> list:
    """Per parallel loop: the channel digit found (None: it does not split channels)."""
    analyzer = tvm.sym.Analyzer()
    return [parallel._channel_digit(loop, analyzer) for loop in parallel.parallel_loops(func)]


def test_rows_first_turns_a_channel_split_into_a_row_split_with_the_same_results():
    func = _scheduled(_pointwise(16), "tiles")
    assert _split(func) == [(4, 2)]  # 4 channel tiles outside 2 row tiles: halves split channels
    assert parallel.row_splittable(func)
    permuted = parallel.rows_first(func)
    assert _split(permuted) == [None]

    target = tvm.target.Target({"kind": "llvm"})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 16, 16)).astype("float32")
    wt = rng.standard_normal((16, 8)).astype("float32")
    want = np.einsum("nkhw,ck->nchw", x, wt)
    # the pipeline of every build permutes marked functions itself
    for f in (func, permuted, func.without_attr(parallel.ATTR)):
        lib = tvm.tirx.build(tvm.IRModule({"main": f}), target, pipeline=tir_pipeline.register())
        out = tvm.runtime.tensor(np.zeros((1, 16, 16, 16), "float32"))
        lib["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(wt), out)
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)


def test_only_a_channel_split_that_no_order_makes_a_row_split_is_refused():
    # the parallel loop holds the channel tile alone: no order of it splits rows
    assert _split(_scheduled(_pointwise(16), "channels")) == [(0, 0)]
    assert not parallel.row_splittable(_scheduled(_pointwise(16), "channels"))
    # unmarked functions, and outputs under MIN_ROWS rows (weights outweigh activations), pass
    assert parallel.row_splittable(_scheduled(_pointwise(16), "channels", mark=False))
    assert parallel.row_splittable(_scheduled(_pointwise(parallel.MIN_ROWS - 2), "channels"))
    unmarked = _scheduled(_pointwise(16), "tiles", mark=False)
    assert parallel.rows_first(unmarked).same_as(unmarked)


def test_split_rows_target_option_marks_the_lowering():
    from pathlib import Path

    from tvm_ofa.targets import load_target, parse_target

    cfg = load_target(Path(__file__).resolve().parents[1] / "bench/targets/host-cpu-rows.yaml")
    assert cfg.lowering == {"prepack": True, "deinterleave": False, "split_rows": True,
                            "nchwc": False}
    with pytest.raises(Exception, match="split_rows: expected true or false"):
        parse_target({"name": "x", "target": {"kind": "llvm"}, "split_rows": "yes"}, "x.yaml")
