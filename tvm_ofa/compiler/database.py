"""The persistent per-target tuning database: MetaSchedule's JSON database plus a repair step.

MetaSchedule's ``JSONDatabase`` keeps two append-only files, ``database_workload.json`` (one
``[shash, workload]`` per line) and ``database_tuning_record.json`` (``[workload_index, record]``
per line). A killed tuner can leave a torn last line, and ``JSONDatabase`` aborts on any line it
cannot parse, so :func:`repair` drops unparsable lines (remapping record indices if a workload
line goes) before the database is opened, and reports how many it dropped.
"""
from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from tvm_ofa.errors import TvmOfaError

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
FINISHED_FILE = "finished_tasks.json"
# records MetaSchedule wrote but cannot read back, kept aside rather than lost
REJECTED_FILE = "database_tuning_record.rejected.json"


class DatabaseWarning(UserWarning):
    """Lines of a tuning database that were unreadable and skipped."""


class DatabaseBusy(TvmOfaError):
    """Another process is tuning into the same database."""


LOCK_FILE = ".tuning.lock"


@contextlib.contextmanager
def writer_lock(log_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the one-writer lock of ``log_dir``'s database (an advisory ``flock``, released when
    the process dies); raise :class:`DatabaseBusy` at once when another process holds it."""
    import fcntl

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            who = f.read().strip()
            raise DatabaseBusy(f"{log_dir}: another process{f' ({who})' if who else ''} is tuning into "
                               "this database, which takes one writer at a time: wait for it, or "
                               "tune into another --log-root") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return path.read_bytes().decode("utf-8", errors="replace").splitlines()


def _parse(line: str) -> Any | None:
    try:
        return json.loads(line)
    except ValueError:
        return None


def _atomic_write(path: Path, lines: list[str]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


PACKED_SUFFIX = ".xz"


def unpack(log_dir: str | os.PathLike) -> bool:
    """Restore the database files of ``log_dir`` from their shipped ``.xz`` copies where the
    plain file is missing (the repository ships the compressed form: TIR as JSON compresses
    about 150x). Return True when something was unpacked."""
    import lzma

    log_dir = Path(log_dir)
    done = False
    for name in (WORKLOAD_FILE, RECORD_FILE):
        plain, packed = log_dir / name, log_dir / (name + PACKED_SUFFIX)
        if not plain.exists() and packed.is_file():
            tmp = plain.with_suffix(plain.suffix + ".tmp")
            with lzma.open(packed, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.replace(tmp, plain)
            done = True
    return done


def pack(log_dir: str | os.PathLike, keep: int | None = None) -> tuple[int, int]:
    """Write the ``.xz`` copies of ``log_dir``'s database that the repository ships, first keeping
    only the ``keep`` fastest valid records per workload and the workloads that have one (record
    indices remapped). Return ``(records before, after)``."""
    import lzma

    log_dir = Path(log_dir)
    unpack(log_dir)
    repair(log_dir)
    wl_lines = [ln for ln in _read_lines(log_dir / WORKLOAD_FILE) if ln.strip()]
    per_wl: dict[int, list[tuple[float, str]]] = {}
    n_before = 0
    for line in _read_lines(log_dir / RECORD_FILE):
        obj = _parse(line)
        if not (isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], int)):
            continue
        n_before += 1
        try:
            secs = [float(x) for x in obj[1][1]]
            mean = sum(secs) / len(secs)
        except (TypeError, ValueError, IndexError, ZeroDivisionError):
            continue
        if 0 < mean < 1e9:  # failed candidates carry 1e10
            per_wl.setdefault(obj[0], []).append((mean, line))
    if keep is not None:
        used = sorted(i for i in per_wl if i < len(wl_lines))
        remap = {old: new for new, old in enumerate(used)}
        new_wl = [wl_lines[i] for i in used]
        new_rec = []
        for old in used:
            for _, line in sorted(per_wl[old], key=lambda t: t[0])[:keep]:
                obj = _parse(line)
                new_rec.append(json.dumps([remap[old], obj[1]], separators=(",", ":")))
        _atomic_write(log_dir / WORKLOAD_FILE, new_wl)
        _atomic_write(log_dir / RECORD_FILE, new_rec)
        n_after = len(new_rec)
    else:
        n_after = n_before
    for name in (WORKLOAD_FILE, RECORD_FILE):
        packed = log_dir / (name + PACKED_SUFFIX)
        tmp = packed.with_suffix(".tmp")
        with open(log_dir / name, "rb") as src, lzma.open(tmp, "wb", preset=9 | lzma.PRESET_EXTREME) as dst:
            dst.write(src.read())
        os.replace(tmp, packed)
    return n_before, n_after


def repair(log_dir: str | os.PathLike) -> int:
    """Drop unparsable lines from the database files in ``log_dir``; return how many went.

    Emits a :class:`DatabaseWarning` when it drops anything. Files are rewritten atomically and
    only when something changed.
    """
    log_dir = Path(log_dir)
    wl_path, rec_path = log_dir / WORKLOAD_FILE, log_dir / RECORD_FILE
    dropped = 0
    remap: dict[int, int] = {}
    wl_lines = _read_lines(wl_path)
    kept_wl: list[str] = []
    for i, line in enumerate(wl_lines):
        if not line.strip():
            continue
        obj = _parse(line)
        if isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], str):
            remap[i] = len(kept_wl)
            kept_wl.append(line)
        else:
            dropped += 1
    rec_lines = _read_lines(rec_path)
    kept_rec: list[str] = []
    for line in rec_lines:
        if not line.strip():
            continue
        obj = _parse(line)
        if isinstance(obj, list) and len(obj) == 2 and isinstance(obj[0], int) and obj[0] in remap:
            if remap[obj[0]] != obj[0]:
                line = json.dumps([remap[obj[0]], obj[1]], separators=(",", ":"))
            kept_rec.append(line)
        else:
            dropped += 1
    if dropped:
        if wl_path.exists():
            _atomic_write(wl_path, kept_wl)
        if rec_path.exists():
            _atomic_write(rec_path, kept_rec)
        warnings.warn(f"{log_dir}: skipped {dropped} unreadable line(s) of the tuning database "
                      "(an interrupted write); the rest is intact", DatabaseWarning, stacklevel=2)
    return dropped


def set_aside_unloadable(log_dir: Path) -> int:
    """Move the record lines MetaSchedule cannot load back (seen with some traces of reduction
    tasks: the tuner commits them, the JSON loader then refuses the whole file) to
    :data:`REJECTED_FILE`; returns how many moved. Each record is replayed on its workload, so
    this costs seconds per thousand records and only runs when opening the database failed."""
    from tvm.s_tir.meta_schedule.database import TuningRecord, Workload

    wl_lines = [line for line in _read_lines(log_dir / WORKLOAD_FILE) if line.strip()]
    workloads: dict[int, Any] = {}
    kept, rejected = [], []
    for line in _read_lines(log_dir / RECORD_FILE):
        if not line.strip():
            continue
        obj = _parse(line)
        try:
            idx = obj[0]
            if idx not in workloads:
                workloads[idx] = Workload.from_json(json.loads(wl_lines[idx]))
            TuningRecord.from_json(obj[1], workloads[idx])
            kept.append(line)
        except Exception:  # noqa: BLE001 - whatever the loader rejects goes aside
            rejected.append(line)
    if rejected:
        with open(log_dir / REJECTED_FILE, "a") as f:
            f.write("".join(line + "\n" for line in rejected))
        _atomic_write(log_dir / RECORD_FILE, kept)
    return len(rejected)


@dataclass
class TuningDatabase:
    """A repaired, opened JSON database and the bookkeeping tuning needs.

    Attributes
    ----------
    log_dir : Path
    db : tvm.s_tir.meta_schedule.database.JSONDatabase
    skipped_lines : int
        Unreadable lines dropped when it was opened.
    """

    log_dir: Path
    db: Any
    skipped_lines: int = 0
    _finished: dict[str, int] = field(default_factory=dict)

    def workload_key(self, mod: Any) -> str:
        """The structural hash MetaSchedule keys the workload by (commits it if new)."""
        return str(self.db.commit_workload(mod).as_json()[0])

    def record_counts(self) -> Counter:
        """Tuning records per workload key, counted from the files (failed builds included)."""
        keys = [(_parse(line) or [None])[0] for line in _read_lines(self.log_dir / WORKLOAD_FILE)
                if line.strip()]
        counts: Counter = Counter()
        for line in _read_lines(self.log_dir / RECORD_FILE):
            obj = _parse(line)
            if isinstance(obj, list) and obj and isinstance(obj[0], int) and obj[0] < len(keys):
                counts[keys[obj[0]]] += 1
        return counts

    def finished_budget(self, key: str) -> int:
        """Trial budget a completed tune of this workload ran to (0 if none completed)."""
        return self._finished.get(key, 0)

    def mark_finished(self, keys: list[str], budget: int) -> None:
        """Record that the tuner finished these workloads at ``budget`` trials (a task whose
        space is exhausted finishes with fewer records)."""
        for k in keys:
            self._finished[k] = max(self._finished.get(k, 0), budget)
        _atomic_write(self.log_dir / FINISHED_FILE,
                      [json.dumps(self._finished, indent=0, sort_keys=True)])

    def best_seconds(self, mod: Any, target: Any) -> float | None:
        """Mean run time of the best record of ``mod``, None when it has none."""
        wl = self.db.commit_workload(mod)
        top = self.db.get_top_k(wl, 1)
        if not top or top[0].run_secs is None or not len(top[0].run_secs):
            return None
        secs = [float(s) for s in top[0].run_secs]
        return sum(secs) / len(secs)


def open_database(log_dir: str | os.PathLike) -> TuningDatabase:
    """Repair and open the JSON database in ``log_dir`` (created if missing)."""
    from tvm.s_tir.meta_schedule.database import JSONDatabase

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    unpack(log_dir)
    skipped = repair(log_dir)

    def load() -> Any:
        return JSONDatabase(path_workload=str(log_dir / WORKLOAD_FILE),
                            path_tuning_record=str(log_dir / RECORD_FILE), allow_missing=True)

    try:
        db = load()
    except Exception:  # a TVM error, raised from its loader threads without a message
        moved = set_aside_unloadable(log_dir)
        if not moved:
            raise
        warnings.warn(f"{log_dir}: {moved} tuning record(s) that MetaSchedule wrote but cannot read back "
                      f"were moved to {REJECTED_FILE}; the rest is intact", DatabaseWarning, stacklevel=2)
        db = load()
    finished: dict[str, int] = {}
    fin = _parse((log_dir / FINISHED_FILE).read_text()) if (log_dir / FINISHED_FILE).exists() else None
    if isinstance(fin, dict):
        finished = {str(k): int(v) for k, v in fin.items() if isinstance(v, int)}
    return TuningDatabase(log_dir=log_dir, db=db, skipped_lines=skipped, _finished=finished)


CALIBRATION_FILE = "calibration.json"


def calibration_source(log_dir: str | os.PathLike) -> Path | None:
    """The log folder whose schedules ``log_dir`` borrows (written by ``tvm-ofa calibrate``),
    None when it has none or the folder is gone."""
    doc = _parse((Path(log_dir) / CALIBRATION_FILE).read_text()) \
        if (Path(log_dir) / CALIBRATION_FILE).is_file() else None
    src = doc.get("source_dir") if isinstance(doc, dict) else None
    if not src:
        return None
    path = Path(src)
    if not path.is_absolute():
        path = Path(log_dir) / path
    return path if (path / WORKLOAD_FILE).is_file() else None


def schedule_database(log_dir: str | os.PathLike) -> Any | None:
    """The schedules a build for ``log_dir``'s machine applies: its own records first, then those
    of the machine it was calibrated from (a schedule is valid TIR on any CPU of the same ISA;
    it is rebuilt for this one). None when neither exists."""
    from tvm.s_tir.meta_schedule.database import OrderedUnionDatabase

    log_dir = Path(log_dir)
    own = open_database(log_dir).db if log_dir.exists() else None
    src = calibration_source(log_dir) if log_dir.exists() else None
    if src is None:
        return own
    borrowed = open_database(src).db
    return OrderedUnionDatabase(own, borrowed) if own is not None else borrowed
