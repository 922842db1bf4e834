"""Make a machine whose CPU has no tuning logs useful in minutes (``tvm-ofa calibrate``).

1. Its logs stay apart: ``tuning_logs/<target>/<cpu>/`` (``TargetConfig.log_dir``).
2. It borrows the schedules of the closest machine that has a predictor (same target, most
   shared CPU features): ``calibration.json`` names that folder, and every build here applies
   its own records first and the borrowed ones after (``compiler.store.schedule_database``),
   rebuilt for this CPU.
3. It measures a few deliberately chosen subnets end to end: the two extremes, then a
   space-filling sample over depth, width, kernel, resolution and the source's latency.
4. It fits a :class:`~tvm_ofa.predict.latency.CalibratedPredictor`: the source's per-workload
   predictions rescaled per operator group, plus this machine's own records where it has them.
   Measuring stops at half the budget (the extremes always) to leave time for step 5.
5. It times the borrowed schedules here, the workloads that carry the most predicted latency
   over the space first (``compiler.retime``, into ``borrowed_retimed.json``): a schedule's cost
   on this CPU replaces a scaled guess from the source's.
6. Time that is left measures the rest of the calibration set, then tunes, on this machine, the
   workloads that carry the most predicted latency, re-measures the calibration subnets they touch
   and refits.

Everything is appended to disk as it is measured (``calibration_measurements.jsonl``); a rerun
skips what is done and the predictor is rewritten after every measurement, so an interruption
loses at most the subnet in flight.
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from tvm_ofa.arch import ArchConfig, SearchSpace
from tvm_ofa.errors import TvmOfaError
from tvm_ofa.compiler.store import (BORROWED_FILE, CALIBRATION_FILE, CALIBRATION_MEASUREMENTS_FILE, DatabaseWarning,
                                   NoTuningLogsError, accepted_times, append_json_line, json_lines, read_json,
                                   read_provenance, record_count, write_json, writer_lock)
from tvm_ofa.predict.dataset import Measurement
from tvm_ofa.predict.latency import (CalibratedPredictor, LatencyPredictor, find_predictor, load_predictor,
                                     rank_workloads)

# the share of the budget spent measuring subnets before the borrowed schedules are timed here
MEASURE_SHARE = 0.5
# a batch of borrowed schedules timed while the canary kernel ran slower than this, relative to
# its fastest, is taken again (as Canary.wait_for_speed's end-to-end timings wait)
RETIME_SLOW = 1.25
# a first guess of one subnet's lower + build + measure, before this machine has timed one
DEFAULT_SUBNET_SECONDS = 30.0


class CalibrationError(TvmOfaError):
    """Calibration cannot start or go on (no source, unreachable device, too little time)."""


@dataclass
class CalibrationEvent:
    """Progress, sent after each step."""

    stage: str  # "start" (what is calibrated from where), "measure", "retime", "fit", "tune";
    # "warning": a step skipped, the message says why
    done: int
    total: int
    message: str = ""


@dataclass
class CalibrationReport:
    log_dir: str
    source_dir: str
    source_cpu: Optional[str]
    measured: int
    measured_now: int
    tuned_workloads: int
    seconds: float
    predictor: str
    factors: dict[str, float] = field(default_factory=dict)
    fit_mape: Optional[float] = None
    retimed_workloads: int = 0


def _features(prov: dict) -> set[str]:
    return set(prov.get("cpu_features") or [])


def find_source(log_dir: Path, provenance: dict, match: dict | None = None) -> Path | None:
    """The sibling CPU folder of ``log_dir`` (same target) that has a latency predictor (for the
    network ``match`` describes, see :func:`~tvm_ofa.predict.latency.find_predictor`) and the
    most CPU features in common with this machine (Jaccard), None when there is none."""
    parent = log_dir.parent
    if not parent.is_dir():
        return None
    mine = _features(provenance)
    best: tuple[float, str] | None = None
    for d in sorted(p for p in parent.iterdir() if p.is_dir() and p != log_dir):
        try:
            doc = read_json(find_predictor(d, match))
        except TvmOfaError:
            continue
        if doc.get("kind") == CalibratedPredictor.kind:
            continue  # a calibrated machine is not a source: its schedules are borrowed too
        theirs = set(doc.get("cpu_features") or _features(read_provenance(d)))
        score = len(mine & theirs) / max(1, len(mine | theirs))
        if best is None or score > best[0]:
            best = (score, str(d))
    return Path(best[1]) if best else None


def load_source(source_dir: Path, provenance: dict, match: dict | None = None) -> LatencyPredictor:
    """The source machine's predictor (for the network ``match`` describes); refused when fitted
    with another TVM version."""
    try:
        path = find_predictor(source_dir, match)
    except TvmOfaError as err:
        raise CalibrationError(f"{err} (the calibration's source)") from None
    doc = read_json(path)
    if not doc:
        raise CalibrationError(f"{path}: no readable latency predictor to start from; "
                               f"fit one there with `tvm-ofa latency fit`")
    if doc.get("kind") == CalibratedPredictor.kind:
        raise CalibrationError(f"{source_dir}: its predictor is itself calibrated from another machine; "
                               "use that machine's folder as the source")
    if doc.get("tvm_version") != provenance.get("tvm_version"):
        raise CalibrationError(
            f"{source_dir}: logs and predictor are from TVM {doc.get('tvm_version')}, this is TVM "
            f"{provenance.get('tvm_version')}: schedules and timings do not carry over between versions")
    as_there = {**provenance, "target": doc.get("target"), "cpu": doc.get("cpu")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_predictor(source_dir, as_there, match)


def calibration_set(space: SearchSpace, source: LatencyPredictor, n: int, seed: int = 0,
                    candidates: int = 4000, covered: set[str] | None = None,
                    extra: Sequence[ArchConfig] = ()) -> list[ArchConfig]:
    """The subnets to measure, in order: the fastest and slowest (by the source's prediction),
    then greedy max-min distance over (mean depth, mean expand, mean kernel, resolution, log
    source latency), each scaled to [0, 1].

    Parameters
    ----------
    candidates : int
        Seeded uniform samples of the space in the pool, besides the extremes and ``extra``.
    covered : set of str, optional
        Workload keys that have a schedule to borrow: only subnets made of them are measured
        (an unscheduled workload runs TVM's naive default, which says nothing about tuned code).
    extra : sequence of ArchConfig
        More candidates, e.g. the subnets the source measured (fully tuned there by construction).
    """
    from tvm_ofa.predict.workloads import subnet_workloads

    rng = np.random.default_rng(seed)
    pool = [space.smallest(), space.largest()] + [a for a in extra if space.contains(a)] \
        + space.sample_many(candidates, rng)
    seen: set[str] = set()
    pool = [a for a in pool if not (a.id in seen or seen.add(a.id))]
    if covered is not None:
        inside = [a for a in pool if all(w.key in covered for w in subnet_workloads(a, source.net))]
        if len(inside) >= 2:
            pool = inside
    if len(pool) <= 2:
        return pool[:n]
    ks, e, d, r = (np.asarray(a, dtype=np.float64) for a in _arrays(pool))
    active = space.active_mask(d.astype(int)).astype(np.float64)
    lat = np.log(source.predict(pool))
    feats = np.stack([d.mean(1), (e * active).sum(1) / active.sum(1), (ks * active).sum(1) / active.sum(1),
                      r, lat], axis=1)
    span = feats.max(0) - feats.min(0)
    feats = (feats - feats.min(0)) / np.where(span > 0, span, 1.0)
    chosen = [int(np.argmin(lat)), int(np.argmax(lat))]
    dist = np.minimum(np.linalg.norm(feats - feats[chosen[0]], axis=1),
                      np.linalg.norm(feats - feats[chosen[1]], axis=1))
    while len(chosen) < min(n, len(pool)):
        i = int(np.argmax(dist))
        if dist[i] <= 0:
            break
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(feats - feats[i], axis=1))
    return [pool[i] for i in chosen[:n]]


def source_archs(source_dir: Path) -> list[ArchConfig]:
    """The subnets the source machine measured end to end."""
    from tvm_ofa.predict.dataset import load_measurements

    return [m.arch for m in load_measurements(source_dir)[0]]


def scheduled_keys(source_dir: Path, log_dir: Path) -> set[str]:
    """Workload keys with a schedule here: the source's records and this machine's own."""
    keys: set[str] = set()
    for d in (source_dir, log_dir):
        ds = _local_dataset(d)
        if ds is not None:
            keys |= {w.key for w in ds.workloads}
    return keys


def _arrays(archs: Sequence[ArchConfig]) -> tuple[np.ndarray, ...]:
    from tvm_ofa.predict.workloads import WorkloadTable

    return WorkloadTable.arrays(archs)


def read_measurements(log_dir: Path) -> list[dict]:
    """Calibration measurements on disk (unreadable lines skipped), latest per arch id."""
    latest: dict[str, dict] = {}
    for d in json_lines(log_dir / CALIBRATION_MEASUREMENTS_FILE):
        if isinstance(d, dict) and "id" in d and "median_ms" in d and "arch" in d:
            latest[d["id"]] = d
    return list(latest.values())


def min_minutes(log_dir: Path) -> float:
    """Minutes needed to measure the two extremes: from this machine's own past measurements
    when it has some, else a first guess."""
    secs = [float(m.get("seconds", 0)) for m in read_measurements(log_dir) if m.get("seconds")]
    per = float(np.median(secs)) if secs else DEFAULT_SUBNET_SECONDS
    return round(2 * per / 60, 2)


def _local_dataset(log_dir: Path) -> Any:
    from tvm_ofa.predict.dataset import build_dataset

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DatabaseWarning)
            return build_dataset(log_dir)
    except NoTuningLogsError:
        return None


def borrowed_times(log_dir: Path) -> dict[str, float]:
    """Seconds of the borrowed schedules timed on this machine (workload key -> s)."""
    return accepted_times(log_dir, None, BORROWED_FILE)


def fit(source: LatencyPredictor, log_dir: Path, info: dict) -> tuple[CalibratedPredictor, list[Measurement]]:
    """The calibrated predictor from the source and what ``log_dir`` holds now."""
    pred = CalibratedPredictor.from_source(source, _local_dataset(log_dir), info, borrowed_times(log_dir))
    ms = []
    for d in read_measurements(log_dir):
        try:
            ms.append(Measurement.from_dict(d))
        except (KeyError, TypeError, ValueError, TvmOfaError):
            continue
    pred.calibrate(ms)
    return pred, ms


def important_workloads(pred: LatencyPredictor, n_archs: int = 512, seed: int = 0) -> list[tuple[str, float]]:
    """Workload keys ranked by the predicted latency they carry over a uniform sample of the
    space (occurrences times predicted ms): the ones worth tuning on this machine first."""
    keys, weight = rank_workloads(pred, pred.space.sample_many(n_archs, np.random.default_rng(seed)))
    return list(zip(keys, weight.tolist()))


def choose_lowering(cfg: Any, match: Mapping[str, Any] | None = None,
                    log_root: str | Path | None = None) -> tuple[Any, str | None]:
    """The target to build, search and predict with for the network ``match`` describes.

    A target with ``prefer`` (``host-cpu``) uses the fastest of its lowerings for this CPU that has
    a latency predictor of the network, on this CPU or on another CPU to calibrate from: a compile,
    its search and its predicted latency then describe the same library. With none, the fastest.

    Returns
    -------
    (TargetConfig, str or None)
        The target, and a line saying which lowering and why (None for a target without ``prefer``).
    """
    from tvm_ofa.targets import host_provenance, lowering_candidates

    candidates = lowering_candidates(cfg)
    if len(candidates) == 1:
        return cfg, None
    cpu = cfg.host_cpu()
    for cand in candidates:
        log_dir = cand.log_dir(log_root)
        try:
            find_predictor(log_dir, match)
            return cand, f"{cand.name}: the fastest lowering with a latency predictor of this network on {cpu}"
        except TvmOfaError:
            pass
        src = find_source(log_dir, host_provenance(cand), dict(match) if match else None)
        if src is not None:
            return cand, (f"{cand.name}: the fastest lowering with a latency predictor of this network "
                          f"({src.name}'s, to calibrate from)")
    return candidates[0], f"{candidates[0].name}: the fastest lowering for {cpu} (no lowering has a latency " \
                          "predictor of this network yet)"


def ensure_predictor(cfg: Any, log_root: str | Path | None, minutes: float, match: dict | None = None,
                     progress: Optional[Callable[[CalibrationEvent], None]] = None) -> Any:
    """The latency predictor of ``cfg`` on this machine for the network ``match`` describes. When
    this CPU has none but another CPU of the target has one, calibrate from it first, within
    ``minutes`` (``progress`` first gets a ``start`` event saying so).

    Returns
    -------
    LatencyPredictor or CalibratedPredictor
        What :func:`~tvm_ofa.predict.latency.load_predictor` loads (its warnings go through
        :mod:`warnings`).
    """
    from tvm_ofa.predict.latency import find_predictor, load_predictor
    from tvm_ofa.targets import host_provenance

    prov = host_provenance(cfg)
    log_dir = cfg.log_dir(log_root)
    try:
        find_predictor(log_dir, match)
        have = True
    except TvmOfaError:
        have = False
    if not have and minutes > 0:
        src = find_source(log_dir, prov, match)
        if src is not None:
            if progress is not None:
                progress(CalibrationEvent("start", 0, 0, f"this CPU ({prov.get('cpu')}) has no logs of its own "
                                          f"for this network: calibrating from {src} for up to {minutes:g} min "
                                          "first (`tvm-ofa calibrate` does more)"))
            calibrate(cfg, minutes=minutes, log_root=log_root, source_dir=src, match=match, progress=progress)
    return load_predictor(log_dir, prov, match)


def calibrate(cfg: Any, *, minutes: float, log_root: str | Path | None = None,
              source_dir: str | Path | None = None, n_subnets: int = 16, seed: int = 0,
              repeats: int = 30, tune: bool = True, trials_per_task: int | None = None,
              tune_rounds: int | None = None, progress: Optional[Callable[[CalibrationEvent], None]] = None,
              clock: Callable[[], float] = time.monotonic, match: dict | None = None,
              retime: bool = True) -> CalibrationReport:
    """Calibrate the latency predictor of ``cfg`` on this machine within ``minutes``.

    Parameters
    ----------
    cfg : TargetConfig
    minutes : float
        Time budget of this run (a rerun continues with a new budget).
    source_dir : path, optional
        The log folder to start from (default: the closest CPU of the same target, see
        :func:`find_source`). Needed when the target's logs are not kept per CPU (RPC devices).
    match : dict, optional
        Which network's predictor to carry over when the source holds several (e.g.
        ``{"space": supernet.space, "n_classes": 10}``, see :func:`~tvm_ofa.predict.latency.find_predictor`).
    n_subnets : int
        Calibration subnets to measure end to end (10-20 is the useful range).
    retime : bool
        Time the borrowed schedules of the most important workloads here (step 5).
    tune : bool
        Spend the time left on tuning the most important workloads here.
    trials_per_task : int, optional
        Tuning trials per workload in step 5 (default: half the target's budget, at least 8).
    tune_rounds : int, optional
        At most this many tune-remeasure-refit rounds in step 5 (default: until time is up).

    Returns
    -------
    CalibrationReport
    """
    from tvm_ofa.compiler.runners import measurable
    from tvm_ofa.targets import host_provenance

    start = clock()
    deadline = start + 60.0 * float(minutes)
    log_dir = cfg.log_dir(log_root)
    need = min_minutes(log_dir)
    if minutes < need:
        raise CalibrationError(f"--minutes {minutes:g} is too short: measuring the two extreme subnets "
                               f"takes about {need:g} minutes here; give at least that")
    ok, why = measurable(cfg)
    if not ok:
        raise CalibrationError(f"{cfg.path}: cannot measure {cfg.name}: {why}")
    with writer_lock(log_dir):  # creates the folder
        prov = host_provenance(cfg)
        state = read_json(log_dir / CALIBRATION_FILE)
        if source_dir is None and state.get("source_dir"):
            # stored relative to the log folder, so the two folders can move (or be committed) together
            source_dir = log_dir / state["source_dir"]
        if source_dir is None:
            source_dir = find_source(log_dir, prov, match)
        if source_dir is None:
            raise CalibrationError(
                f"{log_dir.parent}: no other machine's logs with a latency predictor to start from; collect them "
                f"(`tvm-ofa latency collect --target {cfg.name}`, then `tvm-ofa latency fit`) "
                "or pass --source DIR")
        source_dir = Path(source_dir).resolve()
        if source_dir == log_dir.resolve():
            raise CalibrationError(f"{source_dir}: the source must be another machine's folder, not this one's")
        source = load_source(source_dir, prov, match)
        info = {"dir": str(source_dir), "cpu": source.meta.get("cpu"), "threads": source.meta.get("threads"),
                "date": source.meta.get("date")}
        state.update({"source_dir": os.path.relpath(source_dir, log_dir.resolve()), "source_cpu": source.meta.get("cpu"),
                      "cpu": prov.get("cpu"), "cpu_features": prov.get("cpu_features"),
                      "threads": prov.get("threads"), "tvm_version": prov.get("tvm_version")})
        write_json(log_dir / CALIBRATION_FILE, state)
        from tvm_ofa.compiler.tune import write_provenance

        write_provenance(cfg, log_dir)

        archs = calibration_set(source.space, source, n_subnets, seed=seed,
                                covered=scheduled_keys(source_dir, log_dir), extra=source_archs(source_dir))
        done = {m["id"]: m for m in read_measurements(log_dir)}
        todo = [a for a in archs if a.id not in done]
        measured_now = 0
        per_subnet = np.median([m["seconds"] for m in done.values() if m.get("seconds")] or [DEFAULT_SUBNET_SECONDS])
        net = _untrained(source)

        def emit_event(stage: str, i: int, n: int, msg: str = "") -> None:
            if progress is not None:
                progress(CalibrationEvent(stage, i, n, msg))

        emit_event("measure", len(archs) - len(todo), len(archs))
        canary = make_canary(cfg, source, net, log_root)

        def measure_until(stop: float) -> None:
            nonlocal measured_now, per_subnet
            while todo:
                if clock() + per_subnet > stop and len(done) >= 2:  # the two extremes, always
                    return
                arch = todo.pop(0)
                m = measure_subnet(cfg, arch, net, source, log_root, repeats, canary=canary)
                m["db_records"] = record_count(log_dir)
                append_json_line(log_dir / CALIBRATION_MEASUREMENTS_FILE, m)
                done[arch.id] = m
                measured_now += 1
                per_subnet = float(np.median([d["seconds"] for d in done.values() if d.get("seconds")]))
                pred, _ = fit(source, log_dir, info)
                pred.save(log_dir, prov)
                emit_event("measure", len(archs) - len(todo), len(archs), f"{arch.id} {m['median_ms']:.3f} ms")

        measure_until(start + MEASURE_SHARE * (deadline - start) if retime else deadline)
        retimed = 0
        if retime and cfg.runner["kind"] in ("local", "rpc") and clock() < deadline:
            retimed = _retime_borrowed(cfg, source, source_dir, log_dir, info, prov, deadline, clock, emit_event)
        measure_until(deadline)

        tuned = 0
        if tune and cfg.runner["kind"] in ("local", "rpc"):
            tuned = _tune_important(cfg, source, log_dir, log_root, archs, net, info, prov, deadline, clock, canary,
                                    per_subnet, repeats, trials_per_task, tune_rounds, emit_event)

        pred, ms = fit(source, log_dir, info)
        path = pred.save(log_dir, prov)
        fit_mape = None
        if ms:
            y = np.array([m.latency_ms for m in ms])
            fit_mape = float(100 * np.mean(np.abs(pred.predict([m.arch for m in ms]) - y) / y))
        state["seconds"] = float(state.get("seconds", 0.0)) + (clock() - start)
        write_json(log_dir / CALIBRATION_FILE, state)
        emit_event("fit", 1, 1, f"{len(ms)} subnets")
        return CalibrationReport(str(log_dir), str(source_dir), source.meta.get("cpu"), len(ms), measured_now,
                                 tuned, clock() - start, str(path), dict(pred.factors), fit_mape, retimed)


def _untrained(source: LatencyPredictor) -> Any:
    """A supernet with the source network's shapes: latency does not depend on the weights."""
    import torch

    from tvm_ofa.nn.ofa_mbv3 import OFAMobileNetV3

    torch.manual_seed(0)
    n = source.net
    return OFAMobileNetV3(n_classes=n.n_classes, width_mult=n.width_mult, space=source.space,
                          stem_stride=n.stem_stride).eval()


def make_canary(cfg: Any, source: LatencyPredictor, net: Any, log_root: str | Path) -> Any:
    """A :class:`~tvm_ofa.compiler.measure.Canary` for local timing: the space's smallest subnet
    built with this machine's schedules and loaded once (None for remote targets)."""
    import tempfile

    from tvm_ofa.compiler.artifact import load_artifact
    from tvm_ofa.compiler.measure import Canary
    from tvm_ofa.compiler.pipeline import emit

    if cfg.runner["kind"] != "local" or cfg.is_cross:
        return None
    arch = source.space.smallest(min(source.space.resolutions))
    with tempfile.TemporaryDirectory(prefix="tvm-ofa-canary-") as tmp:
        folder = emit(cfg, arch, net.extract(arch).eval(), batch=source.net.batch, log_root=log_root,
                      out_root=tmp, tune_first=False, measure=False)
        art = load_artifact(folder, threads=cfg.num_threads)
    return Canary(lambda: art.benchmark(warmup=3, repeats=20, min_seconds=0.1).median_ms)


def measure_subnet(cfg: Any, arch: ArchConfig, net: Any, source: LatencyPredictor,
                   log_root: str | Path, repeats: int, passes: int = 3, canary: Any = None,
                   max_passes: int = 6) -> dict:
    """Build ``arch`` with this machine's schedules (own first, then borrowed), time it where
    the target runs (locally, in ``passes`` windows, each at the machine's usual speed per
    ``canary`` when given, more up to ``max_passes`` until the fastest is confirmed; or through
    its RPC tracker), return the measurement record."""
    import tempfile

    from tvm_ofa.compiler.artifact import read_metadata
    from tvm_ofa.compiler.pipeline import emit

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tvm-ofa-cal-") as tmp:
        folder = emit(cfg, arch, net.extract(arch).eval(), batch=source.net.batch, log_root=log_root,
                      out_root=tmp, tune_first=False, repeats=repeats, passes=passes, canary=canary,
                      max_passes=max_passes)
        meta = read_metadata(folder)
    lat = meta.get("latency") or {}
    if not lat.get("median_ms"):
        raise CalibrationError(f"{cfg.path}: {arch.id} was built but not measured: {meta.get('latency_note')}")
    return {**Measurement(arch, float(lat["median_ms"]), source.net, lat.get("p90_ms"), lat.get("repeats"),
                          (meta.get("cpu") or {}).get("name"), lat.get("threads"),
                          tuple(lat.get("passes_ms") or ())).to_dict(),
            "coverage": meta["tuning"]["coverage"], "seconds": round(time.monotonic() - t0, 2),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S")}


def _retime_borrowed(cfg, source, source_dir, log_dir, info, prov, deadline, clock, emit_event) -> int:
    """Step 5: time the source's schedules here, the workloads carrying the most predicted latency
    first, until the deadline; the predictor is refitted and saved after the run."""
    from tvm_ofa.compiler.retime import retime_records

    pred, _ = fit(source, log_dir, info)
    ranked = [k for k, _ in important_workloads(pred) if k not in pred.local_ms]
    if not ranked:
        return 0

    def progress(p: Any) -> None:
        emit_event("retime", p.done, p.total, f"machine at {p.slowdown:.2f}x its fastest")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rep = retime_records(cfg, log_dir, records_dir=source_dir, keys=ranked, deadline=deadline,
                                 clock=clock, slow=RETIME_SLOW, progress=progress)
    except TvmOfaError as err:
        # the source's times, scaled, still stand in: calibration goes on without this step
        emit_event("warning", 0, 0, f"borrowed schedules not timed here: {err}")
        return 0
    pred, _ = fit(source, log_dir, info)
    pred.save(log_dir, prov)
    return rep.retimed


def _tune_important(cfg, source, log_dir, log_root, archs, net, info, prov, deadline, clock, canary,
                    per_subnet, repeats, trials_per_task, rounds, emit_event) -> int:
    """Step 5: tune the heaviest workloads not yet tuned here, a few at a time, inside subnets of
    the calibration set that contain them; re-measure those subnets and refit."""
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.tune import tune
    from tvm_ofa.predict.workloads import subnet_workloads

    budget = int(trials_per_task or max(8, cfg.tuning["trials_per_task"] // 2))
    per_round = min(budget, int(cfg.tuning["trials_per_round"]))
    tuned = 0
    secs_per_trial = 0.5  # refined from this run's own tuning
    n_round = 0
    keys_of = {a.id: {w.key for w in subnet_workloads(a, source.net)} for a in archs}
    reachable = set().union(*keys_of.values())  # tuned inside a calibration subnet, so re-measured
    while rounds is None or n_round < rounds:
        n_round += 1
        pred, _ = fit(source, log_dir, info)
        local = set(pred.local_ms)
        ranked = [k for k, _ in important_workloads(pred) if k not in local and k in reachable]
        left = deadline - clock()
        if not ranked or left < per_subnet * 2 + budget * secs_per_trial:
            return tuned
        # the subnet of the calibration set holding the most of the top workloads
        top = ranked[:8]
        arch = max(archs, key=lambda a: len(keys_of[a.id] & set(top)))
        chosen = [k for k in top if k in keys_of[arch.id]]
        affordable = max(1, int((left - 2 * per_subnet) / (budget * secs_per_trial)))
        chosen = chosen[:affordable]
        if not chosen:
            return tuned
        emit_event("tune", tuned, tuned + len(chosen), f"{len(chosen)} workloads in {arch.id}")
        res = arch.resolution
        lowered = lower_module(net.extract(arch).eval(), (source.net.batch, 3, res, res), lowering=cfg.lowering)
        t0 = clock()
        report = tune(cfg, lowered, trials_per_task=budget, trials_per_round=per_round, log_root=log_root,
                      only=chosen)
        if report.new_trials:
            secs_per_trial = max(0.05, (clock() - t0) / report.new_trials)
        tuned += report.tasks_tuned
        # the subnets whose schedules changed are measured again, as builds will now be
        for a in archs:
            if clock() + per_subnet > deadline:
                break
            if keys_of[a.id] & set(chosen):
                m = measure_subnet(cfg, a, net, source, log_root, repeats, canary=canary)
                m["db_records"] = record_count(log_dir)
                append_json_line(log_dir / CALIBRATION_MEASUREMENTS_FILE, m)
        pred, _ = fit(source, log_dir, info)
        pred.save(log_dir, prov)
        if report.tasks_tuned == 0:
            return tuned
    return tuned
