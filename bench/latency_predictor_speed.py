#!/usr/bin/env python
"""Speed of the latency predictor on 10,000 archs of the default space (batch predict).

The per-workload model is XGBoost fitted on synthetic latencies (speed does not depend on what
it learned). Prints what docs/BENCHMARKS.md quotes:

    python bench/latency_predictor_speed.py
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tvm_ofa.arch import SearchSpace  # noqa: E402
from tvm_ofa.predict.dataset import WorkloadDataset  # noqa: E402
from tvm_ofa.predict.latency import fit_predictor  # noqa: E402
from tvm_ofa.predict.workloads import NetConfig, WorkloadTable, task_multiset  # noqa: E402


def main() -> int:
    space = SearchSpace()
    wls = WorkloadTable(space, NetConfig()).workloads
    data = WorkloadDataset.from_latencies(wls, [1e-6 + 2 * w.macs / 5e9 for w in wls])
    pred = fit_predictor("xgboost", data, space=space)
    archs = space.sample_many(10000, rng=1)
    t = time.perf_counter()
    pred.predict(archs[:10])
    first = time.perf_counter() - t
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        pred.predict(archs)
        runs.append(time.perf_counter() - t)
    genes = WorkloadTable.arrays(archs)
    runs_arr = []
    for _ in range(5):
        t = time.perf_counter()
        pred.predict(arrays=genes)
        runs_arr.append(time.perf_counter() - t)
    t = time.perf_counter()
    for a in archs[:1000]:
        task_multiset(a)
    scalar = (time.perf_counter() - t) / 1000
    print(f"workloads in the default space's table: {len(wls)}")
    print(f"first predict (builds the table, one XGBoost call over it): {first:.3f} s")
    print(f"predict 10,000 ArchConfigs: median of 5 {np.median(runs):.3f} s")
    print(f"predict 10,000 archs from (ks, e, d, resolution) arrays: median of 5 {np.median(runs_arr):.4f} s")
    print(f"scalar task list (subnet_workloads) per arch: {scalar * 1e6:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
