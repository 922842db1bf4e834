"""MetaSchedule tuning of a lowered subnet against the target's persistent database.

Tasks whose workload the database already covers (records for the budget asked, or a completed
tune at that budget) are skipped, so a second tune of an identical subnet runs zero trials and
subnets that share layer shapes share work. The JSON database is appended to after every batch,
so a killed tune loses at most the batch in flight and a rerun continues from the records.
"""
from __future__ import annotations

import logging
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Optional

from tvm_ofa.compiler.lower import LoweredModel
from tvm_ofa.compiler.seed import check_source, seed_tasks, transfer_tasks
from tvm_ofa.compiler.store import (PROVENANCE_FILE, calibration_source, open_database, other_threads_folder,
                                   read_provenance, schedule_database, write_json, writer_lock)
from tvm_ofa.errors import TvmOfaError
from tvm_ofa.targets import TargetConfig, host_provenance


class TuningError(TvmOfaError):
    """Tuning could not run (no runner reachable, every build failed, ...)."""


@dataclass
class TuneProgress:
    """One progress event, sent after every measured batch (and once at the start)."""

    tasks_done: int
    tasks_total: int
    trials: int
    trials_budget: int
    best_ms: float | None
    task_name: str = ""


@dataclass
class TuneReport:
    """What a tune did. ``estimated_ms`` is the weighted sum of the best per-task times."""

    log_dir: str
    tasks_total: int
    tasks_skipped: int
    tasks_tuned: int
    new_trials: int
    estimated_ms: float | None
    skipped_lines: int = 0
    task_names: list[str] = field(default_factory=list)
    seeded_tasks: int = 0  # tasks given another CPU's schedules, timed here, before tuning
    seed_measured: int = 0  # those schedules timed
    seed_source: str | None = None
    transferred_tasks: int = 0  # tasks never tuned anywhere, given their nearest neighbours' schedules
    transfer_measured: int = 0
    # tasks tuned lightly or not at all, given the schedules of neighbours tuned in depth, and how
    # many of them are faster for it
    deepened_tasks: int = 0
    deepened_faster: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


ProgressFn = Callable[[TuneProgress], None]


def write_provenance(cfg: TargetConfig, log_dir: Path) -> dict:
    """Write ``provenance.json`` (CPU name and features, threads, TVM version) beside the logs."""
    info = host_provenance(cfg)
    if read_provenance(log_dir) != info:
        write_json(log_dir / PROVENANCE_FILE, info)
    return info


def _make_callback(state: dict, progress: ProgressFn | None) -> Any:
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback
    from tvm.ir.utils import derived_object

    @derived_object
    class _Progress(PyMeasureCallback):
        def apply(self, task_scheduler, task_id, measure_candidates, builder_results,
                  runner_results) -> None:
            state["trials"] += len(measure_candidates)
            name = state["names"][task_id]
            per_task = state["task_trials"]
            per_task[task_id] = per_task.get(task_id, 0) + len(measure_candidates)
            for b, r in zip(builder_results, runner_results):
                if b.error_msg is None and r.error_msg is None and r.run_secs:
                    secs = sum(float(s) for s in r.run_secs) / len(r.run_secs)
                    state["best"][name] = min(state["best"].get(name, secs), secs)
            if progress is not None:
                # the scheduler marks a task terminated only when it next picks it
                done = state["skipped"] + sum(
                    1 for i, t in enumerate(task_scheduler.tasks_)
                    if bool(t.is_terminated) or per_task.get(i, 0) >= state["per_task_budget"])
                progress(TuneProgress(done, state["total"], state["trials"], state["budget"],
                                      _estimate(state), name))

    return _Progress()


def _strategy(kind: str, budget: int) -> Any:
    from tvm.s_tir.meta_schedule.search_strategy import EvolutionarySearch, ReplayTrace

    # the default population (512) costs seconds of cost-model scoring per task and round on a
    # 2-core machine; a few dozen trials per task do not need it
    factories = {
        "evolutionary": lambda: EvolutionarySearch(population_size=min(512, max(64, 8 * budget)),
                                                   init_min_unmeasured=min(50, max(8, budget))),
        "replay-trace": lambda: ReplayTrace(),
    }
    if kind not in factories:
        raise TuningError(f"unknown search strategy {kind!r} (choose: {', '.join(factories)})")
    return factories[kind]()


