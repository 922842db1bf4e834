"""Predictors of a subnet's cost on a target without compiling it: the latency predictor
(XGBoost on the target's tuning logs) and its baselines.

Public API (heavy imports are lazy)::

    subnet_workloads(arch, net) -> [Workload]       # the fused TIR tasks, analytically
    WorkloadTable(space, net).ids(archs)            # vectorized: archs -> workload ids
    build_dataset(log_dir) -> WorkloadDataset       # best measured latency per workload
    fit_predictor(kind, dataset, measurements, ...) -> LatencyPredictor
    load_predictor(log_dir, provenance, match=None) -> LatencyPredictor   # one file per network
"""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Workload": "tvm_ofa.predict.workloads",
    "NetConfig": "tvm_ofa.predict.workloads",
    "WorkloadTable": "tvm_ofa.predict.workloads",
    "subnet_workloads": "tvm_ofa.predict.workloads",
    "task_multiset": "tvm_ofa.predict.workloads",
    "tvm_task_multiset": "tvm_ofa.predict.workloads",
    "workload_from_mod": "tvm_ofa.predict.workloads",
    "WorkloadDataset": "tvm_ofa.predict.dataset",
    "Measurement": "tvm_ofa.predict.dataset",
    "build_dataset": "tvm_ofa.predict.dataset",
    "load_measurements": "tvm_ofa.predict.dataset",
    "LatencyPredictor": "tvm_ofa.predict.latency",
    "PREDICTORS": "tvm_ofa.predict.latency",
    "fit_predictor": "tvm_ofa.predict.latency",
    "load_predictor": "tvm_ofa.predict.latency",
    "evaluate": "tvm_ofa.predict.latency",
    "LatencyPredictorError": "tvm_ofa.predict.latency",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tvm_ofa.predict' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
