"""Seeding a CPU's tuning database with another CPU's schedules, timed here.

A machine whose CPU has no records starts MetaSchedule's search from random schedules, and a few
dozen trials per task then rarely reach what hours of tuning found on a neighbouring CPU. A
schedule is valid TIR on any CPU of the same ISA, so the best records of another CPU's folder
(same target, same lowering) are rebuilt for this CPU, timed here, and committed as this
machine's own records, with this machine's times. The build then uses them like any record,
tuning that follows starts its evolutionary search from them (the search draws its first
population from the database's best records), and a tune can no longer end with a record slower
than the borrowed schedule.
"""
from __future__ import annotations

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
    from tvm.s_tir.meta_schedule.database import TuningRecord

    from tvm_ofa.compiler.runners import build_records, run_built

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
    return SeedReport(workloads=len(tasks), seeded=len(seeded), measured=measured,
                      failed=failed)