def _contexts(tasks: list, strategy: Any, seed: int | None, num_threads: Any
              ) -> tuple[list, list[float]]:
    """TuneContexts with one quiet logger: MetaSchedule's own ``get_loggers_from_work_dir`` adds a
    stdout handler (library code never prints) and breaks when called twice in one process."""
    from tvm.s_tir.meta_schedule import TuneContext
    from tvm.s_tir.meta_schedule.utils import fork_seed

    quiet = logging.getLogger("tvm_ofa.compiler.tune.tasks")
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
    contexts, weights = [], []
    for task, rand_state in zip(tasks, fork_seed(seed, n=len(tasks))):
        contexts.append(TuneContext(mod=task.dispatched[0], target=task.target,
                                    space_generator="post-order-apply", search_strategy=strategy,
                                    task_name=task.task_name, logger=quiet, rand_state=rand_state,
                                    num_threads=num_threads).clone())
        weights.append(float(task.weight))
    return contexts, weights


def _estimate(state: dict) -> float | None:
    best, weights = state["best"], state["weights"]
    if not best:
        return None
    return 1e3 * sum(best[n] * weights[n] for n in best)


def tune(cfg: TargetConfig, lowered: LoweredModel, *, trials_per_task: int | None = None,
         trials_per_round: int | None = None, log_root: str | Path | None = None,
         progress: Optional[ProgressFn] = None, min_repeat_ms: int = 40, seed: int | None = None,
         builder: Any = None, runner: Any = None, strategy: str = "evolutionary",
         only: Optional[Collection[str]] = None, seed_from: str | Path | None = None,
         seed_top_k: int = 3, reseed: bool = False, transfer: bool = True) -> TuneReport:
    """Tune the workloads of ``lowered`` that the target's database does not cover yet.

    Parameters
    ----------
    cfg : TargetConfig
    lowered : LoweredModel
    trials_per_task, trials_per_round : int, optional
        Defaults from ``cfg.tuning``. ``trials_per_task=0`` runs no search: it only seeds
        (``seed_from``) and gives untuned tasks their neighbours' schedules (``transfer``).
    log_root : path
        Root of the per-target log folders (``cfg.log_dir(log_root)``).
    progress : callable, optional
        Called with a :class:`TuneProgress` after every measured batch.
    min_repeat_ms : int
        Minimum timing window per candidate (smaller is faster and noisier).
    seed : int, optional
    builder, runner : optional
        MetaSchedule builder/runner overrides (defaults follow ``cfg``).
    strategy : str
        ``"evolutionary"`` (XGB-guided, population scaled to the budget) or ``"replay-trace"``
        (random sampling; cheap, for tests).
    only : collection of str, optional
        Tune only the tasks whose workload key (``tvm_ofa.predict.workloads.Workload.key``) is
        in it. Without it, tasks that the machine's calibration source has a schedule for count
        as covered (``tvm-ofa calibrate`` decides which of them are worth tuning here).
    seed_from : path, optional
        Another CPU's log folder of this target (default: this CPU's records for another thread
        count, where ``log_dir`` is such a folder: :func:`tvm_ofa.compiler.store.cpu_folder`):
        before tuning, the ``seed_top_k`` best records
        of every task with no record here are timed here and committed as this machine's records
        (:mod:`tvm_ofa.compiler.seed`), and the search starts from them. Tasks it covers are
        tuned here. Without it, the calibration source (if any) seeds the tasks ``only`` names.
    reseed : bool
        With ``seed_from``: seed every task (those ``only`` names), tuned here or not, and time
        this machine's own ``seed_top_k`` best records beside them in the same run, so that the
        build takes whichever is fastest here now. For records timed before a change of
        lowering (the TIR pipeline) or taken on another CPU whose schedules may beat them.
    transfer : bool
        Give each task that no record covers (here or in the seed source) the schedules of its
        nearest tuned neighbour, refitted and timed here (:func:`tvm_ofa.compiler.seed.transfer_tasks`),
        before tuning it.

    Returns
    -------
    TuneReport
    """
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks

    from tvm_ofa.compiler.runners import make_builder, make_runner, measurable

    from tvm_ofa.compiler.intrin import family, register_light

    register_light(family(cfg.resolved_target()))
    budget = int(cfg.tuning["trials_per_task"] if trials_per_task is None else trials_per_task)
    per_round = int(trials_per_round or cfg.tuning["trials_per_round"])
    target = cfg.tvm_target()
    log_dir = cfg.log_dir(log_root)
    if reseed and seed_from is None:
        raise TuningError("reseed needs seed_from (--seed-from): another CPU's log folder to time "
                          "beside this one's")
    if budget < 0 or (budget == 0 and seed_from is None and not transfer):
        raise TuningError(f"trials per task must be positive (0 only with a folder to seed from or "
                          f"neighbour schedules to transfer), got {budget}")
    seed_src = check_source(seed_from, log_dir) if seed_from is not None else None
    got = lowered.lowering.to_dict()
    for opt, want in cfg.lowering.to_dict().items():
        if got[opt] != want:
            # each option changes workloads: such records would never be found by the other build
            raise TuningError(f"{cfg.path}: {opt}: the target says {str(want).lower()}, but the "
                              f"module was lowered with {opt}={got[opt]}; lower it with "
                              "lower_module(..., lowering=cfg.lowering)")
    # MetaSchedule's JSON files take one writer: a second process appending workloads numbers
    # them as the first does, and its records then point at the other process's workloads
    with writer_lock(log_dir):
        tdb = open_database(log_dir)
        write_provenance(cfg, log_dir)

        tasks = extract_tasks(lowered.mod, target)
        counts = tdb.record_counts()
        keys = [tdb.workload_key(t.dispatched[0]) for t in tasks]
        selected = list(range(len(tasks)))  # the tasks ``only`` names (all without it)
        if only is not None:
            from tvm_ofa.predict.workloads import workload_from_mod

            wanted = set(only)
            selected = [i for i in selected
                        if (w := workload_from_mod(tasks[i].dispatched[0])) is not None and w.key in wanted]
        # a finished task with no record left (its records were set aside as unloadable) is
        # tuned again
        pending = [i for i in selected if counts.get(keys[i], 0) == 0
                   or max(counts.get(keys[i], 0), tdb.finished_budget(keys[i])) < budget]
        if only is not None or seed_src is not None:
            seed_src = seed_src or calibration_source(log_dir)
        else:
            src = calibration_source(log_dir)
            if src is not None:
                borrowed = open_database(src).db
                pending = [i for i in pending if counts.get(keys[i], 0) == 0
                           and borrowed.query_tuning_record(tasks[i].dispatched[0], target,
                                                            tasks[i].task_name) is None]
        if seed_src is None:
            # records of this CPU timed with another thread count: timed again here, not reused
            seed_src = other_threads_folder(log_dir)
        names = [t.task_name for t in tasks]
        state: dict[str, Any] = {
            "trials": 0, "task_trials": {}, "per_task_budget": budget,
            "skipped": len(tasks) - len(pending), "total": len(tasks),
            "weights": {n: float(t.weight) for n, t in zip(names, tasks)}, "best": {},
            "names": [names[i] for i in pending],
            # a task runs whole rounds, but never more than ``budget`` trials in one tune
            "budget": sum(min(budget, max(per_round, budget - counts.get(keys[i], 0))) for i in pending),
        }
        for i, t in enumerate(tasks):
            if i not in pending:
                secs = tdb.best_seconds(t.dispatched[0], target)
                if secs is not None:
                    state["best"][names[i]] = secs
        if progress is not None:
            progress(TuneProgress(state["skipped"], len(tasks), 0, state["budget"], _estimate(state)))
        report = TuneReport(log_dir=str(log_dir), tasks_total=len(tasks), tasks_skipped=state["skipped"],
                            tasks_tuned=len(pending) if budget else 0, new_trials=0, estimated_ms=None,
                            skipped_lines=tdb.skipped_lines, task_names=names)
        if seed_src is None:
            to_seed = []
        else:
            to_seed = selected if reseed else [i for i in pending if counts.get(keys[i], 0) == 0]
        # a task tuned to fewer than half the target's trials (a sweep of the space at 16) has
        # neighbours tuned in depth whose schedules often beat its own: timed once, beside them
        deep = max(1, int(cfg.tuning["trials_per_task"]) // 2)
        light = [i for i in selected if 0 < tdb.finished_budget(keys[i]) < deep
                 and not tdb.neighboured(keys[i])] if transfer else []
        if pending or to_seed or light:
            if runner is None:
                ok, why = measurable(cfg)
                if not ok:
                    raise TuningError(f"{cfg.path}: runner: cannot measure {cfg.name}: {why}")
                runner = make_runner(cfg, min_repeat_ms)
            builder = builder or make_builder(cfg)
        try:
            if to_seed:
                _seed(report, state, [tasks[i] for i in to_seed], tdb, seed_src, target, builder,
                      runner, seed_top_k, progress, own_too=reseed)
            # what neither this machine nor the seed source has a record of starts from the
            # schedules of its nearest tuned neighbour
            untuned = [i for i in pending if tdb.best_seconds(tasks[i].dispatched[0], target) is None]
            if untuned and transfer:
                _transfer(report, state, [tasks[i] for i in untuned], tdb, seed_src, target, builder,
                          runner, progress)
            if light or (untuned and transfer):
                # the nearest neighbours may have had a quick sweep only: those tuned in depth too
                _deepen(report, state, [tasks[i] for i in light + untuned], tdb, deep, target, builder,
                        runner, progress)
                tdb.mark_neighboured([keys[i] for i in light], deep)
            for i in set(to_seed) | set(untuned) | set(light):
                secs = tdb.best_seconds(tasks[i].dispatched[0], target)
                if secs is not None:
                    state["best"][names[i]] = secs
            if pending and budget > 0:
                _run_tuner(cfg, [tasks[i] for i in pending], state, tdb, builder, runner, budget,
                           per_round, strategy, seed, progress)
                tdb.mark_finished([keys[i] for i in pending], budget)
                report.new_trials = state["trials"]
        finally:
            if (pending or to_seed or light) and hasattr(builder, "shutdown"):
                builder.shutdown()  # the persistent pool's workers go with the tune
        report.estimated_ms = _estimate(state)
        return report


def _run_tuner(cfg: TargetConfig, tasks: list, state: dict, tdb: Any, builder: Any, runner: Any,
               budget: int, per_round: int, strategy: str, seed: int | None,
               progress: Optional[ProgressFn]) -> None:
    from tvm.s_tir import meta_schedule as ms

    with tempfile.TemporaryDirectory(prefix="tvm-ofa-ms-") as work_dir, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        contexts, weights = _contexts(
            tasks, strategy=_strategy(strategy, budget), seed=seed,
            num_threads=max(1, cfg.num_threads) if cfg.is_cpu and not cfg.is_cross else "physical")
        try:
            ms.tune.tune_tasks(
                tasks=contexts, task_weights=weights, work_dir=work_dir,
                max_trials_global=state["budget"], max_trials_per_task=budget,
                num_trials_per_iter=per_round, builder=builder, runner=runner,
                database=tdb.db, cost_model="xgb",
                measure_callbacks=ms.measure_callback.MeasureCallback.create("default")
                + [_make_callback(state, progress)],
                # round-robin, not the gradient scheduler: with a runner that has finished its
                # timings, it commits each batch when it picks the next task, whereas the gradient
                # scheduler commits none until every task has had its first batch (a quarter of an
                # hour for a 50-task subnet on 2 cores, all lost if the tune is stopped before)
                task_scheduler="round-robin")
        except (KeyboardInterrupt, TvmOfaError):
            raise
        except Exception as exc:  # a TVM error: one line for the user, the chain for debugging
            lines = str(exc).strip().splitlines()
            raise TuningError(f"{cfg.path}: tuning {cfg.name} failed: "
                              f"{lines[-1] if lines else type(exc).__name__}") from exc


def _seed(report: TuneReport, state: dict, tasks: list, tdb: Any, source: Path, target: Any,
          builder: Any, runner: Any, top_k: int, progress: Optional[ProgressFn],
          own_too: bool = False) -> None:
    def step(done: int, total: int) -> None:
        if progress is not None:
            progress(TuneProgress(state["skipped"], state["total"], done, total, None, "seeding"))

    try:
        rep = seed_tasks(tasks, tdb.db, open_database(source).db, target, builder, runner,
                         top_k=top_k, progress=step, own_too=own_too)
    except TvmOfaError:
        raise
    except Exception as exc:  # a TVM error: one line
        lines = str(exc).strip().splitlines()
        raise TuningError(f"{source}: seeding failed: {lines[-1] if lines else type(exc).__name__}") from exc
    report.seeded_tasks, report.seed_measured, report.seed_source = rep.seeded, rep.measured, str(source)


def _transfer(report: TuneReport, state: dict, tasks: list, tdb: Any, source: Path | None, target: Any,
              builder: Any, runner: Any, progress: Optional[ProgressFn]) -> None:
    def step(done: int, total: int) -> None:
        if progress is not None:
            progress(TuneProgress(state["skipped"], state["total"], done, total, None, "neighbours"))

    others = [open_database(source).db] if source is not None else []
    rep = transfer_tasks(tasks, tdb.db, others, target, builder, runner, progress=step)
    report.transferred_tasks, report.transfer_measured = rep.seeded, rep.measured


def _deepen(report: TuneReport, state: dict, tasks: list, tdb: Any, deep: int, target: Any,
            builder: Any, runner: Any, progress: Optional[ProgressFn]) -> None:
    """Time, for each of ``tasks`` (lightly tuned or not at all), the schedules of its nearest
    neighbours tuned to at least ``deep`` trials, beside its own records: the build takes the
    fastest."""
    from tvm.s_tir.meta_schedule.database import MemoryDatabase, TuningRecord

    def step(done: int, total: int) -> None:
        if progress is not None:
            progress(TuneProgress(state["skipped"], state["total"], done, total, None, "neighbours"))

    deep_db, seen = MemoryDatabase(), set()
    for rec in tdb.db.get_all_tuning_records():
        key = str(rec.workload.as_json()[0])
        if tdb.finished_budget(key) >= deep and rec.run_secs:
            wl = deep_db.commit_workload(rec.workload.mod)
            deep_db.commit_tuning_record(TuningRecord(rec.trace, wl, rec.run_secs, rec.target, rec.args_info))
            seen.add(key)
    before = [tdb.best_seconds(t.dispatched[0], target) for t in tasks]
    if seen:
        transfer_tasks(tasks, tdb.db, [deep_db], target, builder, runner, progress=step, own_as_source=False)
    after = [tdb.best_seconds(t.dispatched[0], target) for t in tasks]
    report.deepened_tasks = len(tasks) if seen else 0
    report.deepened_faster = sum(a is not None and (b is None or a < b) for a, b in zip(after, before))


def coverage(cfg: TargetConfig, lowered: LoweredModel, log_root: str | Path | None = None
             ) -> tuple[int, int]:
    """``(workloads with a schedule, total workloads)`` of ``lowered``: the machine's own records
    or, after ``tvm-ofa calibrate``, those it borrows from its source machine."""
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks

    target = cfg.tvm_target()
    tasks = extract_tasks(lowered.mod, target)
    db = schedule_database(cfg.log_dir(log_root))
    if db is None:
        return 0, len(tasks)
    tuned = sum(1 for t in tasks if db.query_tuning_record(t.dispatched[0], target, t.task_name) is not None)
    return tuned, len(tasks)
