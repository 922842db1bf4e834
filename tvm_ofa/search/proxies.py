"""Stand-ins for an accuracy predictor when none is fitted yet. Not accuracies: use them to
exercise a search, never to report one."""
from __future__ import annotations

import numpy as np

from tvm_ofa.predict.workloads import WorkloadTable
from tvm_ofa.search.budget import AccuracyFn
from tvm_ofa.search.population import Genes


def macs_proxy(table: WorkloadTable) -> AccuracyFn:
    """Millions of multiply-accumulates of each arch (bigger networks tend to be more accurate).

    Parameters
    ----------
    table : WorkloadTable
        The latency predictor's table (``predictor.table``), so both share one gather.
    """
    mmacs = np.append(np.array([w.macs for w in table.workloads], dtype=np.float64), 0.0) / 1e6

    def score(genes: Genes) -> np.ndarray:
        return mmacs[table.ids(arrays=genes)].sum(axis=1)

    return score
