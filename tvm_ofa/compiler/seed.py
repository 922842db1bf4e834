"""Seeding a CPU's tuning database with another CPU's schedules, timed here.

A machine whose CPU has no records starts MetaSchedule's search from random schedules, and a few
dozen trials per task then rarely reach what hours of tuning found on a neighbouring CPU. The same
holds for a workload no CPU has tuned (another resolution, another width): it starts from the
best schedules of its nearest tuned neighbour, the same operator at the closest shape, with the
loop tilings refitted to its extents (:func:`transfer_tasks`). A
schedule is valid TIR on any CPU of the same ISA, so the best records of another CPU's folder
(same target, same lowering) are rebuilt for this CPU, timed here, and committed as this
machine's own records, with this machine's times. The build then uses them like any record,
tuning that follows starts its evolutionary search from them (the search draws its first
population from the database's best records), and a tune can no longer end with a record slower
than the borrowed schedule.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from tvm_ofa.errors import TvmOfaError


class SeedError(TvmOfaError):
    """The folder to seed from cannot be used."""


@dataclass
class SeedReport:
    workloads: int  # asked to seed (no record of their own here)
    seeded: int  # got at least one record measured here
    measured: int  # schedules built and timed
    failed: int  # schedules that did not build or run here


def check_source(source: str | os.PathLike, log_dir: str | os.PathLike) -> Path:
    """``source`` as a log folder fit to seed ``log_dir`` from, or a one-line :class:`SeedError`.

    ``source`` is a folder, or the name of a CPU with a folder beside ``log_dir`` (``znver4``
    for ``tuning_logs/host-cpu/znver3`` means ``tuning_logs/host-cpu/znver4``).
    """
    from tvm_ofa.compiler.store import has_logs

    src = Path(source)
    sibling = Path(log_dir).parent / str(source)
    if not src.is_dir() and os.sep not in str(source) and sibling.is_dir():
        src = sibling
    if not src.is_dir():
        cpus = sorted(p.name for p in Path(log_dir).parent.glob("*") if p.is_dir()
                      and p.resolve() != Path(log_dir).resolve())
        raise SeedError(f"{source}: seed folder not found (a tuning-log folder, or a CPU beside "
                        f"{Path(log_dir).parent}: {', '.join(cpus) or 'none there'})")
    if src.resolve() == Path(log_dir).resolve():
        raise SeedError(f"{src}: is this machine's own log folder; seed from another CPU's folder")
    if not has_logs(src):
        raise SeedError(f"{src}: no tuning database to seed from (database_workload.json and "
                        "database_tuning_record.json, or their .xz)")
    return src


def seed_tasks(tasks: Sequence[Any], own_db: Any, source_db: Any, target: Any, builder: Any,
               runner: Any, *, top_k: int = 3, batch: int = 16,
               progress: Optional[Callable[[int, int], None]] = None,
               own_too: bool = False) -> SeedReport:
    """Time the best ``top_k`` records of ``source_db`` for each of ``tasks`` here and commit
    them to ``own_db``.

    Parameters
    ----------
    tasks : sequence of ExtractedTask
        The tasks to seed (those without a record of their own, or any with ``own_too``).
    own_db, source_db : tvm.s_tir.meta_schedule.database.Database
        This machine's database (written) and the other CPU's (only read).
    target : tvm.target.Target
        This machine's target: the builds are for it and the records carry it.
    builder, runner
        MetaSchedule builder and runner, as for tuning.
    progress : callable, optional
        Called with ``(schedules timed, schedules to time)`` after each batch.
    own_too : bool
        Also time ``own_db``'s own ``top_k`` records of each task, in the same batches as the
        source's, and commit them again with these times: a record's old time may come from
        another lowering or another hour of a shared machine, and the build takes the fastest.

    Returns
    -------
    SeedReport
    """
    todo = []  # (task, record to time here)
    for task in tasks:
        mod = task.dispatched[0]
        for db in (source_db, own_db) if own_too else (source_db,):
            # has_workload first: committing a workload the source lacks would write to its files
            if not db.has_workload(mod):
                continue
            for rec in db.get_top_k(db.commit_workload(mod), top_k):
                if rec.run_secs and min(float(s) for s in rec.run_secs) < 1e9:
                    todo.append((task, rec))
    seeded, measured, failed = _time_and_commit(todo, own_db, target, builder, runner, batch, progress)
    return SeedReport(workloads=len(tasks), seeded=seeded, measured=measured, failed=failed)


def _time_and_commit(todo: Sequence[tuple[Any, Any]], own_db: Any, target: Any, builder: Any, runner: Any,
                     batch: int, progress: Optional[Callable[[int, int], None]]) -> tuple[int, int, int]:
    """Build and time each ``(task, record)`` here, in batches, and commit the ones that ran as
    records of the task's workload with this machine's times. Returns ``(tasks that got a
    record, schedules timed, schedules that failed)``."""
    from tvm.s_tir.meta_schedule.database import TuningRecord

    from tvm_ofa.compiler.runners import build_records, run_built

    dev_type = "cuda" if target.kind.name == "cuda" else "cpu"
    seeded, measured, failed = set(), 0, 0  # seeded: ids of the tasks
    for i in range(0, len(todo), batch):
        part = todo[i:i + batch]
        items = build_records(builder, target, [rec for _, rec in part])
        for (task, rec), (cand, _), (secs, _) in zip(part, items, run_built(runner, dev_type, items)):
            if not secs:
                failed += 1
                continue
            own_db.commit_tuning_record(TuningRecord(
                rec.trace, own_db.commit_workload(task.dispatched[0]), run_secs=secs,
                target=target, args_info=cand.args_info))
            seeded.add(id(task))
            measured += 1
        if progress is not None:
            progress(min(i + batch, len(todo)), len(todo))
    return len(seeded), measured, failed


# -- schedules of a neighbouring workload ------------------------------------------------------

def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _fit_tiles(decision: Sequence[int], extent: int, max_innermost: int | None = None) -> list[int]:
    """A perfect tiling of ``extent`` as close to ``decision`` (one tiling of another extent) as
    divisibility allows: from the innermost factor outwards, each keeps what it shares with what
    is left, and the outermost takes the rest. Inner factors (vector and register tiles) are what
    a schedule's speed rests on, so they are kept first. ``max_innermost`` holds by construction
    (the innermost factor divides the decision's)."""
    rest, out = int(extent), [0] * len(decision)
    for i in range(len(decision) - 1, 0, -1):
        out[i] = math.gcd(int(decision[i]), rest)
        rest //= out[i]
    out[0] = rest
    return out


def _nearest_tiles(decision: Sequence[int], extent: int, max_innermost: int | None = None) -> list[int]:
    """The perfect tiling of ``extent`` nearest ``decision``: least sum of ``|log(f / d)|`` over
    the factors, weighted by depth (the innermost most). Where ``extent`` shares little with the
    decision's factors (a prime extent such as 41 px), :func:`_fit_tiles` leaves the inner tiles
    at 1, a scalar loop; this keeps them near their size instead (41 where the decision had 32)."""
    levels = len(decision)
    weights = range(1, levels + 1)
    # best[rest]: (cost, factors) of the levels tiled so far, innermost first, leaving ``rest``
    best: dict[int, tuple[float, list[int]]] = {int(extent): (0.0, [])}
    for i in range(levels - 1, -1, -1):
        nxt: dict[int, tuple[float, list[int]]] = {}
        for rest, (cost, tail) in best.items():
            choices = [rest] if i == 0 else _divisors(rest)
            for f in choices:
                if i == levels - 1 and max_innermost and f > max_innermost:
                    continue
                c = cost + weights[i] * abs(math.log(f / max(int(decision[i]), 1)))
                key = rest // f
                if key not in nxt or c < nxt[key][0]:
                    nxt[key] = (c, [f, *tail])
        best = nxt
    return min(best.values(), key=lambda v: v[0])[1]


FITS = (_fit_tiles, _nearest_tiles)


def _block_names(mod: Any) -> list[str]:
    """The names of ``mod``'s top-level blocks, in program order."""
    from tvm import s_tir

    sch = s_tir.Schedule(mod)
    return [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]


def _rename_blocks(trace: Any, names: dict[str, str]) -> Any:
    """``trace`` with the blocks it looks up by name renamed by ``names``, blocks a schedule
    derived from them (``lv70_red_rf`` from ``lv70_red``) included. Relax names a reduction's
    block after the variable it reduces, so two modules name the same operator differently."""
    from tvm.s_tir.schedule import Instruction, Trace

    by_length = sorted(names, key=len, reverse=True)
    insts, decisions = [], {}
    for inst in trace.insts:
        new = inst
        if inst.kind.name == "GetSBlock":
            name = str(inst.attrs[0])
            old = next((o for o in by_length if name == o or name.startswith(o + "_")), None)
            if old is not None and names[old] != old:
                new = Instruction(inst.kind, inst.inputs, [names[old] + name[len(old):], *inst.attrs[1:]],
                                  inst.outputs)
        insts.append(new)
        if inst in trace.decisions:
            decisions[new] = trace.decisions[inst]
    return Trace(insts, decisions)


def adapt_schedule(trace: Any, mod: Any, postprocs: Sequence[Any], source_mod: Any = None,
                   fit: Callable[..., list[int]] = _fit_tiles) -> Any | None:
    """``trace`` (a tuned schedule of a neighbouring workload ``source_mod``: same operator and
    epilogue, other shape) replayed on ``mod``, its loop tilings refitted to ``mod``'s extents by
    ``fit`` (:data:`FITS`), its blocks renamed to ``mod``'s (matched in program order) and every
    other decision kept, then ``postprocs`` applied. None when the schedule does not carry over
    (another block structure, a postprocessor refusing it)."""
    from tvm import s_tir

    if source_mod is not None:
        ours, theirs = _block_names(mod), _block_names(source_mod)
        if len(ours) == len(theirs) and ours != theirs:
            trace = _rename_blocks(trace, dict(zip(theirs, ours)))
    sch = s_tir.Schedule(mod)

    def decide(inst: Any, inputs: Any, attrs: Any, decision: Any) -> Any:
        if inst.kind.name == "SamplePerfectTile" and decision is not None:
            extent = int(sch.get(inputs[0]).extent)
            factors = [int(v) for v in decision]
            if math.prod(factors) != extent:
                return fit(factors, extent, int(attrs[1]) if len(attrs) > 1 else None)
        return decision

    try:
        trace.apply_to_schedule(sch, remove_postproc=True, decision_provider=decide)
        # the mark where postprocessing begins, as MetaSchedule's own candidates carry it: a search
        # that starts from this record replays its trace without the postprocessors' steps and
        # applies them again; without the mark it would apply them twice and fail the whole tune
        sch.enter_postproc()
        if not all(p.apply(sch) for p in postprocs):
            return None
    except Exception:  # a TVM error: the neighbour's structure does not fit this workload
        return None
    return sch


def _signature(mod: Any) -> tuple[tuple, tuple[int, ...], str]:
    """``(kind, sizes, key)`` of a workload: a schedule carries over between workloads of the same
    kind, best to the one whose sizes are nearest. A network operator is described by
    :func:`~tvm_ofa.predict.workloads.workload_from_mod` (operator, epilogue, kernel, stride and
    batch; channels and input size); anything else (a layout change, a reduction it does not
    know) by its blocks' names without the module's numbering and its buffers' ranks, and the
    buffers' extents."""
    from tvm_ofa.predict.workloads import script_parts, workload_from_script

    script = mod["main"].script()
    w = workload_from_script(script)
    if w is not None:
        return (w.kind, w.epilogue, w.k, w.s, w.n), (w.cin, w.cout, w.h), w.key
    shapes, blocks = script_parts(script) or ([], [script])
    kind = (tuple(blocks), tuple(len(s) for s in shapes))
    sizes = tuple(x for s in shapes for x in s)
    return kind, sizes, repr((kind, sizes))


def _distance(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """How far sizes ``b`` are from ``a``: the sum of their log ratios."""
    return sum(abs(math.log(max(x, 1) / max(y, 1))) for x, y in zip(a, b))


def neighbour_records(tasks: Sequence[Any], dbs: Sequence[Any], target: Any, *, neighbours: int = 3,
                      top_k: int = 2, per_task: int = 6, mods: Sequence[Any] | None = None
                      ) -> list[tuple[Any, Any]]:
    """For each of ``tasks``, untimed records made from the best schedules of its nearest tuned
    neighbours in ``dbs`` (:func:`adapt_schedule`, each fit of :data:`FITS`): about ``per_task``
    of them, from the ``neighbours`` nearest workloads' ``top_k`` best records each. Tasks that are not network
    operators are matched on their blocks and buffer ranks (:func:`_signature`). ``mods``: the
    module each task's records are made for (default its own); a database keeps the first of
    structurally equal modules, whose block names a record's trace must use."""
    import tvm_ffi
    from tvm.s_tir.meta_schedule import TuneContext
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo
    from tvm.s_tir.meta_schedule.database import TuningRecord, Workload

    index: dict[str, tuple[tuple, tuple, Any, Any]] = {}  # key -> (kind, sizes, db, mod)
    seen: set[int] = set()  # workloads' structural hashes (printing each record's is slow)
    for db in dbs:
        for rec in db.get_all_tuning_records():
            if (not rec.run_secs or min(float(s) for s in rec.run_secs) >= 1e9
                    or (h := tvm_ffi.structural_hash(rec.workload.mod)) in seen):
                continue
            seen.add(h)
            kind, sizes, key = _signature(rec.workload.mod)
            if key not in index:
                index[key] = (kind, sizes, db, rec.workload.mod)
    out = []
    for task, mod in zip(tasks, mods if mods is not None else [t.dispatched[0] for t in tasks]):
        kind, sizes, key = _signature(mod)
        near = sorted((_distance(sizes, theirs), k) for k, (their_kind, theirs, _, _) in index.items()
                      if k != key and their_kind == kind)
        postprocs = None
        made = 0
        for _, nb_key in near[:neighbours]:
            _, _, db, nb_mod = index[nb_key]
            for rec in db.get_top_k(db.commit_workload(nb_mod), top_k):
                if postprocs is None:
                    ctx = TuneContext(mod=mod, target=target, space_generator="post-order-apply",
                                      task_name=task.task_name).clone()
                    postprocs = list(ctx.space_generator.postprocs)
                fitted = []  # each fit's decisions: a fit that changes nothing is not timed twice
                for fit in FITS:
                    sch = adapt_schedule(rec.trace, mod, postprocs, nb_mod, fit)
                    if sch is None or (decisions := [str(d) for d in sch.trace.decisions.values()]) in fitted:
                        continue
                    fitted.append(decisions)
                    out.append((task, TuningRecord(sch.trace, Workload(mod), target=target,
                                                   args_info=ArgInfo.from_entry_func(sch.mod, True))))
                    made += 1
                if made >= per_task:
                    break
            if made >= per_task:
                break
    return out


def transfer_tasks(tasks: Sequence[Any], own_db: Any, other_dbs: Sequence[Any], target: Any, builder: Any,
                   runner: Any, *, batch: int = 16, progress: Optional[Callable[[int, int], None]] = None,
                   own_as_source: bool = True, **kwargs: Any) -> SeedReport:
    """Give each of ``tasks`` (workloads with no record anywhere) schedules made from its nearest
    tuned neighbours' (:func:`neighbour_records`) in ``own_db`` and ``other_dbs``, timed here and
    committed to ``own_db``: a workload never tuned starts from a good schedule instead of TVM's
    default loop nest, and a tune that follows starts its search from them. Without
    ``own_as_source``, neighbours come from ``other_dbs`` only."""
    # records are made for the module own_db keeps: Relax numbers a reduction's blocks per
    # model, and a structurally equal module committed first keeps its own names
    mods = [own_db.commit_workload(t.dispatched[0]).mod for t in tasks]
    todo = neighbour_records(tasks, [own_db, *other_dbs] if own_as_source else list(other_dbs), target,
                             mods=mods, **kwargs)
    seeded, measured, failed = _time_and_commit(todo, own_db, target, builder, runner, batch, progress)
    return SeedReport(workloads=len(tasks), seeded=seeded, measured=measured, failed=failed)
