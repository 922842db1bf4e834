"""The compiler half: lower a static subnet to Relax, tune it with MetaSchedule against a persistent
per-target database, build and export it, and measure it locally or through a TVM RPC tracker.

Public API (all heavy imports are lazy)::

    lower_module(module, input_shape) -> LoweredModel
    tune(cfg, lowered, ..., progress=callback) -> TuneReport
    compile_arch(cfg, arch, supernet, ...) -> Path  # tune what is missing, build, export, measure
    load_artifact(dir) -> Artifact
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "LoweredModel": "tvm_ofa.compiler.lower",
    "lower_module": "tvm_ofa.compiler.lower",
    "TuningDatabase": "tvm_ofa.compiler.store",
    "open_database": "tvm_ofa.compiler.store",
    "tune": "tvm_ofa.compiler.tune",
    "TuneProgress": "tvm_ofa.compiler.tune",
    "TuneReport": "tvm_ofa.compiler.tune",
    "build": "tvm_ofa.compiler.build",
    "compile_arch": "tvm_ofa.compiler.pipeline",
    "load_artifact": "tvm_ofa.compiler.artifact",
    "Artifact": "tvm_ofa.compiler.artifact",
    "emit": "tvm_ofa.compiler.pipeline",
    "Latency": "tvm_ofa.compiler.measure",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tvm_ofa.compiler' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
