"""Training data of the latency predictor, read from a target's tuning logs through the store
(:mod:`tvm_ofa.compiler.store`): per workload its best record, and end-to-end latencies of
compiled, fully tuned subnets.

Lines that do not parse, records of failed builds/runs and workloads that are not operators of
this network (foreign) are skipped and counted, never fatal.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from tvm_ofa.arch import ArchConfig
from tvm_ofa.compiler.store import (FINISHED_FILE, MEASUREMENTS_FILE, accepted_times, json_lines, read_trials,
                                   summarize_records)
from tvm_ofa.errors import ArchError
from tvm_ofa.predict.workloads import NetConfig, Workload, workload_from_mod


@dataclass
class WorkloadDataset:
    """Best measured latency per OFA workload of one tuning database.

    Attributes
    ----------
    workloads : list of Workload
    latency_s : ndarray
        Mean run time of each workload's best record, seconds; where the records were re-timed
        in one run (``retimed.json``, :mod:`tvm_ofa.compiler.retime`), that time instead.
    n_records : ndarray
        Valid records per workload.
    skipped_lines, foreign_workloads, failed_records : int
        What was not used, and why.
    retimed : int
        Workloads whose time comes from the re-timing run.
    """

    workloads: list[Workload]
    latency_s: np.ndarray
    n_records: np.ndarray
    skipped_lines: int = 0
    foreign_workloads: int = 0
    failed_records: int = 0
    source: str = ""
    retimed: int = 0

    def __len__(self) -> int:
        return len(self.workloads)

    @property
    def total_records(self) -> int:
        return int(self.n_records.sum())

    def by_key(self) -> dict[str, float]:
        return {w.key: float(s) for w, s in zip(self.workloads, self.latency_s)}

    def subset(self, mask: np.ndarray) -> "WorkloadDataset":
        idx = np.flatnonzero(mask)
        return WorkloadDataset([self.workloads[i] for i in idx], self.latency_s[idx], self.n_records[idx],
                               self.skipped_lines, self.foreign_workloads, self.failed_records, self.source,
                               self.retimed)

    @classmethod
    def from_latencies(cls, workloads: Sequence[Workload], latency_s: Iterable[float]) -> "WorkloadDataset":
        """A dataset from known per-workload latencies (synthetic data, tests)."""
        lat = np.asarray(list(latency_s), dtype=np.float64)
        return cls(list(workloads), lat, np.ones(len(lat), dtype=np.int64), source="<memory>")


def _parse_workload(entry: Any) -> Workload | None:
    from tvm.s_tir.meta_schedule.database import Workload as MsWorkload

    try:
        return workload_from_mod(MsWorkload.from_json(entry).mod)
    except Exception:  # a workload TVM cannot load is foreign to us, not fatal
        return None


def _parse_entries(entries: Sequence[Any]) -> list[Workload | None]:
    """The OFA workload of each database entry (None for an unreadable or foreign one)."""
    return [None if e is None else _parse_workload(e) for e in entries]


def build_dataset(log_dir: str | Path) -> WorkloadDataset:
    """Join a tuning database to workload descriptors: per workload its best latency.

    Parameters
    ----------
    log_dir : path
        ``tuning_logs/<target>/<cpu>/`` (``TargetConfig.log_dir()``).

    Returns
    -------
    WorkloadDataset

    Raises
    ------
    NoTuningLogsError
        When ``log_dir`` has no database files.
    """
    log_dir = Path(log_dir)
    summary = summarize_records(log_dir)
    parsed = _parse_entries(summary.entries)
    foreign = sum(1 for w in parsed if w is None)
    best: dict[str, float] = {}
    counts: dict[str, int] = {}
    by_key: dict[str, Workload] = {}
    for i, secs in summary.best_s.items():
        wl = parsed[i]
        if wl is None:
            continue
        key = wl.key
        by_key[key] = wl
        best[key] = min(best.get(key, secs), secs)
        counts[key] = counts.get(key, 0) + summary.counts[i]
    failed = sum(n for i, n in summary.failed.items() if parsed[i] is not None)
    keys = sorted(best)
    # times re-taken in one run at the machine's usual speed are comparable with each other;
    # the tuning-time records are not (each batch ran at whatever speed the VM had then)
    again = accepted_times(log_dir, best)
    return WorkloadDataset([by_key[k] for k in keys], np.array([again.get(k, best[k]) for k in keys], dtype=np.float64),
                           np.array([counts[k] for k in keys], dtype=np.int64), skipped_lines=summary.skipped_lines,
                           foreign_workloads=foreign, failed_records=failed, source=str(log_dir),
                           retimed=len(again))


def tuned_trials(log_dir: str | Path) -> dict[str, int]:
    """Per OFA workload key, the trials its tuning has run to: its valid records, or the budget a
    completed tune finished at where that is more (a task whose schedule space ran out first).

    Raises
    ------
    NoTuningLogsError
        When ``log_dir`` has no database files.
    """
    log_dir = Path(log_dir)
    summary = summarize_records(log_dir)
    finished = read_trials(log_dir / FINISHED_FILE)
    out: dict[str, int] = {}
    for i, (entry, wl) in enumerate(zip(summary.entries, _parse_entries(summary.entries))):
        if wl is None:
            continue
        n = max(summary.counts.get(i, 0), finished.get(str(entry[0]), 0))
        out[wl.key] = max(out.get(wl.key, 0), n)
    return out


@dataclass
class Measurement:
    """End-to-end latency of one compiled subnet."""

    arch: ArchConfig
    median_ms: float
    net: NetConfig = field(default_factory=NetConfig)
    p90_ms: float | None = None
    repeats: int | None = None
    cpu: str | None = None
    threads: int | None = None
    # medians of separate timing passes of the same library, when it was timed more than once
    passes_ms: tuple[float, ...] = ()

    @property
    def latency_ms(self) -> float:
        """What predictors are fitted to and scored against: the fastest pass's median (the
        median when timed once). On a shared VM the whole machine runs 1.3-1.6x slower for tens
        of seconds at a time, with no other process in sight (docs/BENCHMARKS.md, "Timing"); a
        dedicated device does not, so the fastest of passes spread over a minute is its speed."""
        return min(self.passes_ms) if self.passes_ms else self.median_ms

    @property
    def confirmed(self) -> bool:
        """Whether a second timing pass came within 5 % of the fastest
        (:func:`tvm_ofa.compiler.measure.confirmed`)."""
        from tvm_ofa.compiler.measure import confirmed

        return confirmed(self.passes_ms)

    def to_dict(self) -> dict[str, Any]:
        d = {"id": self.arch.id, "arch": self.arch.to_dict(), "median_ms": self.median_ms,
             "p90_ms": self.p90_ms, "repeats": self.repeats, "cpu": self.cpu,
             "threads": self.threads, "net": self.net.to_dict()}
        if self.passes_ms:
            d["pass_medians_ms"] = list(self.passes_ms)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Measurement":
        ms = float(d["median_ms"])
        if not (ms > 0 and math.isfinite(ms)):
            raise ValueError(f"median_ms = {ms}")
        passes = d.get("pass_medians_ms") or ()
        if not (isinstance(passes, (list, tuple)) and all(isinstance(v, (int, float)) and v > 0 for v in passes)):
            raise ValueError(f"pass_medians_ms = {passes!r}")
        return cls(ArchConfig.from_dict(d["arch"]), ms, NetConfig.from_dict(d.get("net") or {}),
                   d.get("p90_ms"), d.get("repeats"), d.get("cpu"), d.get("threads"),
                   tuple(float(v) for v in passes))


def load_measurements(log_dir: str | Path, artifacts: Sequence[str | Path] = (), cpu: str | None = None
                      ) -> tuple[list[Measurement], int]:
    """End-to-end measurements: ``measurements.jsonl`` in ``log_dir`` plus fully tuned artifact
    folders' ``metadata.json`` (``arch``, ``latency.median_ms``).

    Parameters
    ----------
    cpu : str, optional
        Drop (and count) measurements taken on another CPU.

    Returns
    -------
    (list of Measurement, int)
        The measurements (latest per arch id and network config) and the number of unusable ones.
    """
    bad = 0
    latest: dict[tuple, Measurement] = {}

    def add(m: Measurement) -> None:
        nonlocal bad
        if cpu is not None and m.cpu is not None and m.cpu != cpu:
            bad += 1
        else:
            latest[(m.arch.id, m.net)] = m

    for d in json_lines(Path(log_dir) / MEASUREMENTS_FILE):
        try:
            add(Measurement.from_dict(d))
        except (TypeError, KeyError, ValueError, ArchError):
            bad += 1
    for folder in artifacts:
        try:
            meta = json.loads((Path(folder) / "metadata.json").read_text())
            if (meta.get("tuning") or {}).get("coverage") != 1:
                raise ValueError("not fully tuned: its latency is not what the predictor models")
            lat = meta["latency"]
            # artifacts do not record the width; batch and classes come from the shapes
            net = {"batch": meta["input_shape"][0], "n_classes": meta["output_shape"][-1], **(meta.get("net") or {})}
            m = Measurement.from_dict({"arch": meta["arch"], "median_ms": lat["median_ms"],
                                       "p90_ms": lat.get("p90_ms"), "net": net,
                                       "cpu": (meta.get("cpu") or {}).get("name"),
                                       "threads": lat.get("threads")})
        except (OSError, TypeError, KeyError, IndexError, ValueError, ArchError):
            bad += 1
            continue
        add(m)
    return list(latest.values()), bad


def record_passes(d: dict[str, Any]) -> list[float]:
    """A measurement line's timing passes (a line from before passes were kept: its median)."""
    return list(d.get("pass_medians_ms") or [d["median_ms"]])


def record_loads(d: dict[str, Any]) -> list[float]:
    """The fastest pass of each build and load of a measurement line's library
    (``round_fastest_ms``). A line from before loads were kept: its first passes are one load, and
    the passes of its latest ``--confirm`` (``confirm_passes``) another."""
    if d.get("round_fastest_ms"):
        return list(d["round_fastest_ms"])
    passes = record_passes(d)
    extra = int(d.get("confirm_passes") or 0)
    if 0 < extra < len(passes):
        return [min(passes[:-extra]), min(passes[-extra:])]
    return [min(passes)]


def key_fold(key: str, folds: int) -> int:
    """A stable fold, ``0 .. folds - 1``, for a workload key (the same in every run and process)."""
    import hashlib

    return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) % folds


def is_held_out(arch: ArchConfig, fraction: float = 0.25) -> bool:
    """Deterministic split of subnets for evaluation, by arch id: the same subnet is always on
    the same side, so ``fit`` never sees what ``eval`` scores."""
    import hashlib

    h = int(hashlib.sha1(arch.id.encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction
