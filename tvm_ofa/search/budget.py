"""Latency budgets: the smallest one a target can meet, the error for those it cannot, and the
counting wrappers searches evaluate their predictors through."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from tvm_ofa.arch import SearchSpace
from tvm_ofa.errors import TvmOfaError
from tvm_ofa.search import population as pop
from tvm_ofa.search.population import Genes

LatencyFn = Callable[[Genes], np.ndarray]
"""``(ks, e, d, r)`` arrays -> predicted latency (ms) per row."""
AccuracyFn = Callable[[Genes], np.ndarray]
"""``(ks, e, d, r)`` arrays -> predicted accuracy per row (higher is better)."""


class InfeasibleBudgetError(TvmOfaError, ValueError):
    """A latency budget below the smallest predicted latency of any subnet."""


@dataclass
class Counted:
    """A predictor function that counts the archs it was asked about (rows, not calls)."""

    fn: Callable[[Genes], np.ndarray]
    rows: int = 0
    calls: int = 0

    def __call__(self, genes: Genes) -> np.ndarray:
        self.rows += pop.size(genes)
        self.calls += 1
        return np.asarray(self.fn(genes), dtype=np.float64).reshape(-1)


def latency_floor(space: SearchSpace, latency_fn: LatencyFn, rng: np.random.Generator,
                  n_samples: int = 1000) -> tuple[float, Genes]:
    """Smallest predicted latency found and its arch (one row).

    The smallest arch at the smallest resolution is the minimum of any monotone predictor; a
    learned one need not be monotone, so samples near that corner (smallest depths and
    resolution) and across the space are evaluated too.

    Parameters
    ----------
    space : SearchSpace
    latency_fn : LatencyFn
    rng : numpy.random.Generator
    n_samples : int
        Archs sampled besides the smallest one (half of them near the smallest corner).
    """
    near = pop.sample(space, n_samples // 2, rng)
    near = pop.canonicalize(space, (near[0], near[1], np.full_like(near[2], min(space.d_choices)),
                                    np.full_like(near[3], min(space.resolutions))))
    cand = pop.concat([pop.smallest(space), near, pop.sample(space, n_samples - n_samples // 2, rng)])
    lat = np.asarray(latency_fn(cand), dtype=np.float64)
    i = int(np.argmin(lat))
    return float(lat[i]), pop.take(cand, np.array([i]))


def check_budgets(budgets_ms: Sequence[float], floor_ms: float, target: str | None = None) -> None:
    """Raise :class:`InfeasibleBudgetError` (one line, naming the smallest feasible budget) if
    any budget is below ``floor_ms``."""
    bad = [b for b in budgets_ms if not b >= floor_ms]  # catches NaN too
    if bad:
        shown = math.ceil(floor_ms * 1000) / 1000  # rounded up so that the suggestion is feasible
        where = f" on {target}" if target else ""
        raise InfeasibleBudgetError(
            f"latency budget {min(bad):g} ms is below the smallest predicted latency{where}: "
            f"{shown:.3f} ms (the smallest subnet); use a budget of at least {shown:.3f} ms")
