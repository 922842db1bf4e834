"""Multi-objective search: NSGA-II (Deb et al. 2002) over (accuracy, max; latency, min), giving
the whole accuracy/latency Pareto front in one run, and reading a budget's best arch off it.

Every evaluated arch also enters an archive of non-dominated points, so the front returned is
the best seen over the run, not only the last population's first rank.
"""
from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

import numpy as np

from tvm_ofa.arch import SearchSpace
from tvm_ofa.search import population as pop
from tvm_ofa.search.blas import single_threaded_blas
from tvm_ofa.search.budget import AccuracyFn, Counted, LatencyFn, check_budgets, latency_floor
from tvm_ofa.search.evolution import Winner
from tvm_ofa.search.population import Genes


@dataclass
class ParetoFront:
    """Non-dominated archs sorted by latency (so accuracy increases along it too).

    Attributes
    ----------
    genes : Genes
    accuracy, latency_ms : ndarray
    latency_floor_ms : float
        Smallest predicted latency found in the space.
    """

    genes: Genes
    accuracy: np.ndarray
    latency_ms: np.ndarray
    latency_floor_ms: float
    n_latency_evals: int = 0
    n_accuracy_evals: int = 0
    seconds: float = 0.0
    params: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.accuracy)


def non_dominated_sort(objectives: np.ndarray) -> np.ndarray:
    """Front rank (0 = non-dominated) of each row of ``objectives`` ``(N, M)``, all minimized."""
    o = np.asarray(objectives, dtype=np.float64)
    if o.ndim == 2 and o.shape[1] == 2:
        return _sort_2d(o)
    le = (o[:, None, :] <= o[None, :, :]).all(2)
    lt = (o[:, None, :] < o[None, :, :]).any(2)
    dom = le & lt  # dom[i, j]: i dominates j
    n_dominators = dom.sum(0)
    rank = np.full(len(o), -1)
    current = np.flatnonzero(n_dominators == 0)
    r = 0
    while len(current):
        rank[current] = r
        n_dominators = n_dominators - dom[current].sum(0)
        n_dominators[current] = -1  # never picked again
        current = np.flatnonzero(n_dominators == 0)
        r += 1
    return rank


def _sort_2d(o: np.ndarray) -> np.ndarray:
    """``non_dominated_sort`` for two objectives in O(N log N): in lexicographic order a point is
    dominated exactly by earlier, unequal points with a second objective <= its own."""
    order = np.lexsort((o[:, 1], o[:, 0]))
    rank = np.empty(len(o), dtype=np.int64)
    front_min: list[float] = []  # smallest second objective in each front so far, increasing
    prev = None
    for i in order.tolist():
        f0, f1 = o[i, 0], o[i, 1]
        if prev is not None and o[prev, 0] == f0 and o[prev, 1] == f1:
            rank[i] = rank[prev]  # copies do not dominate each other
        else:
            k = bisect.bisect_right(front_min, f1)  # first front none of whose points is <= f1
            if k == len(front_min):
                front_min.append(f1)
            else:
                front_min[k] = f1
            rank[i] = k
        prev = i
    return rank


