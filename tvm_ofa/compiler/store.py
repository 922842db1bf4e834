"""The tuning-log store: every file of one folder ``tuning_logs/<target>/<cpu>/``.

This module is the one owner of that folder's file names and formats; the compiler, the latency
predictor and calibration read and write it only through the functions here.

- MetaSchedule's JSON database: ``database_workload.json`` (one ``[shash, workload]`` per line)
  and ``database_tuning_record.json`` (``[workload_index, record]`` per line, ``record[1]`` the
  measured ``run_secs``), shipped as ``.xz`` copies (:func:`pack`, :func:`unpack`). A killed
  tuner can leave a torn last line, and ``JSONDatabase`` aborts on any line it cannot parse, so
  :func:`repair` drops unparsable lines (remapping record indices if a workload line goes)
  before the database is opened, and reports how many it dropped.
- Bookkeeping beside it: ``finished_tasks.json`` (trial budgets completed),
  ``neighboured_tasks.json`` (lightly tuned workloads given their deeper-tuned neighbours'
  schedules), the writer lock,
  records MetaSchedule cannot load back (``*.rejected.json``).
- Re-timed overlays (:func:`read_retimed`, :func:`accepted_times`): ``retimed.json`` (this
  machine's best schedules timed again in one run) and ``borrowed_retimed.json`` (another
  machine's schedules timed on this one).
- ``provenance.json`` (CPU name and features, threads, TVM version), ``measurements.jsonl``
  (end-to-end latencies of compiled subnets), ``calibration.json`` and
  ``calibration_measurements.jsonl`` (a calibrated machine's state and its measured subnets),
  and the latency predictors (``latency_predictor.<network>.json`` and its model file).
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from tvm_ofa.defaults import shipped
from tvm_ofa.errors import TvmOfaError

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
FINISHED_FILE = "finished_tasks.json"
# lightly tuned workloads whose deeper-tuned neighbours' schedules were timed here (once each)
NEIGHBOURED_FILE = "neighboured_tasks.json"
# records MetaSchedule wrote but cannot read back, kept aside rather than lost
REJECTED_FILE = "database_tuning_record.rejected.json"
LOCK_FILE = ".tuning.lock"
PACKED_SUFFIX = ".xz"
PROVENANCE_FILE = "provenance.json"
MEASUREMENTS_FILE = "measurements.jsonl"
RETIMED_FILE = "retimed.json"
BORROWED_FILE = "borrowed_retimed.json"  # another machine's schedules, timed on this one
CALIBRATION_FILE = "calibration.json"
CALIBRATION_MEASUREMENTS_FILE = "calibration_measurements.jsonl"
PREDICTOR_FILE = "latency_predictor.json"  # the prefix of every predictor file (and an older, untagged name)
MODEL_SUFFIX = ".xgb.ubj"  # a predictor's XGBoost model, beside its JSON
# MetaSchedule stores failed candidates with a huge run time
FAILED_SECS = 1e9
# where the logs live when no --log-root is given (see log_root)
LOG_ROOT_ENV = "TVM_OFA_LOG_ROOT"
HOME_ENV = "TVM_OFA_HOME"
# the logs this checkout ships: read, copied into the user's folder, never written by a default run
SHIPPED_LOG_ROOT = shipped("tuning_logs")
_SHIPPED_SUFFIXES = (".xz", ".json", ".jsonl", ".ubj", ".md")


class DatabaseWarning(UserWarning):
    """Lines of a tuning database that were unreadable and skipped."""


class DatabaseBusy(TvmOfaError):
    """Another process is writing into the same log folder."""


class NoTuningLogsError(TvmOfaError):
    """A target folder without a tuning database to learn from."""


# folders whose lock this process holds: a job holding its folder's lock (collect, calibrate,
# retime) calls tune, which asks for the same lock; flock would refuse a second descriptor
_HELD: set[Path] = set()


@contextlib.contextmanager
def writer_lock(log_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the one-writer lock of ``log_dir`` (its tuning database, measurements and
    predictors): an advisory ``flock``, released when the process dies, so a job killed with
    ``kill -9`` leaves no stale lock. Raise :class:`DatabaseBusy` at once when another process holds
    it; within one process the lock nests."""
    import fcntl

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    key = log_dir.resolve()
    if key in _HELD:
        yield
        return
    with open(log_dir / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            who = f.read().strip()
            raise DatabaseBusy(f"{log_dir}: another process{f' ({who})' if who else ''} is writing into "
                               "this folder, which takes one writer at a time (tune, collect, calibrate, "
                               "retime): wait for it, or use another --log-root") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)
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


