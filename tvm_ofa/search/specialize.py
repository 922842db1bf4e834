"""Specialize: for each latency budget, search, then tune, build and **measure** the winner, and
close the loop when the measurement misses the budget.

The predictor is a model; the measurement is the truth. When a winner measures over its budget,
the ratio measured / predicted tightens the budget the next search sees (bounded retries), and the
outcome is reported as it is. Finished budgets are recorded in ``<out_root>/<target>/specialize.json``
so an interrupted run resumes without redoing them.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from tvm_ofa.arch import ArchConfig

Progress = Callable[[dict[str, Any]], None]


@dataclass
class Specialized:
    """The outcome for one budget.

    ``status`` is ``met`` (measured median within budget), ``missed`` (over budget after all
    attempts, the closest attempt kept) or ``unmeasured`` (the target cannot be timed from here).
    """

    budget_ms: float
    status: str
    arch: dict[str, Any]
    arch_id: str
    predicted_latency_ms: float
    predicted_accuracy: float
    measured_latency_ms: Optional[float]
    measured_p90_ms: Optional[float]
    artifact: str
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _state_path(out_root: Path, target: str) -> Path:
    return out_root / target / "specialize.json"


def _load_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    tmp.replace(path)


def specialize(cfg: Any, supernet: Any, latency_predictor: Any, accuracy_predictor: Any,
               budgets_ms: Sequence[float], *, out_root: str | os.PathLike = "artifacts",
               log_root: str | os.PathLike | None = None, seed: int = 0, population_size: int = 100,
               generations: int = 500, max_attempts: int = 3, trials_per_task: int | None = None,
               trials_per_round: int | None = None, warmup: int = 10, repeats: int = 50,
               run_key: str = "", progress: Progress | None = None, tune_progress: Any = None,
               extract: Callable[[ArchConfig], Any] | None = None) -> list[Specialized]:
    """Search, emit and measure one subnet per budget.

    Parameters
    ----------
    cfg : TargetConfig
    supernet : OFAMobileNetV3
    latency_predictor, accuracy_predictor
        Objects with ``predict(arrays=(ks, e, d, r))``.
    budgets_ms : sequence of float
    max_attempts : int
        Searches per budget when measurements miss it.
    extract : callable, optional
        ``arch -> static module`` (e.g. with batch norm recalibrated); default ``supernet.extract``.
    run_key : str
        Identifies the inputs (checkpoint, predictors); recorded results with another key are redone.
    progress : callable, optional
        Receives ``{"event": "search" | "emit" | "measured" | "resumed", ...}`` dicts.

    Returns
    -------
    list of Specialized
        In the order of ``budgets_ms``.
    """
    from tvm_ofa.compiler.artifact import update_metadata
    from tvm_ofa.compiler.pipeline import emit
    from tvm_ofa.search.budget import check_budgets, latency_floor
    from tvm_ofa.search.evolution import evolution_search

    progress = progress or (lambda event: None)
    out_root = Path(out_root)
    space = supernet.space
    lat_fn = lambda genes: latency_predictor.predict(arrays=genes)  # noqa: E731
    acc_fn = lambda genes: accuracy_predictor.predict(arrays=genes)  # noqa: E731
    floor, _ = latency_floor(space, lat_fn, np.random.default_rng(seed))
    check_budgets(list(budgets_ms), floor, cfg.name)
    state_path = _state_path(out_root, cfg.name)
    state = _load_state(state_path)
    if state.get("run_key") != run_key:
        state = {"run_key": run_key, "results": {}}
    results: list[Specialized] = []

    for budget in budgets_ms:
        key = f"{float(budget):g}"
        done = state["results"].get(key)
        if done and Path(done["artifact"], "model.so").is_file():
            progress({"event": "resumed", "budget_ms": budget, "arch_id": done["arch_id"]})
            results.append(Specialized(**done))
            continue
        search_budget, attempts, best = float(budget), [], None
        for attempt in range(max_attempts):
            if search_budget < floor:
                break
            progress({"event": "search", "budget_ms": budget, "search_budget_ms": search_budget,
                      "attempt": attempt + 1})
            winner = evolution_search(lat_fn, acc_fn, [search_budget], space, population_size=population_size,
                                      generations=generations, seed=seed + attempt, target=cfg.name).winners[0]
            arch: ArchConfig = winner.arch
            progress({"event": "emit", "budget_ms": budget, "arch_id": arch.id,
                      "predicted_latency_ms": winner.latency_ms})
            module = extract(arch) if extract is not None else supernet.extract(arch).eval()
            folder = emit(cfg, arch, module, log_root=log_root, out_root=out_root,
                          trials_per_task=trials_per_task, trials_per_round=trials_per_round,
                          progress=tune_progress, warmup=warmup, repeats=repeats)
            meta = update_metadata(
                folder, predicted_latency_ms=float(winner.latency_ms),
                accuracy={"predicted": float(winner.accuracy), "measured": None},
                specialize={"budget_ms": float(budget), "search_budget_ms": search_budget, "attempt": attempt + 1})
            lat = meta.get("latency") or {}
            # the figure a prediction is compared with: the fastest window over fresh loads, as
            # the latency predictor's truth is timed (metadata of older versions: the median)
            measured = lat.get("latency_ms") or lat.get("median_ms")
            record = {"arch_id": arch.id, "search_budget_ms": search_budget,
                      "predicted_latency_ms": float(winner.latency_ms), "measured_latency_ms": measured}
            attempts.append(record)
            progress({"event": "measured", "budget_ms": budget, **record})
            candidate = Specialized(
                budget_ms=float(budget), status="unmeasured" if measured is None else
                ("met" if measured <= budget else "missed"), arch=arch.to_dict(), arch_id=arch.id,
                predicted_latency_ms=float(winner.latency_ms), predicted_accuracy=float(winner.accuracy),
                measured_latency_ms=measured, measured_p90_ms=lat.get("p90_ms"), artifact=str(folder),
                attempts=attempts)
            if best is None or candidate.status == "met" or (
                    best.status == "missed" and measured is not None and measured < (best.measured_latency_ms or 1e9)):
                best = candidate
            if measured is None or measured <= budget:
                break
            # the predictor was optimistic by measured / predicted here: ask the next search for less
            search_budget = float(budget) * winner.latency_ms / measured * 0.98
        assert best is not None  # check_budgets guarantees the first search runs
        best.attempts = attempts
        results.append(best)
        state["results"][key] = best.to_dict()
        _save_state(state_path, state)
    return results
