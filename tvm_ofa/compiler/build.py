"""Building: MetaSchedule's builder function, and the final Relax build with a database applied."""
from __future__ import annotations

from typing import Any

from tvm_ofa.errors import TvmOfaError


class BuildError(TvmOfaError):
    """TVM could not compile the module for the target."""


def fast_build(mod: Any, target: Any, _params: Any = None) -> Any:
    """MetaSchedule ``f_build`` for CPU targets.

    Same as MetaSchedule's ``default_build`` minus ``import tvm.s_tir.tensor_intrin``: that import
    registers CUDA/ROCm/Hexagon/Arm intrinsics and takes ~48 s here, which the builder pays in
    every fresh worker, so every batch hit the 30 s timeout.
    """
    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod)
    return tvm.driver.build(mod, target=target)


def apply_database(mod: Any, target: Any, database: Any | None) -> Any:
    """The Relax module with the tuned schedules of ``database`` in place of its fused functions.

    For a prepacked lowering (``lower_module(..., prepack=True)``) the schedules' weight-layout
    blocks become separate functions of the bound weights (``..._prepacked`` calls the packed
    weights), which ``FoldConstant`` runs once, here, instead of on every call.

    Parameters
    ----------
    mod : tvm.IRModule
        From :func:`tvm_ofa.compiler.lower.lower_module`.
    target : tvm.target.Target
    database : tvm.s_tir.meta_schedule.Database or None
        Workloads without a record keep TVM's default schedule.

    Returns
    -------
    tvm.IRModule
    """
    import tvm
    from tvm import relax

    if database is not None:
        with target, database, tvm.transform.PassContext(opt_level=3):
            mod = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(mod)
    if any("layout_free_buffers" in (f.attrs or {}) for _, f in mod.functions_items()):
        mod = tvm.transform.Sequential([relax.transform.SplitLayoutRewritePreproc(),
                                        relax.transform.FoldConstant()])(mod)
    return mod


def build(mod: Any, target: Any, database: Any | None = None) -> Any:
    """Compile a fused Relax module, applying the tuned schedules of ``database`` if given
    (parameters as :func:`apply_database`; workloads without a record fall back to TVM's
    default schedule).

    Returns
    -------
    tvm.relax.VMExecutable
    """
    import tvm

    mod = apply_database(mod, target, database)
    try:
        with tvm.transform.PassContext(opt_level=3):
            return tvm.compile(mod, target=target)
    except Exception as exc:  # TVM's errors are pages long: keep the last line
        lines = str(exc).strip().splitlines()
        raise BuildError(f"building for {target.kind.name} failed: "
                         f"{lines[-1] if lines else type(exc).__name__}") from exc
