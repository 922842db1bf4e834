"""Tune the whole search space on this machine, the workloads that carry the most latency first
(``tvm-ofa tune --space``).

A subnet the search picks is fast only where its workloads have records: the paper's space has
about 2,100 distinct workloads over its 25 resolutions, far more than a few benchmark subnets
cover. This job ranks every workload of the space by the latency it carries in a uniform sample
of subnets (occurrences times its predicted time,
:func:`~tvm_ofa.predict.latency.rank_workloads`), and tunes, a few at a
time, those not yet tuned to the budget, each round inside the sampled subnet that holds the
most of the next ones. The ranking comes from the latency predictor of the network on this CPU,
else from the CPU folder a calibration would start from, else from MACs.

Resumable: records are appended per measured batch, and a rerun ranks again from the records
on disk, so it continues with what is left.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from tvm_ofa.arch import ArchConfig
from tvm_ofa.compiler.store import NoTuningLogsError, writer_lock
from tvm_ofa.errors import TvmOfaError
from tvm_ofa.predict.latency import LatencyPredictor, MacsPredictor, load_predictor, rank_workloads
from tvm_ofa.predict.workloads import NetConfig


@dataclass
class SpaceTuneEvent:
    """Progress: ``kind`` is ``start``, ``round`` (before a round's tune), ``tuned`` (after it) or
    ``note``; ``covered`` the share of the sample's predicted latency in workloads tuned to the
    budget."""

    kind: str
    rounds: int
    workloads_tuned: int
    covered: float
    message: str = ""


@dataclass
class SpaceTuneReport:
    """What a space tune did, and what is left."""

    log_dir: str
    ranking: str
    workloads_total: int
    workloads_tuned: int
    new_trials: int
    rounds: int
    pending: int
    covered_before: float
    covered_after: float


def ranking_predictor(cfg: Any, net_cfg: NetConfig, space: Any, log_root: str | Path | None = None
                      ) -> tuple[LatencyPredictor, str]:
    """The model that ranks workloads, and a line saying which: this CPU's latency predictor of the
    network, else the one a calibration would start from, else MACs (a ranking needs no calibration,
    only relative times)."""
    from tvm_ofa.predict.calibrate import find_source, load_source
    from tvm_ofa.targets import host_provenance

    log_dir = cfg.log_dir(log_root)
    prov = host_provenance(cfg)
    match = {"space": space, "n_classes": net_cfg.n_classes, "width_mult": net_cfg.width_mult,
             "stem_stride": net_cfg.stem_stride}
    try:
        return load_predictor(log_dir, prov, match).for_space(space), f"the latency predictor in {log_dir}"
    except TvmOfaError:
        pass
    src = find_source(log_dir, prov, match)
    if src is not None:
        try:
            return load_source(src, prov, match).for_space(space), f"the latency predictor of {src.name}"
        except TvmOfaError:
            pass
    macs = MacsPredictor(space, net_cfg)
    macs.s_per_mac = 1e-9
    return macs, "MACs (no latency predictor of this network for this target)"


def pick_round(ranked: Sequence[str], archs: Sequence[ArchConfig], keys_of: Callable[[ArchConfig], set[str]],
               size: int) -> tuple[ArchConfig, list[str]]:
    """The subnet holding the heaviest of ``ranked`` (ties: the most of the next ``size``), and
    the heaviest ``size`` of ``ranked`` it holds: a round's fixed cost (lowering, neighbour
    schedules) is shared by as many workloads as it may take."""
    head = ranked[0]
    best = max((a for a in archs if head in keys_of(a)),
               key=lambda a: sum(1 for k in ranked[:size] if k in keys_of(a)))
    held = keys_of(best)
    return best, [k for k in ranked if k in held][:size]


def tune_space(cfg: Any, net: Any, *, hours: float, trials_per_task: int | None = None,
               workloads_per_round: int = 8, log_root: str | Path | None = None, n_archs: int = 512,
               seed: int = 0, progress: Optional[Callable[[SpaceTuneEvent], None]] = None,
               stop: Optional[Callable[[], bool]] = None) -> SpaceTuneReport:
    """Tune the workloads of ``net``'s whole space on ``cfg``, heaviest first, for ``hours``.

    Parameters
    ----------
    cfg : TargetConfig
    net : OFAMobileNetV3
        The supernet whose space and shapes are tuned (weights do not matter).
    hours : float
        Wall-clock budget: after the first round, a round is not started when less than the last
        one took is left.
    trials_per_task : int, optional
        Default: the target's ``tuning.trials_per_task``.
    workloads_per_round : int
        Workloads tuned together in one subnet (a round takes a few minutes on 2 cores).
    n_archs, seed : int
        The uniform sample of the space the ranking is computed over.
    progress : callable, optional
        Called with a :class:`SpaceTuneEvent` as work advances.
    stop : callable, optional
        Asked before each round; True ends the run there (MetaSchedule's task scheduler takes a
        Ctrl-C inside a round as one task's failure and goes on, so the CLI asks this way).

    Returns
    -------
    SpaceTuneReport
    """
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.tune import tune
    from tvm_ofa.predict.dataset import tuned_trials
    from tvm_ofa.predict.workloads import subnet_workloads

    if hours <= 0:
        raise TvmOfaError(f"hours must be positive, got {hours}")
    if workloads_per_round < 1:
        raise TvmOfaError(f"workloads per round must be at least 1, got {workloads_per_round}")
    budget = int(trials_per_task or cfg.tuning["trials_per_task"])
    if budget < 1:
        raise TvmOfaError(f"trials per task must be positive for a space tune, got {budget}")
    deadline = time.monotonic() + 3600 * hours
    emit = progress or (lambda e: None)
    net_cfg = NetConfig(net.width_mult, net.n_classes, net.stem_stride)
    space = net.space
    pred, ranking = ranking_predictor(cfg, net_cfg, space, log_root)
    archs = space.sample_many(n_archs, np.random.default_rng(seed))
    ranked, weight = rank_workloads(pred, archs)
    total_weight = float(weight.sum()) or 1.0
    cache: dict[str, set[str]] = {}

    def keys_of(a: ArchConfig) -> set[str]:
        if a.id not in cache:
            cache[a.id] = {w.key for w in subnet_workloads(a, net_cfg)}
        return cache[a.id]

    log_dir = cfg.log_dir(log_root)

    def trials_now() -> dict[str, int]:
        try:
            return tuned_trials(log_dir)
        except NoTuningLogsError:
            return {}

    def covered(done: dict[str, int]) -> float:
        return float(sum(w for k, w in zip(ranked, weight) if done.get(k, 0) >= budget)) / total_weight

    done = trials_now()
    before = covered(done)
    # a task whose schedule space ran out keeps fewer records than the budget: tried once a run
    tried: set[str] = set()
    rounds = tuned = trials = 0
    round_s = 30.0 * workloads_per_round * budget / 16  # a first guess, then the last round's
    emit(SpaceTuneEvent("start", 0, 0, before, f"ranking by {ranking}; {len(ranked)} workloads, "
                        f"{sum(1 for k in ranked if done.get(k, 0) >= budget)} tuned to {budget} trials"))
    with writer_lock(log_dir):
        while True:
            pending = [k for k in ranked if done.get(k, 0) < budget and k not in tried]
            if not pending:
                emit(SpaceTuneEvent("note", rounds, tuned, covered(done), "every workload of the space is tuned"))
                break
            if (stop is not None and stop()) or (rounds and time.monotonic() + round_s > deadline):
                break
            arch, chosen = pick_round(pending, archs, keys_of, workloads_per_round)
            emit(SpaceTuneEvent("round", rounds, tuned, covered(done),
                                f"{len(chosen)} workloads in {arch.id} ({len(pending)} left)"))
            t0 = time.monotonic()
            lowered = lower_module(net.extract(arch).eval(), (1, 3, arch.resolution, arch.resolution),
                                   lowering=cfg.lowering)
            rep = tune(cfg, lowered, trials_per_task=budget, log_root=log_root, only=chosen)
            rounds += 1
            tuned += rep.tasks_tuned
            trials += rep.new_trials
            tried.update(chosen)
            if rep.new_trials:
                round_s = time.monotonic() - t0
            done = trials_now()
            emit(SpaceTuneEvent("tuned", rounds, tuned, covered(done),
                                f"{arch.id}: {rep.tasks_tuned} workloads, {rep.new_trials} trials "
                                f"in {time.monotonic() - t0:.0f} s"))
    return SpaceTuneReport(log_dir=str(log_dir), ranking=ranking, workloads_total=len(ranked),
                           workloads_tuned=tuned, new_trials=trials, rounds=rounds,
                           pending=sum(1 for k in ranked if done.get(k, 0) < budget),
                           covered_before=before, covered_after=covered(done))
