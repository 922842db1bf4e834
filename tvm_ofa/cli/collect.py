"""``tvm-ofa latency collect``: collect the latency predictor's training data for a target: tune subnets sampled across the
space into the target's tuning logs and measure the fully tuned subnets end to end.

Writes, under ``<log-root>/<target>/<cpu>/`` (e.g. ``tuning_logs/host-cpu/znver4/``):

- the MetaSchedule JSON database (via ``tvm_ofa.compiler.tune``, which skips workloads already
  tuned, so subnets sharing layer shapes share work);
- ``measurements.jsonl``: one line per measured subnet (arch, id, median/p90 ms, repeats, CPU,
  threads, network config, trials per task; with ``--measure-only``, each timing pass's median in
  ``pass_medians_ms`` and a canary's time before each pass in ``pass_canary_ms``: the VM runs
  1.3-2x slower for tens of seconds at a time, the canary tells those passes apart, and
  ``Measurement.latency_ms`` is the fastest pass; ``tvm-ofa latency eval`` reports how far the
  passes agree, the ceiling for any predictor).

A fastest pass may be the one pass that caught the machine at full speed, or two passes may agree
inside one slow phase: ``--confirm`` times such subnets again (up to ``--passes`` more passes, each
once the canary runs near its best) and appends the merged record. Every window of one build and
load of a library can also run slow together: ``--confirm --loads 2`` builds and loads each subnet
again until two loads agree within 5 % (a third where the first two do not).

Between tuning and measuring, ``tvm-ofa latency retime --target T`` times every workload's best
schedule again in one run (tuning-time records from different hours are not comparable).

Resumable: subnet ``i`` is drawn from ``(seed, i)``, measured subnets are skipped on a rerun, and
an interrupted tune loses at most the batch in flight. Stop with Ctrl-C or ``--hours``.

examples:
  tvm-ofa latency collect --target host-cpu --hours 8 --no-measure      # tune; resumable, long
  tvm-ofa latency collect --target host-cpu --measure-only --max-subnets 64
  tvm-ofa latency collect --target host-cpu --confirm --loads 2 --passes 6   # firm truths
  tvm-ofa latency collect --target host-cpu --max-subnets 0 --pack 3   # keep the best 3 records, write the .xz
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

RESOLUTIONS = (128, 160, 192, 224)
# a pass whose canary ran more than SLOW times the canary's best ran in a slow phase of the VM;
# a library with no other pass gets up to SLOW_ROUNDS more
SLOW = 1.10
SLOW_ROUNDS = 4
# --confirm: a pass counts as taken at full speed when the canary ran within this of its best
# (Canary.wait_for_speed's limit: the slow phases are 1.3x and more)
AT_SPEED = 1.25


HELP = "tune subnets across the space and measure them end to end: the latency predictor's data"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``tvm-ofa latency collect`` (``--target`` and ``--log-root`` come with
    every ``latency`` action)."""
    p.add_argument("--hours", type=float, default=1.0, help="stop starting new subnets after this long")
    p.add_argument("--trials-per-task", type=int, default=None,
                   help="MetaSchedule trials per workload (default: the target's tuning.trials_per_task)")
    p.add_argument("--trials-per-round", type=int, default=None, help="default: the target's")
    p.add_argument("--max-subnets", type=int, default=None, help="stop after this many subnets")
    p.add_argument("--resolutions", type=int, nargs="+", default=list(RESOLUTIONS), help="input resolutions to sample subnets at (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled subnets (default 0)")
    p.add_argument("--width-mult", type=float, default=1.0, help="network width (default 1.0)")
    p.add_argument("--n-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    p.add_argument("--repeats", type=int, default=50, help="timed repeats per measured subnet")
    p.add_argument("--no-measure", action="store_true", help="only tune")
    p.add_argument("--measure-only", action="store_true",
                   help="tune nothing: measure end to end (the extremes, then uniform samples) the subnets "
                        "whose workloads all have records, until --max-subnets are measured; run it on an "
                        "idle machine, as tuning in the background slows the timed runs several-fold")
    p.add_argument("--held-out-only", action="store_true",
                   help="--measure-only / --confirm: only subnets whose arch id hashes into the held-out "
                        "quarter (more subnets for `tvm-ofa latency eval` to score; fit never sees them)")
    p.add_argument("--loads", type=int, default=1,
                   help="--confirm: also time again subnets timed in fewer than this many builds and "
                        "loads, and those whose two loads' fastest passes are more than 5 %% apart (one "
                        "load more): all windows of one load can run slow together")
    p.add_argument("--passes", type=int, default=5,
                   help="--measure-only: time each library this many times, in rounds over a chunk of "
                        "subnets (about a second each); the record keeps each pass and their median")
    p.add_argument("--chunk", type=int, default=8,
                   help="--measure-only: subnets built, then timed together in rounds (an interrupted "
                        "run loses at most these)")
    p.add_argument("--confirm", action="store_true",
                   help="tune nothing: time again the measured subnets whose fastest pass no other pass "
                        "came within 5 %% of, with one of them taken at the canary's usual speed (held-out "
                        "ones first), up to --passes more passes each, each pass once the canary runs "
                        "near its best; appends the merged record (the latest line of a subnet is the "
                        "one read). Run it alone on the machine")
    p.add_argument("--pack", type=int, default=None, metavar="K",
                   help="at the end, keep the best K records per workload and write the .xz copies the "
                        "repository ships (alone: --max-subnets 0 --pack 3)")


def parse_args(argv=None) -> argparse.Namespace:
    """The collector's options alone (tests and scripts); the CLI adds them to ``latency collect``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="host-cpu", help="target config (path or shipped name)")
    p.add_argument("--log-root", help="root of the per-target logs (default: the user's data folder)")
    add_arguments(p)
    return p.parse_args(argv)


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
    from tvm_ofa.compiler.store import NoTuningLogsError
    from tvm_ofa.predict.dataset import build_dataset

    try:
        return {w.key for w in build_dataset(log_dir).workloads}
    except NoTuningLogsError:
        return set()


def measured_ids(path: Path) -> set[str]:
    ids = set()
    if path.exists():
        for ln in path.read_text(errors="replace").splitlines():
            try:
                ids.add(json.loads(ln)["id"])
            except (ValueError, KeyError, TypeError):
                continue
    return ids


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
    from tvm_ofa.compiler.store import open_database

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


def main(argv=None) -> int:
    return run(parse_args(argv))


def run(args: argparse.Namespace) -> int:
    from tvm_ofa.errors import ConfigError
    from tvm_ofa.targets import load_target

    if args.held_out_only and not (args.measure_only or args.confirm):
        raise ConfigError("--held-out-only goes with --measure-only or --confirm")

    cfg = load_target(args.target)
    # the runtime thread pool reads this once, at its first use
    os.environ.setdefault("TVM_NUM_THREADS", str(cfg.num_threads))
    import warnings

    import torch
    from tqdm import tqdm

    from tvm_ofa.arch import SearchSpace
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.tune import coverage, tune
    from tvm_ofa.nn.ofa_mbv3 import OFAMobileNetV3
    from tvm_ofa.predict.workloads import NetConfig, subnet_workloads
    from tvm_ofa.targets import host_provenance

    warnings.filterwarnings("ignore", category=FutureWarning)
    log_dir = cfg.log_dir(args.log_root)
    log_dir.mkdir(parents=True, exist_ok=True)
    meas_path = log_dir / "measurements.jsonl"
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
    print(f"collecting into {log_dir} (cpu {prov.get('cpu')}, {cfg.num_threads} threads"
          + ("" if args.confirm else f", {trials} trials/task") + f"); {len(done)} subnets already measured",
          flush=True)
    if args.confirm:
        return confirm(args, cfg, space, net, net_cfg, log_dir, meas_path, prov, deadline, limit)
    if args.measure_only:
        return measure_only(args, cfg, space, net, net_cfg, log_dir, meas_path, done, tuned_keys, prov,
                            trials, deadline, limit)
    bar = tqdm(total=None if args.max_subnets is None else limit, unit="subnet", dynamic_ncols=True)
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
                    bar.write("every sampled subnet's workloads have records already: nothing left to tune")
                    break
                continue
            idle = 0
            lowered = lower_module(net.extract(arch), (1, 3, arch.resolution, arch.resolution),
                                   lowering=cfg.lowering)

            def progress(ev, _arch=arch):
                bar.set_postfix_str(f"{_arch.id} tasks {ev.tasks_done}/{ev.tasks_total} "
                                    f"trials {ev.trials}/{ev.trials_budget}")

            report = tune(cfg, lowered, trials_per_task=trials, trials_per_round=args.trials_per_round,
                          log_root=args.log_root, progress=progress)
            n += 1
            bar.update(1)
            tuned_keys |= {w.key for w in subnet_workloads(arch, net_cfg)}
            if args.no_measure:
                continue
            tuned, total = coverage(cfg, lowered, args.log_root)
            if tuned < total:
                bar.write(f"{arch.id}: {total - tuned}/{total} workloads without a valid record; not measured")
                continue
            m = measure(cfg, lowered, log_dir, args.repeats)
            rec = measurement_record(arch, m, cfg, prov, net_cfg, trials, task_sum_ms=report.estimated_ms)
            with open(meas_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            done.add(arch.id)
            bar.write(f"{arch.id}: {m.median_ms:.3f} ms (task sum {report.estimated_ms or 0:.3f} ms, "
                      f"{report.tasks_tuned} tasks tuned, {report.tasks_skipped} reused)")
    except KeyboardInterrupt:
        bar.write("interrupted: records written so far are kept; rerun to continue")
    finally:
        bar.close()
    if args.pack:
        from tvm_ofa.compiler.store import pack

        before, after = pack(log_dir, args.pack)
        print(f"packed {log_dir}: {before} -> {after} records (best {args.pack} per workload), .xz written")
    return 0


def measure_only(args, cfg, space, net, net_cfg, log_dir, meas_path, done, tuned_keys, prov, trials,
                 deadline, limit) -> int:
    import numpy as np
    from tqdm import tqdm

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
            with open(meas_path, "a") as f:
                f.write(json.dumps(measurement_record(arch, lat, cfg, prov, net_cfg, trials,
                                                      pass_canary_ms=[round(c, 4) for c in mark])) + "\n")
            bar.update(1)
            bar.write(f"{arch.id}: {min(lat.passes_ms or (lat.median_ms,)):.3f} ms"
                      + (f" (passes {', '.join(f'{v:.3f}' for v in lat.passes_ms)}; canary "
                         f"{', '.join(f'{c / canary[0].best:.2f}' for c in mark)}x its best)" if lat.passes_ms else "")
                      + (f"; other processes used up to {lat.other_cpu:.0%} of the CPUs: timings inflated"
                         if (lat.other_cpu or 0.0) > BUSY else ""))
        chunk.clear()

    bar = tqdm(total=None if args.max_subnets is None else limit, unit="subnet", dynamic_ncols=True)
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
                from tvm_ofa.compiler.store import open_database

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
        bar.write("interrupted: measurements written so far are kept; rerun to continue")
    finally:
        bar.close()
    return 0


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


def confirm(args, cfg, space, net, net_cfg, log_dir, meas_path, prov, deadline, limit) -> int:
    import numpy as np
    from tqdm import tqdm

    from tvm_ofa.arch import ArchConfig
    from tvm_ofa.compiler.store import open_database
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.measure import Canary, load_wanted
    from tvm_ofa.predict.dataset import Measurement, record_loads, record_passes

    todo, best = unconfirmed(meas_path, net_cfg, prov.get("cpu"), args.loads, args.held_out_only)
    todo = todo[:limit]
    print(f"{len(todo)} measured {'held-out ' if args.held_out_only else ''}subnets whose fastest pass no "
          f"other pass confirms at the canary's usual speed, or timed in fewer than {args.loads} builds "
          "and loads that agree", flush=True)
    if not todo:
        return 0
    db = open_database(log_dir).db
    small = space.smallest(min(args.resolutions))
    # the same canary library as --measure-only, scored against the best any record saw, so that
    # a run started in a slow phase does not take that phase for full speed
    timer = build_timer(cfg, lower_module(net.extract(small), (1, 3, small.resolution, small.resolution),
                                          lowering=cfg.lowering), db, 20)
    canary = Canary(lambda: timer(min_seconds=0.1, tries=1).median_ms)
    canary.best = best
    bar = tqdm(total=len(todo), unit="subnet", dynamic_ncols=True)
    try:
        for start in range(0, len(todo), args.chunk):
            if time.monotonic() > deadline:
                bar.write("--hours reached: rerun to continue")
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
                with open(meas_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
                m = Measurement.from_dict(rec)
                bar.update(1)
                bar.write(f"{d['id']}: {m.latency_ms:.3f} ms (was {min(d['pass_medians_ms']):.3f}; "
                          f"{len(got)} more passes {', '.join(f'{w.median_ms:.3f}' for w in got)}; canary "
                          f"{', '.join(f'{c / canary.best:.2f}' for c in marks)}x its best)"
                          + ("" if settled(rec["pass_medians_ms"], rec["pass_canary_ms"] or (), canary.best)
                             else "; still unconfirmed")
                          + (f"; loads' fastest {', '.join(f'{v:.3f}' for v in rec['round_fastest_ms'])}"
                             + ("; rerun for one more load" if load_wanted(rec["round_fastest_ms"], args.loads) else "")
                             if len(rec["round_fastest_ms"]) > 1 else ""))
    except KeyboardInterrupt:
        bar.write("interrupted: subnets written so far are kept; rerun to continue")
    finally:
        bar.close()
    return 0
