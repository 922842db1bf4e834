"""Re-timing the best schedule of every tuned workload in one run, at the machine's usual speed.

A tuning record's time is taken when its batch ran: on a shared VM the whole machine runs
1.3-1.6x slower for tens of seconds at a time, with no other process in sight, so records tuned
in different hours are not comparable (docs/BENCHMARKS.md, "Timing"). Re-timing the schedule the
build would use for each workload, in batches bracketed by a fixed canary kernel, and taking a
batch again while the canary says the machine is slow, gives per-workload times that are
comparable with each other. They go to ``retimed.json`` beside the database (keyed by workload
key); the latency predictor's training data prefers them to the tuning-time records. The database
itself is untouched: builds pick the same schedules as before.

The same machinery times another machine's schedules here (``records_dir``): calibrating a new CPU
(``tvm_ofa.predict.calibrate``) re-times the borrowed schedules a build here would apply, most
important first, into ``borrowed_retimed.json`` of the new machine's folder, so its predictor
knows what those schedules cost on this CPU instead of scaling what they cost on the source.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from tvm_ofa.compiler.store import (BORROWED_FILE, RETIMED_FILE, WORKLOAD_FILE, NoTuningLogsError, has_logs,
                                   open_database, read_retimed, retime_stands, write_lines, writer_lock)
from tvm_ofa.errors import TvmOfaError


class RetimeError(TvmOfaError):
    """Records that cannot be re-timed here."""


@dataclass
class RetimeProgress:
    done: int
    total: int
    retried_batches: int
    slowdown: float  # the last batch's canary time over the fastest canary seen


@dataclass
class RetimeReport:
    log_dir: str
    workloads: int
    retimed: int
    already: int
    unaccepted: int  # timed only while the machine was slow (kept, marked)
    seconds: float


def _best_records(db: Any, log_dir: Path) -> dict[str, Any]:
    """Per workload key, the record a build would use (the database's top record)."""
    from tvm.s_tir.meta_schedule.database import Workload as MsWorkload

    from tvm_ofa.predict.workloads import workload_from_mod

    best: dict[str, Any] = {}
    for line in (log_dir / WORKLOAD_FILE).read_text(errors="replace").splitlines():
        try:
            mod = MsWorkload.from_json(json.loads(line)).mod
        except Exception:  # a torn or foreign line: not ours to time
            continue
        wl = workload_from_mod(mod)
        if wl is None or not db.has_workload(mod):
            continue
        top = db.get_top_k(db.commit_workload(mod), 1)
        if top and top[0].run_secs and min(float(x) for x in top[0].run_secs) < 1e9:
            best[wl.key] = top[0]
    return best


def retime_records(cfg: Any, log_dir: str | os.PathLike, *, batch: int = 16, slow: float = 1.10,
                   sweeps: int = 4, progress: Optional[Callable[[RetimeProgress], None]] = None,
                   records_dir: str | os.PathLike | None = None, keys: Sequence[str] | None = None,
                   deadline: float | None = None, clock: Callable[[], float] = time.monotonic
                   ) -> RetimeReport:
    """Re-time the best record of every workload in ``log_dir`` on this machine.

    Parameters
    ----------
    cfg : TargetConfig
        A target this machine runs (its builder and runner are used, as in tuning).
    records_dir : path, optional
        Time the records of this folder instead (another machine's, read only), into
        :data:`BORROWED_FILE` of ``log_dir``.
    keys : sequence of str, optional
        Only these workload keys, in this order (the most important first).
    deadline : float, optional
        ``clock()`` value after which no new batch starts.
    batch : int
        Workloads per batch between two canary timings.
    slow : float
        A batch whose canary ran more than ``slow`` times the fastest canary seen is timed again
        in a later sweep (up to ``sweeps``); what never ran at speed is kept in the file but not
        used (:func:`tvm_ofa.compiler.store.accepted_times`).

    Resumable: ``retimed.json`` is written after every batch, and accepted workloads are skipped.
    """
    from tvm_ofa.compiler.runners import build_records, make_builder, make_runner, measurable, run_built

    t0 = time.monotonic()
    log_dir = Path(log_dir)
    src = Path(records_dir) if records_dir is not None else log_dir
    name = RETIMED_FILE if records_dir is None else BORROWED_FILE
    # before opening or locking: either creates files
    if not has_logs(src):
        raise NoTuningLogsError(f"{src}: no tuning database to re-time; tune first (`tvm-ofa tune "
                                f"--target {cfg.name} ...` or `tvm-ofa latency collect`)")
    with writer_lock(log_dir):
        ok, why = measurable(cfg)
        if not ok:
            raise RetimeError(f"{cfg.path}: cannot re-time here: {why}")
        db = open_database(src).db
        best = _best_records(db, src)
        if not best:
            return RetimeReport(str(log_dir), 0, 0, 0, 0, time.monotonic() - t0)
        record_s = {k: _mean(r.run_secs) for k, r in best.items()}
        # the canary: the heaviest workload (the same one on a rerun, unless the logs changed)
        heavy = max(best, key=record_s.__getitem__)
        order = sorted(best) if keys is None else [k for k in dict.fromkeys(keys) if k in best]
        if not order:
            return RetimeReport(str(log_dir), 0, 0, 0, 0, time.monotonic() - t0)
        best = {k: best[k] for k in {*order, heavy}}
        doc = read_retimed(log_dir, name)
        if doc.get("canary") != heavy:
            doc = {"workloads": {}}
        if records_dir is not None:
            doc["records_dir"] = os.path.relpath(src.resolve(), log_dir.resolve())
        done: dict[str, dict] = doc["workloads"]
        canary_best = float(doc.get("canary_best_s") or float("inf"))
        target = cfg.tvm_target()
        builder, runner = make_builder(cfg), make_runner(cfg)
        dev_type = "cuda" if cfg.target.get("kind") == "cuda" else "cpu"
        tmp = Path(tempfile.mkdtemp(prefix="tvm-ofa-retime-"))
        errors: list[str] = []

        def run(items: list) -> list[float | None]:
            out = []
            for secs, err in run_built(runner, dev_type, items):
                if err:
                    errors.append(err)
                out.append(_mean(secs) if secs else None)
            return out

        # built once; the runner deletes what it ran, so each canary run gets a copy
        (canary_cand, canary_art), = build_records(builder, target, [best[heavy]])
        if canary_art is None:
            raise RetimeError(f"{log_dir}: the canary workload {heavy} does not build")

        def canary() -> float:
            # in a folder of its own: the runner's cleanup removes the artifact's folder
            copy = Path(tempfile.mkdtemp(dir=tmp)) / Path(canary_art).name
            shutil.copy(canary_art, copy)
            s = run([(canary_cand, str(copy))])[0]
            if s is None:
                raise RetimeError(f"{log_dir}: the canary workload {heavy} does not run: {errors[-1:]}")
            return s

        def accepted(k: str) -> bool:
            return retime_stands(done.get(k), slow * canary_best, record_s[k])

        already = sum(1 for k in order if accepted(k))
        retried = 0
        try:
            for sweep in range(max(sweeps, 1)):
                todo = [k for k in order if not accepted(k)]
                if not todo or (deadline is not None and clock() >= deadline):
                    break
                retried += (sweep > 0) * ((len(todo) + batch - 1) // batch)
                for i in range(0, len(todo), batch):
                    if deadline is not None and clock() >= deadline:
                        break
                    part = todo[i:i + batch]
                    items = build_records(builder, target, [best[k] for k in part])
                    before = canary()
                    secs = run(items)
                    after = canary()
                    c = max(before, after)
                    canary_best = min(canary_best, before, after)
                    for k, s in zip(part, secs):
                        if s is None:
                            continue
                        prev = done.get(k)
                        # a slower-phase timing never replaces one taken at speed
                        if prev is None or c < prev["canary_s"] or prev.get("record_s") != record_s[k]:
                            done[k] = {"s": s, "canary_s": c, "record_s": record_s[k]}
                    doc.update(cpu=cfg.resolved_target().get("mcpu"), canary=heavy, canary_best_s=canary_best,
                               slow=slow, date=time.strftime("%Y-%m-%dT%H:%M:%S"), workloads=done)
                    write_lines(log_dir / name, [json.dumps(doc, indent=0, sort_keys=True)])
                    if progress:
                        progress(RetimeProgress(sum(1 for k in order if accepted(k)), len(order), retried,
                                                c / canary_best))
        finally:
            builder.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)
        ok = sum(1 for k in order if accepted(k))
        return RetimeReport(str(log_dir), len(order), ok - already, already, len(order) - ok,
                            time.monotonic() - t0)


def _mean(run_secs: Any) -> float:
    secs = [float(x) for x in run_secs]
    return sum(secs) / len(secs)
