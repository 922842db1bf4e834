"""Once-for-all's constrained evolutionary search (``ofa/nas/search_algorithm/evolution.py``),
vectorized, for several latency budgets at once.

Per generation and budget: keep the best ``parent_ratio`` of the population, add
``mutation_ratio * population_size`` mutants of random parents and fill the rest with crossovers
of two random parents; a child over its budget is regenerated from the same parent(s), as
once-for-all does. All budgets advance in lockstep so each generation is one latency call (per
rejection round) and one accuracy call for all budgets together, and the initial populations
are drawn from one shared, once-evaluated pool.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from tvm_ofa.arch import ArchConfig, SearchSpace
from tvm_ofa.search import population as pop
from tvm_ofa.search.blas import single_threaded_blas
from tvm_ofa.search.budget import AccuracyFn, Counted, LatencyFn, check_budgets, latency_floor
from tvm_ofa.search.population import Genes


@dataclass(frozen=True)
class Winner:
    """The best arch found under one budget, with its predicted accuracy and latency."""

    budget_ms: float
    arch: ArchConfig
    accuracy: float
    latency_ms: float

    def to_dict(self) -> dict:
        return {"budget_ms": self.budget_ms, "arch_id": self.arch.id, "arch": self.arch.to_dict(),
                "predicted_accuracy": self.accuracy, "predicted_latency_ms": self.latency_ms}


@dataclass
class EvolutionResult:
    """Winners (in the order of the budgets given) and what the search cost.

    Attributes
    ----------
    history : ndarray
        ``(n_budgets, generations + 1)``: best accuracy in the population before each
        generation and at the end.
    n_latency_evals, n_accuracy_evals : int
        Archs passed to each predictor (rows, rejected candidates included).
    """

    winners: list[Winner]
    history: np.ndarray
    latency_floor_ms: float
    n_latency_evals: int = 0
    n_accuracy_evals: int = 0
    seconds: float = 0.0
    params: dict = field(default_factory=dict)


def _fill_feasible(space: SearchSpace, seeds: Genes, seed_lat: np.ndarray, seed_owner: np.ndarray,
                   budgets: np.ndarray, need: np.ndarray, latency_fn: LatencyFn, rng: np.random.Generator,
                   prob: float, max_rounds: int) -> tuple[Genes, np.ndarray, np.ndarray]:
    """Grow too-small feasible sets by mutating their own members: rejection sampling of the
    whole space almost never lands under a budget close to the floor."""
    out, out_lat, out_owner = [], [], []
    for _ in range(max_rounds):
        counts = np.bincount(np.concatenate([seed_owner] + out_owner), minlength=len(budgets))
        short = np.flatnonzero(counts < need)
        if not len(short):
            break
        src = []
        for b in short:
            members = np.flatnonzero(seed_owner == b)
            src.append(members[rng.integers(0, len(members), size=2 * (need[b] - counts[b]))])
        src = np.concatenate(src)
        kids = pop.mutate(space, pop.take(seeds, src), max(prob, 0.3), rng)
        lat = latency_fn(kids)
        ok = lat <= budgets[seed_owner[src]]
        out.append(pop.take(kids, ok))
        out_lat.append(lat[ok])
        out_owner.append(seed_owner[src][ok])
    return pop.concat(out or [pop.empty(space)]), np.concatenate(out_lat or [np.zeros(0)]), \
        np.concatenate(out_owner or [np.zeros(0, np.int64)]).astype(np.int64)


def initial_populations(space: SearchSpace, budgets: np.ndarray, size: int, latency_fn: LatencyFn,
                        rng: np.random.Generator, floor: Genes, pool_size: int | None = None,
                        max_rounds: int = 10, mutate_prob: float = 0.1) -> tuple[Genes, np.ndarray]:
    """``size`` feasible archs per budget, rows ``b * size + j``, and their latencies.

    One shared random pool is evaluated once and split by budget (rejection sampling, as
    once-for-all); budgets it cannot fill are grown by mutation from their feasible members,
    which always include ``floor`` (the fastest arch known, feasible for every checked budget).
    """
    pool_size = pool_size or 10 * size
    pool = pop.concat([floor, pop.sample(space, pool_size - 1, rng)])
    lat = latency_fn(pool)
    for _ in range(max_rounds):
        if ((lat[None, :] <= budgets[:, None]).sum(1) >= size).all():
            break
        more = pop.sample(space, pool_size, rng)
        pool, lat = pop.concat([pool, more]), np.concatenate([lat, latency_fn(more)])
    feas = lat[None, :] <= budgets[:, None]  # (B, pool)
    # the floor arch comes first in the pool; move it to the back so that it only fills gaps
    order = np.concatenate([np.arange(1, len(lat)), [0]])
    rows, owner = [], []
    for b in range(len(budgets)):
        idx = order[feas[b, order]][:size]
        rows.append(idx)
        owner.append(np.full(len(idx), b))
    rows_a, owner_a = np.concatenate(rows), np.concatenate(owner)
    need = np.full(len(budgets), size)
    extra, extra_lat, extra_owner = _fill_feasible(space, pop.take(pool, rows_a), lat[rows_a], owner_a,
                                                   budgets, need, latency_fn, rng, mutate_prob, 10 * max_rounds)
    genes = pop.concat([pop.take(pool, rows_a), extra])
    all_lat = np.concatenate([lat[rows_a], extra_lat])
    all_owner = np.concatenate([owner_a, extra_owner])
    pick = []
    for b in range(len(budgets)):
        members = np.flatnonzero(all_owner == b)
        # still short after growing (a budget a hair above the floor): repeat members
        pick.append(members[np.arange(size) % len(members)])
    pick = np.concatenate(pick)
    return pop.take(genes, pick), all_lat[pick]


def _regenerate(space: SearchSpace, genes: Genes, pa: np.ndarray, pb: np.ndarray, is_mut: np.ndarray,
                prob: float, rng: np.random.Generator) -> Genes:
    """Children of parent rows ``pa`` (mutation) or ``pa`` x ``pb`` (crossover), in row order."""
    kids = pop.take(genes, pa)  # placeholder rows, overwritten below
    kids = tuple(k.copy() for k in kids)
    m, c = np.flatnonzero(is_mut), np.flatnonzero(~is_mut)
    if len(m):
        mk = pop.mutate(space, pop.take(genes, pa[m]), prob, rng)
        for k, v in zip(kids, mk):
            k[m] = v
    if len(c):
        ck = pop.crossover(space, pop.take(genes, pa[c]), pop.take(genes, pb[c]), rng)
        for k, v in zip(kids, ck):
            k[c] = v
    return kids  # type: ignore[return-value]


@single_threaded_blas()  # see tvm_ofa.search.blas: small matmuls, many calls
def evolution_search(latency_fn: LatencyFn, accuracy_fn: AccuracyFn, budgets_ms: Sequence[float],
                     space: SearchSpace | None = None, *, population_size: int = 100, generations: int = 500,
                     parent_ratio: float = 0.25, mutation_ratio: float = 0.5, mutate_prob: float = 0.1,
                     seed: int = 0, max_retries: int = 20, target: str | None = None) -> EvolutionResult:
    """Best predicted accuracy under each latency budget (once-for-all's evolutionary search).

    Parameters
    ----------
    latency_fn, accuracy_fn : callable
        ``(ks, e, d, r)`` int32 arrays -> one value per row (ms; accuracy, maximized).
    budgets_ms : sequence of float
        Latency budgets; all are searched in one lockstep run.
    space : SearchSpace, optional
        Default: the paper's space.
    population_size, generations, parent_ratio, mutation_ratio, mutate_prob :
        Once-for-all's defaults (100, 500, 0.25, 0.5, 0.1).
    seed : int
        The run is a function of the seed and the predictors.
    max_retries : int
        Rounds of regenerating over-budget children; still over budget, a child is a copy of its
        (feasible) parent.
    target : str, optional
        Named in the error for an impossible budget.

    Raises
    ------
    InfeasibleBudgetError
        A budget below the smallest predicted latency in the space.
    """
    t0 = time.perf_counter()
    space = space or SearchSpace()
    rng = np.random.default_rng(seed)
    lat_fn, acc_fn = Counted(latency_fn), Counted(accuracy_fn)
    budgets = np.asarray(budgets_ms, dtype=np.float64).reshape(-1)
    floor_ms, floor = latency_floor(space, lat_fn, rng)
    check_budgets(budgets.tolist(), floor_ms, target)

    P, B = population_size, len(budgets)
    n_par = max(1, int(round(parent_ratio * P)))
    n_mut = min(P - n_par, int(round(mutation_ratio * P)))
    n_cross = P - n_par - n_mut
    n_kid = n_mut + n_cross
    genes, lat = initial_populations(space, budgets, P, lat_fn, rng, floor, mutate_prob=mutate_prob)
    acc = acc_fn(genes)
    history = np.zeros((B, generations + 1))
    row_budget = np.repeat(budgets, n_kid)
    is_mut = np.tile(np.arange(n_kid) < n_mut, B)
    base = (np.arange(B) * P)[:, None]

    for gen in range(generations):
        acc2 = acc.reshape(B, P)
        order = np.argsort(-acc2, axis=1, kind="stable")[:, :n_par]
        history[:, gen] = np.take_along_axis(acc2, order[:, :1], 1)[:, 0]
        parents = (base + order).reshape(-1)  # flat rows, budget-major
        pa = (base + np.take_along_axis(order, rng.integers(0, n_par, (B, n_kid)), 1)).reshape(-1)
        pb = (base + np.take_along_axis(order, rng.integers(0, n_par, (B, n_kid)), 1)).reshape(-1)
        kids = _regenerate(space, genes, pa, pb, is_mut, mutate_prob, rng)
        kid_lat = lat_fn(kids)
        bad = np.flatnonzero(kid_lat > row_budget)
        for _ in range(max_retries):
            if not len(bad):
                break
            redo = _regenerate(space, genes, pa[bad], pb[bad], is_mut[bad], mutate_prob, rng)
            redo_lat = lat_fn(redo)
            for k, v in zip(kids, redo):
                k[bad] = v
            kid_lat[bad] = redo_lat
            bad = bad[redo_lat > row_budget[bad]]
        if len(bad):
            for k, g in zip(kids, genes):
                k[bad] = g[pa[bad]]
            kid_lat[bad] = lat[pa[bad]]
        kid_acc = acc_fn(kids)
        # next population: each budget's parents, then its children
        genes = tuple(
            np.concatenate([g[parents].reshape(B, n_par, *g.shape[1:]), k.reshape(B, n_kid, *g.shape[1:])],
                           axis=1).reshape(B * P, *g.shape[1:])
            for g, k in zip(genes, kids))  # type: ignore[assignment]
        lat = np.concatenate([lat[parents].reshape(B, n_par), kid_lat.reshape(B, n_kid)], 1).reshape(-1)
        acc = np.concatenate([acc[parents].reshape(B, n_par), kid_acc.reshape(B, n_kid)], 1).reshape(-1)

    acc2 = acc.reshape(B, P)
    best = base[:, 0] + np.argmax(acc2, axis=1)
    history[:, generations] = acc[best]
    archs = pop.to_archs(pop.take(genes, best))
    winners = [Winner(float(b), a, float(acc[i]), float(lat[i])) for b, a, i in zip(budgets, archs, best)]
    return EvolutionResult(
        winners=winners, history=history, latency_floor_ms=floor_ms, n_latency_evals=lat_fn.rows,
        n_accuracy_evals=acc_fn.rows, seconds=time.perf_counter() - t0,
        params={"population_size": P, "generations": generations, "parent_ratio": parent_ratio,
                "mutation_ratio": mutation_ratio, "mutate_prob": mutate_prob, "seed": seed})
