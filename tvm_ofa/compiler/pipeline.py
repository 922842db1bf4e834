"""Arch -> artifact: extract, lower, tune what is missing, build, export, measure, describe."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tvm_ofa.targets import TargetConfig

DEFAULT_ARTIFACT_ROOT = Path("artifacts")


def artifact_dir(cfg: TargetConfig, arch_id: str, root: str | os.PathLike = DEFAULT_ARTIFACT_ROOT
                 ) -> Path:
    """``<root>/<target-name>/<arch-id>/``."""
    return Path(root) / cfg.name / arch_id


def emit(cfg: TargetConfig, arch: Any, module: Any, *, batch: int = 1,
         log_root: str | os.PathLike | None = None,
         out_root: str | os.PathLike = DEFAULT_ARTIFACT_ROOT, tune_first: bool = True,
         trials_per_task: int | None = None, trials_per_round: int | None = None,
         progress: Optional[Any] = None, measure: bool = True, warmup: int = 10,
         repeats: int = 50, passes: int = 1, canary: Any = None, max_passes: int | None = None,
         strategy: str = "evolutionary", seed_from: str | os.PathLike | None = None,
         reseed: bool = False) -> Path:
    """Build ``module`` (the static subnet of ``arch``) for ``cfg`` and write its artifact folder.

    Parameters
    ----------
    cfg : TargetConfig
    arch : ArchConfig
    module : torch.nn.Module
        ``supernet.extract(arch)``.
    batch : int
    log_root, out_root : path
        Tuning log root and artifact root.
    tune_first : bool
        Tune the workloads the database lacks before building (skipped, with the reason in the
        metadata, when the target cannot be measured from here).
    trials_per_task, trials_per_round, progress, strategy, seed_from, reseed
        Passed to :func:`tvm_ofa.compiler.tune.tune`.
    measure : bool
        Time the library when this machine can run it.
    warmup, repeats, passes, canary, max_passes
        Timing: see :func:`tvm_ofa.compiler.measure.benchmark_vm` (``passes`` windows, each at the
        machine's usual speed per ``canary`` when given, more up to ``max_passes`` until the
        fastest is confirmed; local runs only).

    Returns
    -------
    Path
        The artifact folder.
    """
    import tvm

    from tvm_ofa.compiler import tir_pipeline
    from tvm_ofa.compiler.artifact import ArtifactMetadata, export, load_artifact, time_artifact, write_metadata
    from tvm_ofa.compiler.build import build, cuda_kernels_compiled
    from tvm_ofa.compiler.store import schedule_database
    from tvm_ofa.compiler.intrin import family, register_light
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.measure import set_threads
    from tvm_ofa.compiler.runners import measurable
    from tvm_ofa.compiler.tune import coverage, tune
    from tvm_ofa.targets import host_provenance

    register_light(family(cfg.resolved_target()))
    if measure and cfg.is_cpu and not cfg.is_cross:
        # before the build's constant folding starts TVM's thread pool at its own size
        set_threads(cfg.num_threads)
    res = int(arch.resolution)
    lowered = lower_module(module, (batch, 3, res, res), lowering=cfg.lowering)
    can_measure, why = measurable(cfg)
    tune_note = None
    if tune_first and can_measure:
        tune(cfg, lowered, trials_per_task=trials_per_task, trials_per_round=trials_per_round,
             log_root=log_root, progress=progress, strategy=strategy, seed_from=seed_from,
             reseed=reseed)
    elif tune_first:
        tune_note = f"not tuned: {why}"
    log_dir = cfg.log_dir(log_root)
    target = cfg.tvm_target()
    db = schedule_database(log_dir)
    tuned, total = coverage(cfg, lowered, log_root)
    executable = build(lowered.mod, target, db if tuned else None)
    out = artifact_dir(cfg, arch.id, out_root)
    export(executable, out, cc=cfg.cc if cfg.is_cross else None)

    prov = host_provenance(cfg)
    meta: ArtifactMetadata = {
        "target": {"name": cfg.name, "config": str(cfg.path), "resolved": cfg.resolved_target()},
        "arch": arch.to_dict(),
        "arch_id": arch.id,
        "input_shape": list(lowered.input_shape),
        "input_dtype": lowered.input_dtype,
        "output_shape": list(lowered.output_shape),
        "entry": "main",
        "weights": "linked",  # bound as constants inside model.so
        # the lowering options (prepacked weights, blocked layout): records fit only their own
        "lowering": lowered.lowering.to_dict(),
        # the TIR lowering every build goes through (tir_pipeline: contiguous stride-2 loads)
        "tir_pipeline": tir_pipeline.PIPELINE,
        "weights_sha256": lowered.weights_sha256,
        # GPU kernels: compiled into the library, or CUDA source that its loader must compile
        # (TVM's Python and nvcc where it is loaded); see build._cuda_compiler
        "device_code": ("compiled" if cuda_kernels_compiled() else "source")
        if cfg.target.get("kind") == "cuda" else None,
        "tvm_version": tvm.__version__,
        "cpu": {"name": prov.get("cpu"), "features": prov.get("cpu_features", [])}
        if cfg.is_cpu else None,
        "tuning": {"coverage": round(tuned / total, 4) if total else 0.0,
                   "tuned_workloads": tuned, "total_workloads": total,
                   "log_dir": str(log_dir), "note": tune_note or
                   (None if tuned else "untuned: no records for this subnet's workloads")},
        "latency": None,
        "latency_note": None,
        "predicted_latency_ms": None,
        "accuracy": None,
    }
    write_metadata(out, meta)
    local_gpu = cfg.target.get("kind") == "cuda" and cfg.runner["kind"] == "local"
    if measure and can_measure and (not cfg.is_cross or local_gpu):
        x = np.random.default_rng(0).standard_normal(lowered.input_shape).astype("float32")
        if canary is None:
            meta["latency"] = time_artifact(out, cfg.num_threads, warmup, repeats, x, passes=max(passes, 2),
                                            max_passes=max(max_passes or 4, passes, 2)).to_dict()
        else:  # the collector's rounds: one load, windows at the canary's usual speed
            meta["latency"] = load_artifact(out, threads=cfg.num_threads).benchmark(
                warmup, repeats, x, passes=passes, canary=canary, max_passes=max_passes).to_dict()
    elif measure and cfg.runner["kind"] == "rpc" and can_measure:
        from tvm_ofa.compiler.rpc import measure_rpc

        meta["latency"] = measure_rpc(out, cfg.runner, warmup, repeats).to_dict()
    else:
        meta["latency_note"] = f"unmeasured: {why}" if not can_measure else "unmeasured: not asked"
    write_metadata(out, meta)
    return out


def compile_arch(cfg: TargetConfig, arch: Any, supernet: Any, **kwargs: Any) -> Path:
    """Extract ``arch`` from ``supernet`` and :func:`emit` it; keyword arguments as there."""
    return emit(cfg, arch, supernet.extract(arch).eval(), **kwargs)
