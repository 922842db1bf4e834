"""MetaSchedule builders and runners per target config (``runner.kind`` -> factory)."""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable, Sequence

from tvm_ofa.targets import TargetConfig


def _ensure_importable() -> None:
    # builder workers unpickle fast_build by reference: they must be able to import tvm_ofa
    root = str(Path(__file__).resolve().parents[2])
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if root not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([root] + [p for p in paths if p])


def cross_export(rt_mod: Any, cc: str) -> str:
    """MetaSchedule ``f_export`` for cross targets: link a shared library with ``cc`` so an RPC
    server without a compiler can load it."""
    import tempfile

    from tvm.support import cc as _cc

    path = os.path.join(tempfile.mkdtemp(), "tvm_tmp_mod.so")
    rt_mod.export_library(path, fcompile=functools.partial(_cc.create_shared, cc=cc))
    return path


def _worker_init(fam: str) -> None:
    # runs once per builder worker: pay tvm's import and the intrinsics there, not per batch
    import tvm  # noqa: F401

    import tvm_ofa.compiler.build  # noqa: F401
    from tvm_ofa.compiler.intrin import register_light

    register_light(fam)


def make_builder(cfg: TargetConfig, timeout_s: float = 60.0) -> Any:
    """A MetaSchedule builder with a pool of workers that lives as long as the builder.

    MetaSchedule's ``LocalBuilder`` starts a fresh pool for every batch; each worker then imports
    tvm (~5 s) before building anything, which dominated tuning time on 2 cores. The build function
    is :func:`tvm_ofa.compiler.build.fast_build` (no blanket tensor-intrinsic import).
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import _serialize_params, _worker_func
    from tvm.support.popen_pool import PopenPoolExecutor, StatusKind

    from tvm_ofa.compiler.build import fast_build
    from tvm_ofa.compiler.intrin import family

    _ensure_importable()
    f_export = functools.partial(cross_export, cc=cfg.cc) if cfg.cc else None
    fam = family(cfg.resolved_target())

    @derived_object
    class PersistentBuilder(PyBuilder):
        def __init__(self) -> None:
            super().__init__()
            self.pool = None

        def build(self, build_inputs: list) -> list:
            if self.pool is None:
                # recycle workers now and then: MetaSchedule reports leaks in long-lived ones
                self.pool = PopenPoolExecutor(max_workers=max(1, os.cpu_count() or 1),
                                              timeout=timeout_s, initializer=_worker_init,
                                              initargs=(fam,), maximum_process_uses=200)
            results = []
            args = [(fast_build, f_export, bi.mod, bi.target, _serialize_params(bi.params))
                    for bi in build_inputs]
            for res in self.pool.map_with_error_catching(lambda a: _worker_func(*a), args):
                if res.status == StatusKind.COMPLETE:
                    results.append(BuilderResult(res.value, None))
                elif res.status == StatusKind.TIMEOUT:
                    results.append(BuilderResult(None, f"build timed out after {timeout_s} s"))
                else:
                    results.append(BuilderResult(None, f"build failed: {res.value}"))
            return results

        def shutdown(self) -> None:
            if self.pool is not None:
                self.pool.shutdown()
                self.pool = None

    return PersistentBuilder()


def _evaluator(min_repeat_ms: int) -> Any:
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig

    return EvaluatorConfig(number=3, repeat=1, min_repeat_ms=min_repeat_ms,
                           enable_cpu_cache_flush=False)


def _runner_threads(n: int) -> None:
    # runs first in each runner worker: without it TVM's pool there has half the logical CPUs
    # on x86 (one thread on a 2-core VM), and every trial would be timed on fewer threads than
    # the target runs with
    from tvm_ofa.compiler.measure import set_threads

    os.environ["TVM_NUM_THREADS"] = str(n)  # this process only times trials: exactly n, not inherited
    set_threads(n)


def synchronous(runner: Any) -> Any:
    """``runner`` with ``run`` returning only when every timing is done.

    MetaSchedule's task schedulers collect a batch's timings lazily: the gradient scheduler
    sends every task's first batch before it waits for any, and later waits for a task only when
    it picks that task again; round-robin collects the batches that are done when it picks the
    next task. Meanwhile the tuning process searches the next task's candidates
    on every core. A local runner then times kernels beside that search, and the records come
    out slower, and noisier, than the kernels are. With this wrapper the search waits for the
    timings (the wrapped runner's ``pool`` stays reachable).
    """
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import PyRunner, RunnerFuture

    @derived_object
    class _Synchronous(PyRunner):
        def __init__(self) -> None:
            super().__init__()
            self.pool = getattr(runner, "pool", None)

        def run(self, runner_inputs: list) -> list:
            results = [f.result() for f in runner.run(runner_inputs)]
            return [RunnerFuture(lambda: True, lambda r=r: r) for r in results]

    return _Synchronous()


def _local_runner(cfg: TargetConfig, spec: dict, min_repeat_ms: int) -> Any:
    from tvm.s_tir.meta_schedule.runner import LocalRunner

    return synchronous(LocalRunner(timeout_sec=30, evaluator_config=_evaluator(min_repeat_ms),
                                   initializer=functools.partial(_runner_threads, cfg.num_threads)))


def _rpc_runner(cfg: TargetConfig, spec: dict, min_repeat_ms: int) -> Any:
    from tvm.s_tir.meta_schedule.runner import RPCConfig, RPCRunner

    rpc = RPCConfig(tracker_host=spec["tracker_host"], tracker_port=int(spec["tracker_port"]),
                    tracker_key=spec["key"], session_timeout_sec=int(spec.get("timeout_s", 60)))
    return RPCRunner(rpc_config=rpc, evaluator_config=_evaluator(min_repeat_ms), max_workers=1)


RUNNERS: dict[str, Callable[[TargetConfig, dict, int], Any]] = {
    "local": _local_runner,
    "rpc": _rpc_runner,
}


def make_runner(cfg: TargetConfig, min_repeat_ms: int = 40) -> Any:
    """The MetaSchedule runner the target's ``runner`` section names."""
    spec = cfg.runner
    return RUNNERS[spec["kind"]](cfg, spec, min_repeat_ms)


def measurable(cfg: TargetConfig) -> tuple[bool, str]:
    """Whether this machine can time code for ``cfg`` now, and if not a plain reason."""
    kind = cfg.runner["kind"]
    if kind == "rpc":
        from tvm_ofa.compiler.rpc import tracker_reachable

        host, port = cfg.runner["tracker_host"], int(cfg.runner["tracker_port"])
        if not tracker_reachable(host, port):
            return False, f"no RPC tracker reachable at {host}:{port} (key {cfg.runner['key']})"
        return True, ""
    if cfg.target.get("kind") == "cuda":
        import tvm

        if not tvm.cuda(0).exist:
            return False, "no CUDA GPU on this machine"
        return True, ""
    if cfg.is_cross:
        return False, f"{cfg.name} code does not run on this {os.uname().machine} machine " \
                      "and its runner is local"
    return True, ""


def build_records(builder: Any, target: Any, records: Sequence[Any]) -> list[tuple[Any, str | None]]:
    """Build the schedules of tuning ``records`` for ``target``.

    Returns
    -------
    list of (MeasureCandidate, artifact path or None)
        In the order of ``records``; the path is None where the build failed.
    """
    from tvm.s_tir.meta_schedule.builder import BuilderInput

    cands = [r.as_measure_candidate() for r in records]
    res = builder.build([BuilderInput(c.sch.mod, target) for c in cands])
    return [(c, b.artifact_path if b.error_msg is None else None) for c, b in zip(cands, res)]


def run_built(runner: Any, dev_type: str, items: Sequence[tuple[Any, str | None]]
              ) -> list[tuple[list[float] | None, str | None]]:
    """Time what :func:`build_records` built (the runner deletes each artifact it ran).

    Returns
    -------
    list of (run seconds or None, last line of the error or None)
        In the order of ``items``; an item that did not build gets ``(None, None)``.
    """
    from tvm.s_tir.meta_schedule.runner import RunnerInput

    futs = iter(runner.run([RunnerInput(p, dev_type, c.args_info) for c, p in items if p]))
    out: list[tuple[list[float] | None, str | None]] = []
    for _, p in items:
        if not p:
            out.append((None, None))
            continue
        r = next(futs).result()
        if r.error_msg:
            out.append((None, r.error_msg.strip().splitlines()[-1]))
        else:
            out.append(([float(s) for s in r.run_secs] if r.run_secs else None, None))
    return out
