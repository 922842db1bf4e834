"""The latency predictor's training data for a target: tune subnets sampled across the space
into the target's tuning logs and measure fully tuned subnets end to end
(``tvm-ofa latency collect`` is this module with a progress bar).

Writes, under ``<log-root>/<target>/<cpu>/``:

- the MetaSchedule JSON database (via ``tvm_ofa.compiler.tune``, which skips workloads already
  tuned, so subnets sharing layer shapes share work);
- ``measurements.jsonl``: one line per measured subnet (:func:`measurement_record`). With
  ``measure_only`` each timing pass's median is kept in ``pass_medians_ms`` and a canary's time
  before each pass in ``pass_canary_ms``: the VM runs 1.3-2x slower for tens of seconds at a time,
  the canary tells those passes apart, and ``Measurement.latency_ms`` is the fastest pass.
  ``confirm`` times again the subnets whose fastest pass no other pass confirms.

Resumable: subnet ``i`` is drawn from ``(seed, i)``, measured subnets are skipped on a rerun, and
an interrupted tune loses at most the batch in flight.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional

from tvm_ofa.compiler.store import (MEASUREMENTS_FILE, NoTuningLogsError, append_json_line, json_lines,
                                   open_database, pack, writer_lock)

RESOLUTIONS = (128, 160, 192, 224)
# a pass whose canary ran more than SLOW times the canary's best ran in a slow phase of the VM;
# a library with no other pass gets up to SLOW_ROUNDS more
SLOW = 1.10
SLOW_ROUNDS = 4
# --confirm: a pass counts as taken at full speed when the canary ran within this of its best
# (Canary.wait_for_speed's limit: the slow phases are 1.3x and more)
AT_SPEED = 1.25


@dataclass
class CollectOptions:
    """What to collect (``tvm-ofa latency collect``'s options of the same names)."""

    hours: float = 1.0
    trials_per_task: int | None = None
    trials_per_round: int | None = None
    max_subnets: int | None = None
    resolutions: list[int] = field(default_factory=lambda: list(RESOLUTIONS))
    seed: int = 0
    width_mult: float = 1.0
    n_classes: int = 1000
    repeats: int = 50
    no_measure: bool = False
    measure_only: bool = False
    held_out_only: bool = False
    loads: int = 1
    passes: int = 5
    chunk: int = 8
    confirm: bool = False
    pack: int | None = None

    @classmethod
    def from_namespace(cls, ns) -> "CollectOptions":
        return cls(**{f.name: getattr(ns, f.name) for f in fields(cls) if hasattr(ns, f.name)})


@dataclass(frozen=True)
class CollectEvent:
    """Progress of :func:`collect`: ``stage`` is ``start`` (``message`` says what is collected
    where), ``status`` (the subnet in flight), ``subnet`` (one more subnet done; ``message`` its
    result, if any) or ``note`` (a line for the user). ``total`` is the subnets wanted, if known."""

    stage: str
    done: int
    total: int | None
    message: str = ""


@dataclass(frozen=True)
class CollectReport:
    log_dir: Path
    measured_subnets: int
    packed: tuple[int, int] | None = None  # records before and after packing


class _Events:
    def __init__(self, progress: Optional[Callable[[CollectEvent], None]]):
        self.progress, self.done, self.total = progress, 0, None

    def emit(self, stage: str, message: str = "") -> None:
        if self.progress is not None:
            self.progress(CollectEvent(stage, self.done, self.total, message))

    def note(self, message: str) -> None:
        self.emit("note", message)

    def status(self, message: str) -> None:
        self.emit("status", message)

    def subnet(self, message: str = "") -> None:
        self.done += 1
        self.emit("subnet", message)


def sample_arch(space, seed: int, i: int, resolutions, tuned_keys: set[str] | None = None, net_cfg=None):
    """Subnet ``i``: first the smallest and largest at every resolution (the ends of the range a
    search uses), then, while the space has workloads without records, the one of 256 seeded
    candidates that brings the most of them (so the whole space gets tuned in few subnets), then
    uniform samples."""
    import numpy as np

    from tvm_ofa.predict.workloads import subnet_workloads

    res = sorted(resolutions)
    if i < 2 * len(res):
        r = res[i // 2]
        return space.smallest(r) if i % 2 == 0 else space.largest(r)
    rng = np.random.default_rng([seed, i])
    if tuned_keys is None:
        return space.sample(rng, resolution=res[i % len(res)])
    cands = space.sample_many(256, rng)
    gain = [len({w.key for w in subnet_workloads(a, net_cfg)} - tuned_keys) for a in cands]
    return cands[int(np.argmax(gain))] if max(gain) > 0 else cands[0]


def tuned_workload_keys(log_dir: Path) -> set[str]:
    from tvm_ofa.predict.dataset import build_dataset

    try:
        return {w.key for w in build_dataset(log_dir).workloads}
    except NoTuningLogsError:
        return set()


def measured_ids(path: Path) -> set[str]:
    return {d["id"] for d in json_lines(path) if isinstance(d, dict) and "id" in d}


def build_timer(cfg, lowered, db, repeats: int):
    """Build ``lowered`` with the records of ``db`` (an opened database: a big one takes tens of
    seconds to load, so callers timing many subnets open it once) and return a function that
    times it once more on each call (a :class:`tvm_ofa.compiler.measure.Latency`)."""
    import numpy as np
    import tvm
    from tvm import relax

    from tvm_ofa.compiler.build import build
    from tvm_ofa.compiler.measure import benchmark_vm

    # the same timing as `tvm-ofa compile` puts into an artifact's metadata
    ex = build(lowered.mod, cfg.tvm_target(), db)
    dev = tvm.cpu()
    vm = relax.VirtualMachine(ex, dev)
    x = np.random.default_rng(0).standard_normal(lowered.input_shape).astype("float32")

    def time_once(min_seconds: float = 1.0, tries: int = 3):
        return benchmark_vm(vm, dev, x, warmup=10, repeats=repeats, threads=cfg.num_threads,
                            min_seconds=min_seconds, tries=tries)

    return time_once


def measure(cfg, lowered, log_dir: Path, repeats: int):
    return build_timer(cfg, lowered, open_database(log_dir).db, repeats)()


def measurement_record(arch, lat, cfg, prov: dict, net_cfg, trials: int, **extra) -> dict:
    """One line of ``measurements.jsonl``: the timing ``lat`` (a ``Latency``) with what it was
    measured on."""
    m = {"median_ms": lat.median_ms, "p90_ms": lat.p90_ms, "repeats": int(lat.repeats)}
    if lat.passes_ms:
        m["pass_medians_ms"] = list(lat.passes_ms)
    return {"id": arch.id, "arch": arch.to_dict(), **m, "cpu": prov.get("cpu"), "threads": cfg.num_threads,
            "net": net_cfg.to_dict(), "trials_per_task": trials, **extra,
            "tvm_version": prov.get("tvm_version"), "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
            # other work on the same cores shifts timings: keep the evidence with them
            "other_cpu": lat.other_cpu, "loadavg": [round(x, 2) for x in os.getloadavg()]}


def collect(cfg, options: CollectOptions | None = None, log_root: str | os.PathLike | None = None,
            progress: Optional[Callable[[CollectEvent], None]] = None) -> CollectReport:
    """Collect latency data for ``cfg`` (a ``TargetConfig``) into its log folder.

    Parameters
    ----------
    cfg : TargetConfig
    options : CollectOptions
        Tune and measure (the default), ``no_measure``, ``measure_only`` or ``confirm``.
    log_root : path, optional
        Root of the per-target logs (default: the user's data folder).
    progress : callable, optional
        Called with a :class:`CollectEvent` as work advances. Ctrl-C stops the run cleanly.

    Returns
    -------
    CollectReport
    """
    from tvm_ofa.errors import ConfigError

    args = options or CollectOptions()
    ev = _Events(progress)
    if args.held_out_only and not (args.measure_only or args.confirm):
        raise ConfigError("--held-out-only goes with --measure-only or --confirm")
    # the runtime thread pool reads this once, at its first use
    os.environ.setdefault("TVM_NUM_THREADS", str(cfg.num_threads))
    import torch

    from tvm_ofa.arch import SearchSpace
    from tvm_ofa.nn.ofa_mbv3 import OFAMobileNetV3
    from tvm_ofa.predict.workloads import NetConfig
    from tvm_ofa.targets import host_provenance

    log_dir = cfg.log_dir(log_root)
    log_dir.mkdir(parents=True, exist_ok=True)
    meas_path = log_dir / MEASUREMENTS_FILE
    prov = host_provenance(cfg)
    trials = args.trials_per_task or cfg.tuning["trials_per_task"]
    # the space the data is for: its resolutions are the ones asked for
    space = SearchSpace(resolutions=tuple(sorted(set(args.resolutions))))
    torch.manual_seed(0)
    # latency does not depend on the weights: an untrained supernet has the same shapes
    net = OFAMobileNetV3(n_classes=args.n_classes, width_mult=args.width_mult, space=space).eval()
    net_cfg = NetConfig(args.width_mult, args.n_classes, net.stem_stride)
    done = measured_ids(meas_path)
    tuned_keys = tuned_workload_keys(log_dir)
    deadline = time.monotonic() + 3600 * args.hours
    limit = args.max_subnets if args.max_subnets is not None else 10**9
    ev.total = None if args.max_subnets is None else limit
    ev.emit("start", f"collecting into {log_dir} (cpu {prov.get('cpu')}, {cfg.num_threads} threads"
            + ("" if args.confirm else f", {trials} trials/task") + f"); {len(done)} subnets already measured")
    packed = None
    with writer_lock(log_dir):
        if args.confirm:
            _confirm(args, cfg, space, net, net_cfg, log_dir, meas_path, prov, deadline, limit, ev)
        elif args.measure_only:
            _measure_only(args, cfg, space, net, net_cfg, log_dir, meas_path, done, tuned_keys, prov,
                          trials, deadline, limit, ev)
        else:
            _tune_and_measure(args, cfg, space, net, net_cfg, log_dir, log_root, meas_path, done, tuned_keys,
                              prov, trials, deadline, limit, ev)
        if args.pack:
            packed = pack(log_dir, args.pack)
    return CollectReport(log_dir, len(measured_ids(meas_path)), packed)


def _tune_and_measure(args, cfg, space, net, net_cfg, log_dir, log_root, meas_path, done, tuned_keys, prov,
                      trials, deadline, limit, ev) -> None:
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.tune import coverage, tune
    from tvm_ofa.predict.workloads import subnet_workloads

    i = n = idle = 0
    try:
        while n < limit and time.monotonic() < deadline:
            arch = sample_arch(space, args.seed, i, args.resolutions, tuned_keys, net_cfg)
            i += 1
            if arch.id in done:
                continue
            if args.no_measure and not {w.key for w in subnet_workloads(arch, net_cfg)} - tuned_keys:
                # a rerun walks the same sequence: subnets tuned before cost nothing to skip here
                idle += 1
                if idle > 64:
                    ev.note("every sampled subnet's workloads have records already: nothing left to tune")
                    break
                continue
            idle = 0
            lowered = lower_module(net.extract(arch), (1, 3, arch.resolution, arch.resolution),
                                   lowering=cfg.lowering)

            def on_tune(t, _arch=arch):
                ev.status(f"{_arch.id} tasks {t.tasks_done}/{t.tasks_total} trials {t.trials}/{t.trials_budget}")

            report = tune(cfg, lowered, trials_per_task=trials, trials_per_round=args.trials_per_round,
                          log_root=log_root, progress=on_tune)
            n += 1
            tuned_keys |= {w.key for w in subnet_workloads(arch, net_cfg)}
            if args.no_measure:
                ev.subnet()
                continue
            tuned, total = coverage(cfg, lowered, log_root)
            if tuned < total:
                ev.subnet(f"{arch.id}: {total - tuned}/{total} workloads without a valid record; not measured")
                continue
            m = measure(cfg, lowered, log_dir, args.repeats)
            rec = measurement_record(arch, m, cfg, prov, net_cfg, trials, task_sum_ms=report.estimated_ms)
            append_json_line(meas_path, rec)
            done.add(arch.id)
            ev.subnet(f"{arch.id}: {m.median_ms:.3f} ms (task sum {report.estimated_ms or 0:.3f} ms, "
                      f"{report.tasks_tuned} tasks tuned, {report.tasks_skipped} reused)")
    except KeyboardInterrupt:
        ev.note("interrupted: records written so far are kept; rerun to continue")


def _measure_only(args, cfg, space, net, net_cfg, log_dir, meas_path, done, tuned_keys, prov, trials,
                  deadline, limit, ev) -> None:
    import numpy as np

    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.measure import BUSY, Canary, combine_windows
    from tvm_ofa.predict.dataset import is_held_out
    from tvm_ofa.predict.workloads import subnet_workloads

    target = len(done) + limit if args.max_subnets is not None else 10**9
    # a chunk of subnets is built, then timed in rounds, one pass of each library per round. A
    # shared VM runs 1.3-2x slower for tens of seconds at a time with no other process in sight;
    # a canary (the smallest subnet, timed briefly before every pass) tells those phases apart, a
    # library with no pass at the canary's usual speed gets more passes, and the record keeps the
    # canary's time beside each pass (``Measurement.latency_ms`` takes the fastest pass)
    chunk: list = []
    db = None
    canary: list = []  # [Canary], built with the first chunk

    def speed() -> float:
        return canary[0]() * canary[0].best  # the canary's time, ms

    def flush() -> None:
        passes: list[list] = [[] for _ in chunk]
        marks: list[list[float]] = [[] for _ in chunk]

        def one(j: int) -> None:
            marks[j].append(speed())
            passes[j].append(chunk[j][1]())

        for _ in range(args.passes):
            for j in range(len(chunk)):
                one(j)
        for _ in range(SLOW_ROUNDS):
            slow = [j for j in range(len(chunk)) if min(marks[j]) > SLOW * canary[0].best]
            if not slow:
                break
            time.sleep(5.0)
            for j in slow:
                one(j)
        for (arch, _), got, mark in zip(chunk, passes, marks):
            lat = combine_windows(got)
            append_json_line(meas_path, measurement_record(arch, lat, cfg, prov, net_cfg, trials,
                                                           pass_canary_ms=[round(c, 4) for c in mark]))
            ev.subnet(f"{arch.id}: {min(lat.passes_ms or (lat.median_ms,)):.3f} ms"
                      + (f" (passes {', '.join(f'{v:.3f}' for v in lat.passes_ms)}; canary "
                         f"{', '.join(f'{c / canary[0].best:.2f}' for c in mark)}x its best)" if lat.passes_ms else "")
                      + (f"; other processes used up to {lat.other_cpu:.0%} of the CPUs: timings inflated"
                         if (lat.other_cpu or 0.0) > BUSY else ""))
        chunk.clear()

    i = 0
    res = sorted(args.resolutions)
    try:
        while len(done) < target and time.monotonic() < deadline and i < 100_000:
            if i < 2 * len(res):
                arch = space.smallest(res[i // 2]) if i % 2 == 0 else space.largest(res[i // 2])
            else:
                arch = space.sample(np.random.default_rng([args.seed, 1_000_000 + i]))
            i += 1
            if arch.id in done or (args.held_out_only and not is_held_out(arch)):
                continue
            if any(w.key not in tuned_keys for w in subnet_workloads(arch, net_cfg)):
                continue
            lowered = lower_module(net.extract(arch), (1, 3, arch.resolution, arch.resolution),
                                   lowering=cfg.lowering)
            if db is None:
                db = open_database(log_dir).db
                small = space.smallest(res[0])
                timer = build_timer(cfg, lower_module(net.extract(small), (1, 3, small.resolution,
                                                                           small.resolution),
                                                          lowering=cfg.lowering), db, 20)
                canary.append(Canary(lambda t=timer: t(min_seconds=0.1, tries=1).median_ms))
            chunk.append((arch, build_timer(cfg, lowered, db, args.repeats)))
            done.add(arch.id)
            if len(chunk) >= args.chunk:
                flush()
        flush()
    except KeyboardInterrupt:
        ev.note("interrupted: measurements written so far are kept; rerun to continue")


def settled(passes, marks, best: float) -> bool:
    """Whether a record's fastest pass is the machine's full speed: another pass came within
    ``CONFIRM`` (5 %) of it, and one of those passes ran while the canary (``marks``, one per pass,
    when recorded) was within ``AT_SPEED`` of its ``best``; two passes in one slow phase can agree."""
    from tvm_ofa.compiler.measure import CONFIRM, confirmed

    if not confirmed(passes):
        return False
    if len(marks) != len(passes):
        return True
    return any(c <= AT_SPEED * best for p, c in zip(passes, marks) if p <= CONFIRM * min(passes))


def unconfirmed(meas_path: Path, net_cfg, cpu: str | None, loads: int = 1,
                held_out_only: bool = False) -> tuple[list[dict], float]:
    """The latest record of each measured subnet of ``net_cfg`` on ``cpu`` whose fastest pass is
    not :func:`settled` or that wants another build and load (``load_wanted`` with ``loads``),
    held-out subnets first (they are the eval's truth; with ``held_out_only``, those alone), and
    the fastest canary time any record saw (the canary's best on this CPU)."""
    from tvm_ofa.compiler.measure import load_wanted
    from tvm_ofa.predict.dataset import Measurement, is_held_out, record_loads, record_passes

    latest: dict[str, dict] = {}
    held: dict[str, bool] = {}
    best = float("inf")
    for ln in meas_path.read_text(errors="replace").splitlines() if meas_path.exists() else ():
        try:
            d = json.loads(ln)
            m = Measurement.from_dict(d)
        except (ValueError, KeyError, TypeError):
            continue
        if m.net == net_cfg and d.get("cpu") == cpu:
            latest[d["id"]] = d
            held[d["id"]] = is_held_out(m.arch)
            best = min([best, *(d.get("pass_canary_ms") or ())])
    todo = [d for d in latest.values()
            if not settled(record_passes(d), d.get("pass_canary_ms") or (), best)
            or load_wanted(record_loads(d), loads)]
    if held_out_only:
        todo = [d for d in todo if held[d["id"]]]
    todo.sort(key=lambda d: not held[d["id"]])
    return todo, best


def _confirm(args, cfg, space, net, net_cfg, log_dir, meas_path, prov, deadline, limit, ev) -> None:
    import numpy as np

    from tvm_ofa.arch import ArchConfig
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.measure import Canary, load_wanted
    from tvm_ofa.predict.dataset import Measurement, record_loads, record_passes

    todo, best = unconfirmed(meas_path, net_cfg, prov.get("cpu"), args.loads, args.held_out_only)
    todo = todo[:limit]
    ev.total = len(todo)
    ev.note(f"{len(todo)} measured {'held-out ' if args.held_out_only else ''}subnets whose fastest pass no "
            f"other pass confirms at the canary's usual speed, or timed in fewer than {args.loads} builds "
            "and loads that agree")
    if not todo:
        return
    db = open_database(log_dir).db
    small = space.smallest(min(args.resolutions))
    # the same canary library as --measure-only, scored against the best any record saw, so that
    # a run started in a slow phase does not take that phase for full speed
    timer = build_timer(cfg, lower_module(net.extract(small), (1, 3, small.resolution, small.resolution),
                                          lowering=cfg.lowering), db, 20)
    canary = Canary(lambda: timer(min_seconds=0.1, tries=1).median_ms)
    canary.best = best
    try:
        for start in range(0, len(todo), args.chunk):
            if time.monotonic() > deadline:
                ev.note("--hours reached: rerun to continue")
                break
            chunk = []
            for d in todo[start:start + args.chunk]:
                d = {**d, "pass_medians_ms": record_passes(d)}
                arch = ArchConfig.from_dict(d["arch"])
                lowered = lower_module(net.extract(arch), (1, 3, arch.resolution, arch.resolution),
                                       lowering=cfg.lowering)
                chunk.append((d, build_timer(cfg, lowered, db, args.repeats), [], []))
            for _ in range(args.passes):
                for d, time_once, got, marks in chunk:
                    # this build and load is timed at least once, whatever the earlier ones said
                    if got and settled(d["pass_medians_ms"] + [w.median_ms for w in got],
                               (d.get("pass_canary_ms") or []) + marks, canary.best):
                        continue
                    canary.wait_for_speed(max_wait_s=60.0)
                    marks.append(round(canary() * canary.best, 4))
                    got.append(time_once())
            for d, _, got, marks in chunk:
                passes = list(d["pass_medians_ms"]) + [w.median_ms for w in got]
                old_p90 = [d.get("p90_ms") or d["median_ms"]] * len(d["pass_medians_ms"])
                rec = {**d, "median_ms": float(np.median(passes)),
                       "p90_ms": float(np.median(old_p90 + [w.p90_ms for w in got])),
                       "repeats": int(d.get("repeats") or 0) + sum(w.repeats for w in got),
                       "pass_medians_ms": passes,
                       # one canary time per pass, or none (a record from before the canary)
                       "pass_canary_ms": list(d.get("pass_canary_ms") or ()) + marks
                       if len(d.get("pass_canary_ms") or ()) == len(d["pass_medians_ms"]) else None,
                       "round_fastest_ms": record_loads(d) + ([min(w.median_ms for w in got)] if got else []),
                       "confirm_passes": len(got), "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
                       "other_cpu": max([d.get("other_cpu") or 0.0] + [w.other_cpu or 0.0 for w in got]),
                       "loadavg": [round(x, 2) for x in os.getloadavg()]}
                append_json_line(meas_path, rec)
                m = Measurement.from_dict(rec)
                ev.subnet(f"{d['id']}: {m.latency_ms:.3f} ms (was {min(d['pass_medians_ms']):.3f}; "
                          f"{len(got)} more passes {', '.join(f'{w.median_ms:.3f}' for w in got)}; canary "
                          f"{', '.join(f'{c / canary.best:.2f}' for c in marks)}x its best)"
                          + ("" if settled(rec["pass_medians_ms"], rec["pass_canary_ms"] or (), canary.best)
                             else "; still unconfirmed")
                          + (f"; loads' fastest {', '.join(f'{v:.3f}' for v in rec['round_fastest_ms'])}"
                             + ("; rerun for one more load" if load_wanted(rec["round_fastest_ms"], args.loads) else "")
                             if len(rec["round_fastest_ms"]) > 1 else ""))
    except KeyboardInterrupt:
        ev.note("interrupted: subnets written so far are kept; rerun to continue")
