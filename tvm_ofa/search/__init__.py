"""Search of the subnet that maximizes predicted accuracy under a target's latency budget.

Public API::

    population           # (ks, e, d, r) int32 arrays: sample, mutate, crossover, canonicalize,
                         # unique, encode, to_archs / from_archs
    evolution_search(latency_fn, accuracy_fn, budgets_ms, space, ...) -> EvolutionResult
    nsga2_search(latency_fn, accuracy_fn, space, ...) -> ParetoFront
    best_under(front, budget_ms) -> Winner
    InfeasibleBudgetError  # a budget below the smallest predicted latency
"""
from __future__ import annotations

from tvm_ofa.search import population
from tvm_ofa.search.budget import InfeasibleBudgetError, check_budgets, latency_floor
from tvm_ofa.search.evolution import EvolutionResult, Winner, evolution_search
from tvm_ofa.search.nsga2 import ParetoFront, best_under, nsga2_search, non_dominated_sort, pareto_indices

__all__ = ["population", "InfeasibleBudgetError", "check_budgets", "latency_floor", "EvolutionResult",
           "Winner", "evolution_search", "ParetoFront", "best_under", "nsga2_search", "non_dominated_sort",
           "pareto_indices"]
