"""The TIR pipeline of CPU builds: stride-2 vector loads become contiguous loads and a shuffle,
with the same results."""
from __future__ import annotations

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")

from tvm_ofa.compiler import tir_pipeline  # noqa: E402


def _strided_gather(n_out: int, lanes: int, offset: int, dtype: str):
    """``B[i] = A[2 i + offset]`` with ``i`` split by ``lanes`` and the inner loop vectorized."""
    from tvm import te

    a = te.placeholder((2 * n_out + offset,), dtype, name="A")
    b = te.compute((n_out,), lambda i: a[2 * i + offset] + a[2 * i + offset], name="B")
    sch = tvm.s_tir.Schedule(te.create_prim_func([a, b]))
    (i,) = sch.get_loops(sch.get_sblock("B"))
    _, inner = sch.split(i, [None, lanes])
    sch.vectorize(inner)
    return sch.mod


def _lowered(mod, pipeline: str, target):
    import tvm.tirx

    lower = tvm.tirx.get_tir_pipeline(pipeline)[0]
    return lower(tvm.tirx.transform.BindTarget(target.with_host(target))(mod))


@pytest.mark.parametrize("lanes,offset,dtype", [(16, 1, "float32"), (8, 0, "float32"),
                                                 (5, 3, "int32")])
def test_stride2_loads_become_contiguous_with_the_same_results(lanes, offset, dtype):
    from tvm.target import codegen

    target = tvm.target.Target({"kind": "llvm", "mcpu": str(codegen.llvm_get_system_cpu())})
    n_out = 40 * lanes  # a buffer of at least SMALL_TILE elements
    mod = _strided_gather(n_out, lanes, offset, dtype)

    plain = _lowered(mod, "default", target).script()
    ours = _lowered(mod, tir_pipeline.register(), target).script()
    assert f", 2, {lanes})]" in plain and "Shuffle" not in plain
    assert f", 2, {lanes})]" not in ours and "T.Shuffle" in ours

    # the last shuffle's two loads end at the last element read: no read past the buffer
    a = np.arange(2 * n_out + offset).astype(dtype)
    want = 2 * a[offset::2][:n_out]
    for pipeline in ("default", tir_pipeline.register()):
        lib = tvm.tirx.build(mod, target, pipeline=pipeline)
        out = tvm.runtime.tensor(np.zeros(n_out, dtype))
        lib["main"](tvm.runtime.tensor(a), out)
        np.testing.assert_array_equal(out.numpy(), want)


def test_small_tiles_and_two_lane_loads_keep_tvms_code():
    """A strided load from a buffer under SMALL_TILE elements (a tile the kernel has just written)
    or of fewer than MIN_LANES lanes stays as TVM emits it."""
    target = tvm.target.Target({"kind": "llvm"})
    assert tir_pipeline.SMALL_TILE > 2 * 8 * 8
    for n_out, lanes in [(8 * 8, 8), (40 * 2, 2)]:
        ours = _lowered(_strided_gather(n_out, lanes, 0, "float32"), tir_pipeline.register(), target)
        assert "Shuffle" not in ours.script() and f", 2, {lanes})]" in ours.script()


def test_trial_builds_and_final_builds_lower_through_the_pipeline(monkeypatch):
    """The tuner's trial builds and the artifact's build both rewrite the loads, so a trial times
    the code the artifact runs."""
    from tvm import relax

    from tvm_ofa.compiler import build

    seen = []
    rewrite = tir_pipeline._contiguous
    monkeypatch.setattr(tir_pipeline, "_contiguous", lambda load: seen.append(1) or rewrite(load))
    target = tvm.target.Target({"kind": "llvm"})
    prim = _strided_gather(256, 8, 1, "float32")
    build.fast_build(prim, target)
    assert seen, "trial build"

    seen.clear()
    bb = relax.BlockBuilder()
    gv_mod = tvm.IRModule({"gather": prim["main"].with_attr("global_symbol", "gather")})
    x = relax.Var("x", relax.TensorType((513,), "float32"))
    with bb.function("main", [x]):
        gv = bb.add_func(gv_mod["gather"], "gather")
        out = bb.emit(relax.call_tir(gv, [x], relax.TensorType((256,), "float32")))
        bb.emit_func_output(out)
    build.build(bb.get(), target)
    assert seen, "final build"