def crowding_distance(objectives: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Crowding distance of each row within its front (infinite at a front's ends)."""
    o = np.asarray(objectives, dtype=np.float64)
    dist = np.zeros(len(o))
    for r in np.unique(rank):
        idx = np.flatnonzero(rank == r)
        if len(idx) <= 2:
            dist[idx] = np.inf
            continue
        for m in range(o.shape[1]):
            order = idx[np.argsort(o[idx, m], kind="stable")]
            span = o[order[-1], m] - o[order[0], m]
            dist[order[0]] = dist[order[-1]] = np.inf
            if span > 0:
                dist[order[1:-1]] += (o[order[2:], m] - o[order[:-2], m]) / span
    return dist


def pareto_indices(accuracy: np.ndarray, latency_ms: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points (accuracy max, latency min), sorted by latency; of
    equal points the first is kept."""
    order = np.lexsort((np.arange(len(accuracy)), -accuracy, latency_ms))
    acc = accuracy[order]
    prev_best = np.concatenate([[-np.inf], np.maximum.accumulate(acc)[:-1]])
    return order[acc > prev_best]


def _rank_keys(acc: np.ndarray, lat: np.ndarray, max_latency_ms: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Constrained-domination rank and crowding: every feasible point before every infeasible
    one, infeasible ones ranked by how far over the limit they are."""
    obj = np.stack([-acc, lat], axis=1)
    if max_latency_ms is None:
        rank = non_dominated_sort(obj)
        return rank, crowding_distance(obj, rank)
    ok = lat <= max_latency_ms
    rank = np.zeros(len(acc), dtype=np.int64)
    crowd = np.zeros(len(acc))
    if ok.any():
        rank[ok] = non_dominated_sort(obj[ok])
        crowd[ok] = crowding_distance(obj[ok], rank[ok])
    if (~ok).any():
        over = lat[~ok] - max_latency_ms
        top = rank[ok].max() + 1 if ok.any() else 0
        rank[~ok] = top + np.argsort(np.argsort(over, kind="stable"), kind="stable")
    return rank, crowd


@single_threaded_blas()  # see tvm_ofa.search.blas: small matmuls, many calls
def nsga2_search(latency_fn: LatencyFn, accuracy_fn: AccuracyFn, space: SearchSpace | None = None, *,
                 population_size: int = 100, generations: int = 500, mutate_prob: float = 0.1,
                 max_latency_ms: float | None = None, seed: int = 0, target: str | None = None) -> ParetoFront:
    """The accuracy/latency Pareto front of the space by NSGA-II.

    Parameters
    ----------
    latency_fn, accuracy_fn : callable
        ``(ks, e, d, r)`` int32 arrays -> one value per row.
    space : SearchSpace, optional
    population_size, generations : int
    mutate_prob : float
        Per-gene resampling probability applied to every crossover child.
    max_latency_ms : float, optional
        Spend the search below this latency (constrained domination); the front keeps only
        archs under it.
    seed : int
    target : str, optional
        Named in the error for an impossible ``max_latency_ms``.

    Raises
    ------
    InfeasibleBudgetError
        ``max_latency_ms`` below the smallest predicted latency in the space.
    """
    t0 = time.perf_counter()
    space = space or SearchSpace()
    rng = np.random.default_rng(seed)
    lat_fn, acc_fn = Counted(latency_fn), Counted(accuracy_fn)
    floor_ms, floor = latency_floor(space, lat_fn, rng)
    if max_latency_ms is not None:
        check_budgets([max_latency_ms], floor_ms, target)
    N = population_size
    # the fastest arch known anchors the front's low end
    genes = pop.concat([floor, pop.smallest(space), pop.sample(space, N - 2, rng)])
    lat, acc = lat_fn(genes), acc_fn(genes)
    cap = np.inf if max_latency_ms is None else max_latency_ms
    ok = lat <= cap
    arch_g, arch_a, arch_l = pop.take(genes, ok), acc[ok], lat[ok]
    rank, crowd = _rank_keys(acc, lat, max_latency_ms)

    for _ in range(generations):
        # binary tournaments: lower rank, then larger crowding distance
        c = rng.integers(0, N, (2, 2 * N))
        a_wins = (rank[c[0]] < rank[c[1]]) | ((rank[c[0]] == rank[c[1]]) & (crowd[c[0]] >= crowd[c[1]]))
        mates = np.where(a_wins, c[0], c[1])
        kids = pop.crossover(space, pop.take(genes, mates[:N]), pop.take(genes, mates[N:]), rng)
        kids = pop.mutate(space, kids, mutate_prob, rng)
        k_lat, k_acc = lat_fn(kids), acc_fn(kids)
        ok = k_lat <= cap
        arch_g = pop.concat([arch_g, pop.take(kids, ok)])
        arch_a, arch_l = np.concatenate([arch_a, k_acc[ok]]), np.concatenate([arch_l, k_lat[ok]])
        keep = pareto_indices(arch_a, arch_l)
        arch_g, arch_a, arch_l = pop.take(arch_g, keep), arch_a[keep], arch_l[keep]

        all_g = pop.concat([genes, kids])
        all_a, all_l = np.concatenate([acc, k_acc]), np.concatenate([lat, k_lat])
        r, cd = _rank_keys(all_a, all_l, max_latency_ms)
        # copies of one network only crowd the front: they go after every distinct arch
        dup = np.ones(len(all_a), dtype=bool)
        dup[pop.unique(all_g)[1]] = False
        sel = np.lexsort((np.arange(len(all_a)), -cd, r, dup))[:N]
        genes, acc, lat = pop.take(all_g, sel), all_a[sel], all_l[sel]
        rank, crowd = r[sel], cd[sel]  # as NSGA-II: ranks and distances from the merged set

    return ParetoFront(arch_g, arch_a, arch_l, floor_ms, lat_fn.rows, acc_fn.rows, time.perf_counter() - t0,
                       {"population_size": N, "generations": generations, "mutate_prob": mutate_prob,
                        "max_latency_ms": max_latency_ms, "seed": seed})


def best_under(front: ParetoFront, budget_ms: float, target: str | None = None) -> Winner:
    """The front's most accurate arch within ``budget_ms``.

    Raises
    ------
    InfeasibleBudgetError
        No arch of the space is predicted under the budget.
    """
    # the front's fastest point is the search's latency floor (it seeds the first population)
    check_budgets([budget_ms], float(front.latency_ms.min(initial=np.inf)), target)
    ok = np.flatnonzero(front.latency_ms <= budget_ms)
    i = ok[np.argmax(front.accuracy[ok])]
    arch = pop.to_archs(pop.take(front.genes, np.array([i])))[0]
    return Winner(float(budget_ms), arch, float(front.accuracy[i]), float(front.latency_ms[i]))