def user_home() -> Path:
    """The user's tvm-ofa data folder: ``$TVM_OFA_HOME``, else ``$XDG_DATA_HOME/tvm-ofa``, else
    ``~/.local/share/tvm-ofa``."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV])
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "tvm-ofa"


def default_log_root() -> Path:
    """Where tuning logs go when no root is named: ``$TVM_OFA_LOG_ROOT`` (the maintainers' scripts
    set it to the checkout's ``tuning_logs`` to update what ships), else ``tuning_logs`` in the
    user's data folder, which :func:`target_folder` fills from the shipped logs on first use."""
    env = os.environ.get(LOG_ROOT_ENV)
    return Path(env) if env else user_home() / "tuning_logs"


def _ships(f: Path) -> bool:
    """Whether ``f`` is a file of a log folder that ships (a plain database only where its
    compressed copy does not exist: otherwise it is a working copy, unpacked on first use)."""
    if not f.is_file() or not f.name.endswith(_SHIPPED_SUFFIXES) or f.name == REJECTED_FILE:
        return False
    return f.name not in (WORKLOAD_FILE, RECORD_FILE) or not f.with_name(f.name + PACKED_SUFFIX).exists()


def target_folder(root: Path, target: str) -> Path:
    """``<root>/<target>``, with every folder of the shipped logs of ``target`` it lacks copied in
    first (the shipped files only: compressed databases, provenance, measurements, predictors),
    so that tuning, calibration and fitting write to the copy and what shipped stays as it was.
    Nothing is copied when ``root`` is the shipped root itself."""
    folder = root / target
    shipped = SHIPPED_LOG_ROOT / target
    if not shipped.is_dir() or shipped.resolve() == folder.resolve():
        return folder
    for src in [shipped, *sorted(p for p in shipped.iterdir() if p.is_dir())]:
        files = [f for f in src.iterdir() if _ships(f)]
        dst = folder / src.relative_to(shipped)
        if not files or dst.exists() and src != shipped:
            continue
        if src == shipped and any((dst / f.name).exists() for f in files):
            continue
        tmp = dst.with_name(dst.name + f".copying-{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy2(f, tmp / f.name)
        if src == shipped:  # the target's own files, beside its CPU folders
            for f in files:
                os.replace(tmp / f.name, dst / f.name)
            tmp.rmdir()
        else:
            try:
                os.rename(tmp, dst)
            except OSError:  # another process copied it first
                shutil.rmtree(tmp, ignore_errors=True)
    return folder


def cpu_folder(base: Path, cpu: str, threads: int) -> Path:
    """The folder of ``cpu``'s records under a target's folder ``base``: ``<cpu>``, unless its
    records were timed with another thread count (its provenance says so), then
    ``<cpu>-<threads>threads``. A schedule's parallel split and tiles were chosen for the threads
    it was timed with: records for 2 threads are not reused for 64 unless timed again
    (:func:`other_threads_folder` seeds from them)."""
    folder = base / cpu
    recorded = read_provenance(folder).get("threads")
    if isinstance(recorded, int) and recorded != threads:
        return base / f"{cpu}-{threads}threads"
    return folder


def other_threads_folder(log_dir: str | os.PathLike) -> Path | None:
    """For a ``<cpu>-<n>threads`` folder (:func:`cpu_folder`), the ``<cpu>`` folder beside it
    when it has records; None otherwise."""
    log_dir = Path(log_dir)
    cpu, sep, rest = log_dir.name.rpartition("-")
    if not sep or not rest.endswith("threads") or not rest.removesuffix("threads").isdigit():
        return None
    other = log_dir.parent / cpu
    return other if has_logs(other) else None


def json_lines(path: str | os.PathLike) -> Iterator[Any]:
    """Parsed lines of a JSON-lines file (none when it is absent); unparsable lines come back as
    ``None``, blank ones are skipped."""
    for line in _read_lines(Path(path)):
        if line.strip():
            yield _parse(line)


def record_seconds(record: Any) -> float | None:
    """Mean run time of one tuning record (``[trace, run_secs, ...]``), None when it has none or
    failed."""
    if not isinstance(record, list) or len(record) < 2 or not isinstance(record[1], list) or not record[1]:
        return None
    try:
        secs = [float(s) for s in record[1]]
    except (TypeError, ValueError):
        return None
    mean = sum(secs) / len(secs)
    return mean if 0 < mean < FAILED_SECS and math.isfinite(mean) else None


def read_json(path: str | os.PathLike) -> dict:
    """A JSON object file, ``{}`` when absent, unreadable or not an object."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def write_json(path: str | os.PathLike, doc: dict) -> None:
    """Write a JSON object file atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)


def append_json_line(path: str | os.PathLike, rec: dict) -> None:
    """Append one line to a JSON-lines file (a torn last line is skipped when read)."""
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")
        f.flush()


def write_lines(path: Path, lines: list[str]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
        mean = record_seconds(obj[1])
        if mean is not None:
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
        write_lines(log_dir / WORKLOAD_FILE, new_wl)
        write_lines(log_dir / RECORD_FILE, new_rec)
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
            write_lines(wl_path, kept_wl)
        if rec_path.exists():
            write_lines(rec_path, kept_rec)
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
        write_lines(log_dir / RECORD_FILE, kept)
    return len(rejected)


# steps only MetaSchedule's postprocessors take (RewriteParallelVectorizeUnroll turns the rules'
# annotations into these, RewriteReductionBlock decomposes reductions, GPU postprocs bind threads)
_POSTPROC_STEPS = frozenset({"Unannotate", "Parallel", "Vectorize", "Unroll", "DecomposeReduction", "Bind"})


def _marked(record: Any) -> bool:
    """Whether a record line's trace can seed a search: it marks where postprocessing begins
    (``EnterPostproc``), as every candidate MetaSchedule measures does, or it has no
    postprocessing steps to mark (a hand-written schedule)."""
    try:
        kinds = {inst[0] for inst in record[1][0][0]}
    except (TypeError, IndexError, KeyError):
        return True  # not a trace this check can read: the loader decides
    return "EnterPostproc" in kinds or not kinds & _POSTPROC_STEPS


def set_aside_unmarked(log_dir: Path) -> int:
    """Move the records whose trace holds postprocessing steps without the mark where
    postprocessing begins to :data:`REJECTED_FILE`; returns how many moved.

    Neighbour schedules of earlier versions were committed without it. A search seeded with one
    replays it with the postprocessors' steps included and applies the postprocessors again, and
    the whole tune fails (``old_outputs.size() == new_outputs.size()``); such a record is a
    schedule carried over from a neighbouring workload, which a later tune can carry over again."""
    kept, unmarked = [], []
    for line in _read_lines(log_dir / RECORD_FILE):
        if line.strip():
            (kept if _marked(_parse(line)) else unmarked).append(line)
    if unmarked:
        with open(log_dir / REJECTED_FILE, "a") as f:
            f.write("".join(line + "\n" for line in unmarked))
        write_lines(log_dir / RECORD_FILE, kept)
    return len(unmarked)


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
    _neighboured: dict[str, int] = field(default_factory=dict)

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

    def neighboured(self, key: str) -> bool:
        """Whether this workload's deeper-tuned neighbours' schedules were timed here already."""
        return key in self._neighboured

    def mark_neighboured(self, keys: list[str], trials: int) -> None:
        """Record that these workloads' neighbours tuned to at least ``trials`` were timed here."""
        self._neighboured.update({k: trials for k in keys})
        write_json(self.log_dir / NEIGHBOURED_FILE, self._neighboured)

    def mark_finished(self, keys: list[str], budget: int) -> None:
        """Record that the tuner finished these workloads at ``budget`` trials (a task whose
        space is exhausted finishes with fewer records)."""
        for k in keys:
            self._finished[k] = max(self._finished.get(k, 0), budget)
        write_lines(self.log_dir / FINISHED_FILE,
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
    unmarked = set_aside_unmarked(log_dir)
    if unmarked:
        warnings.warn(f"{log_dir}: {unmarked} tuning record(s) of an earlier version (neighbour schedules "
                      f"without MetaSchedule's postprocessing mark) were moved to {REJECTED_FILE}; the rest is "
                      "intact", DatabaseWarning, stacklevel=2)

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
    return TuningDatabase(log_dir=log_dir, db=db, skipped_lines=skipped,
                          _finished=read_trials(log_dir / FINISHED_FILE),
                          _neighboured=read_trials(log_dir / NEIGHBOURED_FILE))


def read_trials(path: str | os.PathLike) -> dict[str, int]:
    """A ``{workload key: trials}`` bookkeeping file (``finished_tasks.json``, ...), ``{}`` when
    absent or unreadable."""
    return {str(k): int(v) for k, v in read_json(path).items() if isinstance(v, int)}


def calibration_source(log_dir: str | os.PathLike) -> Path | None:
    """The log folder whose schedules ``log_dir`` borrows (written by ``tvm-ofa calibrate``),
    None when it has none or the folder is gone."""
    src = read_json(Path(log_dir) / CALIBRATION_FILE).get("source_dir")
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


def has_logs(log_dir: str | os.PathLike) -> bool:
    """Whether ``log_dir`` has a tuning database (unpacking its shipped copy first)."""
    log_dir = Path(log_dir)
    unpack(log_dir)
    return (log_dir / WORKLOAD_FILE).is_file() and (log_dir / RECORD_FILE).is_file()


def record_count(log_dir: str | os.PathLike) -> int:
    """Lines of the record file (every candidate timed, failed ones included)."""
    p = Path(log_dir) / RECORD_FILE
    return sum(1 for _ in open(p, "rb")) if p.exists() else 0


@dataclass
class RecordSummary:
    """Per workload line of the database: its parsed entry, best record time and record count.

    Attributes
    ----------
    entries : list
        Parsed workload lines, in file order (``None`` where a line is not ``[shash, workload]``).
    best_s, counts : dict
        Workload line index -> mean seconds of its fastest valid record / valid records.
    skipped_lines : int
        Workload and record lines that do not parse or point nowhere.
    failed : dict
        Workload line index -> records of failed builds or runs.
    """

    entries: list
    best_s: dict[int, float] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)
    failed: dict[int, int] = field(default_factory=dict)
    skipped_lines: int = 0


def summarize_records(log_dir: str | os.PathLike) -> RecordSummary:
    """Read the database files of ``log_dir`` without TVM: each workload line's best record.

    Raises
    ------
    NoTuningLogsError
        When ``log_dir`` has no database files.
    """
    log_dir = Path(log_dir)
    if not has_logs(log_dir):
        raise NoTuningLogsError(
            f"{log_dir}: no tuning database ({WORKLOAD_FILE}, {RECORD_FILE}); create it with "
            "`tvm-ofa tune --target ...` or `tvm-ofa latency collect --target ...`")
    out = RecordSummary(entries=[])
    for entry in json_lines(log_dir / WORKLOAD_FILE):
        ok = isinstance(entry, list) and len(entry) == 2
        out.skipped_lines += not ok
        out.entries.append(entry if ok else None)
    for rec in json_lines(log_dir / RECORD_FILE):
        if not (isinstance(rec, list) and len(rec) == 2 and isinstance(rec[0], int)
                and 0 <= rec[0] < len(out.entries)):
            out.skipped_lines += 1
            continue
        i, secs = rec[0], record_seconds(rec[1])
        if secs is None:
            out.failed[i] = out.failed.get(i, 0) + 1
            continue
        out.best_s[i] = min(out.best_s.get(i, secs), secs)
        out.counts[i] = out.counts.get(i, 0) + 1
    return out


def read_retimed(log_dir: str | os.PathLike, name: str = RETIMED_FILE) -> dict[str, Any]:
    """``retimed.json`` (or ``name``) of ``log_dir`` (``{}`` when absent or unreadable)."""
    doc = read_json(Path(log_dir) / name)
    return doc if isinstance(doc.get("workloads"), dict) else {}


def accepted_times(log_dir: str | os.PathLike, record_s: dict[str, float] | None,
                   name: str = RETIMED_FILE) -> dict[str, float]:
    """The re-timed seconds of ``log_dir`` that stand: timed while the canary ran within the
    run's ``slow`` factor of its fastest, and for the record that is still the workload's best
    (``record_s``: workload key -> best record's mean seconds; a workload tuned again since has
    another best schedule, which was not re-timed; None trusts the records, as for another
    machine's frozen logs)."""
    doc = read_retimed(log_dir, name)
    try:
        limit = float(doc.get("slow", 1.1)) * float(doc["canary_best_s"])
    except (KeyError, TypeError, ValueError):
        return {}
    return {k: float(e["s"]) for k, e in doc["workloads"].items()
            if retime_stands(e, limit, None if record_s is None else record_s.get(k), any_record=record_s is None)}


def retime_stands(entry: Any, limit: float, record_s: float | None, any_record: bool = False) -> bool:
    """Whether one ``retimed.json`` entry counts: timed while the canary ran within ``limit``
    seconds, for the record whose mean time is still ``record_s`` (for whichever record it was,
    with ``any_record``)."""
    try:
        s, c, r = float(entry["s"]), float(entry["canary_s"]), float(entry["record_s"])
    except (KeyError, TypeError, ValueError):
        return False
    same = any_record or (record_s is not None and abs(record_s - r) <= 1e-9 + 1e-6 * r)
    return same and 0 < s < FAILED_SECS and c <= limit


def read_provenance(log_dir: str | os.PathLike) -> dict:
    """``provenance.json`` of ``log_dir`` (``{}`` when absent)."""
    return read_json(Path(log_dir) / PROVENANCE_FILE)


def predictor_name(tag: str) -> str:
    """The file name of the latency predictor of the network ``tag`` names: a CPU's folder holds
    one per network measured there."""
    return f"latency_predictor.{tag}.json"


def model_name(predictor: str) -> str:
    """The file name of a predictor's XGBoost model, beside it."""
    return predictor.removesuffix(".json") + MODEL_SUFFIX


def predictor_files(folder: str | os.PathLike) -> list[Path]:
    """Every latency predictor file in ``folder`` (one per network)."""
    folder = Path(folder)
    return sorted(p for p in folder.glob("latency_predictor*.json") if p.is_file()) if folder.is_dir() else []
