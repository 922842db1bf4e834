#!/usr/bin/env python
"""How good is ``tvm-ofa calibrate`` after N minutes on a machine the logs never saw?

The source is a target's fully collected folder (``tuning_logs/<target>/<cpu>/`` with its fitted
predictor). The new machine is this one under another configuration (``--threads``, default 1):
the source folder is copied under another name into a scratch log root, so the new machine has
no logs of its own and calibrates from it. Held-out subnets (uniform over the space, none in the
calibration set) are measured on the new machine with the schedules it builds with (in
``--truth-rounds`` sweeps of fresh builds and loads, minutes apart: all the timing windows of one
load can run slow together on a shared VM, docs/BENCHMARKS.md, calibration run 5), then
calibration runs in increments (1, 5, 10, 30, 60 minutes of calibration in total) and after each
the calibrated predictor is scored beside two baselines on the same subnets:

- ``source``: the source predictor used unchanged;
- ``macs``: latency proportional to MACs (plus a per-network constant), fitted on the same
  calibration measurements.

Writes ``<out>/calibration_benchmark.json`` and ``.png`` (resumable: the scratch root keeps
every measurement), and prints a Markdown table.

    python bench/calibration_benchmark.py --source tuning_logs/host-cpu/znver4 --threads 1
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="host-cpu")
    p.add_argument("--source", default=None, help="source log folder (default: this CPU's folder of the target)")
    p.add_argument("--threads", type=int, default=1, help="thread count of the simulated new machine")
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 10, 20],
                   help="cumulative calibration minutes at which to score")
    p.add_argument("--tune", action="store_true",
                   help="let calibration tune here too (step 5). Off by default: tuning changes the "
                        "schedules builds use, so the held-out truth measured before it goes stale")
    p.add_argument("--no-retime", action="store_true",
                   help="calibrate without timing the borrowed schedules here (as before that step existed)")
    p.add_argument("--held-out", type=int, default=20, help="held-out subnets measured on the new machine")
    p.add_argument("--truth-rounds", type=int, default=2,
                   help="measure every held-out subnet this many times, each a fresh build and load, in "
                        "sweeps minutes apart (one more for a subnet whose sweeps' fastest passes are more "
                        "than 5 %% apart): one load's passes can all run slow together")
    p.add_argument("--subnets", type=int, default=40,
                   help="calibration subnets at most (the minutes decide how many get measured)")
    p.add_argument("--scratch", default="bench/out/calibration", help="scratch log root (resumable)")
    p.add_argument("--out", default="bench/out", help="where the JSON and PNG go")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def merge_rounds(old: dict | None, new: dict) -> dict:
    """A held-out subnet's record after one more sweep: every pass of every sweep (the truth is the
    fastest), and the fastest pass of each sweep in ``round_fastest_ms``."""
    from tvm_ofa.predict.dataset import record_loads, record_passes

    new_fast = min(record_passes(new))
    if old is None:
        return {**new, "round_fastest_ms": [new_fast]}
    import numpy as np

    passes = record_passes(old) + record_passes(new)
    return {**new, "median_ms": float(np.median(passes)), "pass_medians_ms": passes,
            "round_fastest_ms": record_loads(old) + [new_fast]}


def truth_wanted(rec: dict | None, sweep: int, rounds: int) -> bool:
    """Whether sweep ``sweep`` (0-based) measures this subnet: until it has ``rounds`` sweeps, then
    one more if the fastest passes of its two best sweeps are more than 5 % apart."""
    from tvm_ofa.compiler.measure import load_wanted

    fastest = (rec.get("round_fastest_ms") or [0]) if rec else []
    return len(fastest) <= sweep and load_wanted(fastest, rounds)


def macs_baseline(measurements, space, net):
    """Fitted ``a * MACs + b`` on the calibration measurements (least squares on relative error)."""
    import numpy as np

    from tvm_ofa.nn.profile import count_macs

    x = np.array([count_macs(m.arch, net.width_mult, net.n_classes, net.stem_stride) for m in measurements], float)
    y = np.array([m.latency_ms for m in measurements])
    a = np.stack([x, np.ones_like(x)], 1) / y[:, None]
    coef, *_ = np.linalg.lstsq(a, np.ones_like(y), rcond=None)
    return lambda archs: coef[0] * np.array([count_macs(a, net.width_mult, net.n_classes, net.stem_stride)
                                             for a in archs], float) + coef[1]


def scores(pred_ms, true_ms) -> dict:
    import numpy as np
    from scipy.stats import kendalltau

    p, y = np.asarray(pred_ms, float), np.asarray(true_ms, float)
    err = np.abs(p - y) / y
    return {"mape": float(100 * err.mean()), "kendall_tau": float(kendalltau(p, y).statistic),
            "within_10pct": float((err <= 0.1).mean())}


def main(argv=None) -> int:
    args = parse_args(argv)
    from tvm_ofa.targets import load_target, parse_target

    base = load_target(args.target)
    source = Path(args.source) if args.source else base.log_dir()
    raw = {"name": base.name, "target": dict(base.target), "threads": args.threads,
           "runner": dict(base.runner), "tuning": dict(base.tuning)}
    cfg = parse_target(raw, f"{base.path} (threads: {args.threads})")
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    import numpy as np

    from tvm_ofa.predict.calibrate import (_untrained, calibrate, calibration_set, fit, load_source,
                                           make_canary, measure_subnet, min_minutes, scheduled_keys,
                                           source_archs)
    from tvm_ofa.predict.dataset import Measurement
    from tvm_ofa.predict.workloads import subnet_workloads
    from tvm_ofa.targets import host_provenance

    scratch = Path(args.scratch)
    src_copy = scratch / cfg.name / f"{source.name}-source"
    if not src_copy.exists():
        src_copy.mkdir(parents=True)
        for f in source.iterdir():
            if f.is_file() and not f.name.startswith("calibration"):
                shutil.copy2(f, src_copy / f.name)
    here = cfg.log_dir(scratch)
    prov = host_provenance(cfg)
    src_pred = load_source(src_copy.resolve(), prov)
    net = _untrained(src_pred)
    info = {"dir": str(src_copy.resolve())}

    # held-out: uniform samples with a schedule for every workload, outside the calibration set
    covered = scheduled_keys(src_copy, here)
    cal_ids = {a.id for a in calibration_set(src_pred.space, src_pred, args.subnets, seed=args.seed,
                                             covered=covered, extra=source_archs(src_copy))}
    rng = np.random.default_rng([args.seed, 99])
    held_path = scratch / "held_out.jsonl"
    held = {d["id"]: d for d in (json.loads(x) for x in held_path.read_text().splitlines())} \
        if held_path.exists() else {}
    want, tries = [], 0
    while len(want) < args.held_out and tries < 100_000:
        a = src_pred.space.sample(rng)
        tries += 1
        if a.id in cal_ids or any(w.key not in covered for w in subnet_workloads(a, src_pred.net)):
            continue
        want.append(a)
    here.mkdir(parents=True, exist_ok=True)
    (here / "calibration.json").write_text(json.dumps({"source_dir": str(src_copy.resolve())}))
    canary = None
    for sweep in range(args.truth_rounds + 1):
        for i, a in enumerate(want):
            if not truth_wanted(held.get(a.id), sweep, args.truth_rounds):
                continue
            if canary is None:
                canary = make_canary(cfg, src_pred, net, scratch)
            m = merge_rounds(held.get(a.id), measure_subnet(cfg, a, net, src_pred, scratch, 30, canary=canary))
            held[a.id] = m
            with open(held_path, "a") as f:  # the latest line of a subnet is the one read
                f.write(json.dumps(m) + "\n")
            print(f"held-out sweep {sweep + 1}, {i + 1}/{len(want)} {a.id}: fastest pass of each sweep "
                  f"{', '.join(f'{v:.3f}' for v in m['round_fastest_ms'])} ms", flush=True)
    truth = [Measurement.from_dict(held[a.id]) for a in want]
    y = [m.latency_ms for m in truth]

    state_path = scratch / "progress.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {"rows": []}
    spent = sum(r["minutes_run"] for r in state["rows"])
    for total in args.minutes:
        if any(abs(r["minutes"] - total) < 1e-6 for r in state["rows"]):
            continue
        step = max(total - spent, 0.0)
        t0 = time.monotonic()
        if step > 0:
            calibrate(cfg, minutes=max(step, min_minutes(here)), log_root=scratch, n_subnets=args.subnets,
                      seed=args.seed, repeats=30, tune=args.tune, retime=not args.no_retime)
        ran = (time.monotonic() - t0) / 60
        spent += ran
        pred, ms = fit(src_pred, here, info)
        row = {"minutes": total, "minutes_run": ran, "calibration_subnets": len(ms),
               "own_workloads": len(pred.local_ms), "timed_here": len(pred.here_ms),
               "calibrated": scores(pred.predict([m.arch for m in truth]), y),
               "source": scores(src_pred.predict([m.arch for m in truth]), y),
               "macs": scores(macs_baseline(ms, src_pred.space, src_pred.net)([m.arch for m in truth]), y)
               if len(ms) >= 2 else None}
        state["rows"].append(row)
        state_path.write_text(json.dumps(state, indent=1))
        print(json.dumps(row), flush=True)

    # subnets both machines measured (the calibration set starts from the source's): does the new
    # machine rank them as the source machine did, and by what factor is it faster?
    from scipy.stats import kendalltau

    from tvm_ofa.predict.calibrate import read_measurements
    from tvm_ofa.predict.dataset import load_measurements

    theirs = {m.arch.id: m.latency_ms for m in load_measurements(src_copy)[0]}
    mine = {d["id"]: Measurement.from_dict(d).latency_ms for d in read_measurements(here)}
    both = sorted(set(theirs) & set(mine), key=lambda k: theirs[k])
    shared = None
    if len(both) >= 2:
        ratio = [mine[k] / theirs[k] for k in both]
        shared = {"n": len(both), "kendall_tau": float(kendalltau([theirs[k] for k in both],
                                                                  [mine[k] for k in both]).statistic),
                  "ratio_min": min(ratio), "ratio_max": max(ratio),
                  "pairs_ms": [[k, theirs[k], mine[k]] for k in both]}
    # the truth's own noise: each held-out subnet's even-numbered timing windows as the prediction
    # of its odd-numbered ones (no model scores better than this, except by chance)
    from tvm_ofa.predict.latency import repeatability

    noise = repeatability(truth)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"command": "python " + " ".join(sys.argv), "source": str(source), "source_cpu": src_pred.meta.get("cpu"),
           "source_threads": src_pred.meta.get("threads"), "new_machine": {"cpu": prov.get("cpu"),
                                                                          "threads": args.threads},
           "held_out": len(truth), "date": time.strftime("%Y-%m-%d"), "loadavg": os.getloadavg(),
           "measured_on_both": shared, "truth_repeatability": noise, **state}
    (out / "calibration_benchmark.json").write_text(json.dumps(doc, indent=1))
    _plot(state["rows"], out / "calibration_benchmark.png")
    print("\n| calibration min | subnets | own workloads | borrowed timed here | calibrated MAPE / tau / "
          "within 10 % | source unchanged | MACs-proportional |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in sorted(state["rows"], key=lambda r: r["minutes"]):
        def f(s):
            return "-" if not s else f"{s['mape']:.1f} % / {s['kendall_tau']:.3f} / {100 * s['within_10pct']:.0f} %"
        print(f"| {r['minutes']:g} | {r['calibration_subnets']} | {r['own_workloads']} | "
              f"{r.get('timed_here', 0)} | {f(r['calibrated'])} | "
              f"{f(r['source'])} | {f(r['macs'])} |")
    if shared:
        print(f"\nsubnets measured on both machines: {shared['n']}, Kendall tau between the two machines' "
              f"timings {shared['kendall_tau']:.3f}, new/source time ratio {shared['ratio_min']:.2f}-"
              f"{shared['ratio_max']:.2f}")
    if noise.get("n"):
        print(f"\nheld-out truth, even-numbered timing windows against odd-numbered ones ({noise['n']} subnets): "
              f"MAPE {noise['mape']:.1f} %, tau {noise['kendall_tau']:.3f}, "
              f"{100 * noise['within_10pct']:.0f} % within 10 %")
    print(f"\nwrote {out / 'calibration_benchmark.json'} and {out / 'calibration_benchmark.png'}")
    return 0


def _plot(rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(rows, key=lambda r: r["minutes"])
    x = [r["minutes"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for key, label in (("calibrated", "calibrated"), ("source", "source unchanged"), ("macs", "MACs, fitted")):
        axes[0].plot(x, [r[key]["mape"] if r[key] else float("nan") for r in rows], "o-", label=label)
        axes[1].plot(x, [r[key]["kendall_tau"] if r[key] else float("nan") for r in rows], "o-", label=label)
    axes[0].set_ylabel("MAPE (%)")
    axes[1].set_ylabel("Kendall tau")
    for ax in axes:
        ax.set_xlabel("calibration minutes")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
