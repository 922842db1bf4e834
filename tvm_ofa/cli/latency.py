"""``tvm-ofa latency``: fit, query and evaluate the per-target latency predictor."""
from __future__ import annotations

import argparse
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from tvm_ofa.cli._common import LOG_ROOT_HELP, Result

REPORTS = True
HELP = "predict a subnet's tuned latency on a target from its tuning logs (collect / retime / fit / predict / eval)"
DESCRIPTION = """Learn the latency of tuned subnets from a target's tuning logs
(tuning_logs/<target>/<cpu>/) and predict it for subnets never compiled.

  collect  tune subnets sampled across the space into the target's logs and measure fully tuned
           ones end to end (the predictor's training data; resumable, hours)
  retime   time the best schedule of every tuned workload again, in one run at the machine's
           usual speed (a canary kernel spots the VM's slow phases), into retimed.json: tuning
           records taken hours apart on a shared machine are not comparable; `fit` and `eval`
           prefer the re-timed values (resumable; minutes for hundreds of workloads)
  fit      train the XGBoost predictor; writes latency_predictor.<network>.json next to the logs
  predict  predicted latency of one subnet
  eval     accuracy on held-out subnets (MAPE, Kendall tau, share within 10 %) of the XGBoost
           model and two baselines (MACs, lookup table), then the same over every measured
           subnet, 5-fold cross-validated; writes a scatter plot

Subnets whose arch id hashes into the held-out quarter are never used by `fit`, so `eval`
scores subnets whose end-to-end measurements the model has not seen.

examples:
  tvm-ofa latency collect --target host-cpu --hours 8 --no-measure
  tvm-ofa latency collect --target host-cpu --measure-only --max-subnets 64
  tvm-ofa latency retime --target host-cpu
  tvm-ofa latency fit --target targets/host-cpu.yaml
  tvm-ofa latency predict --target host-cpu --arch arch.json
  tvm-ofa latency eval --target host-cpu --plot latency_eval.png"""

_SUBVERBS = {
    "collect": "tune subnets across the space and measure them end to end (the predictor's data)",
    "retime": "time every tuned workload's best schedule again, in one run",
    "fit": "train the predictor from the logs and measurements",
    "predict": "predicted latency of one subnet",
    "eval": "score the predictor and two baselines on held-out subnets",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tvm_ofa.cli import collect

    sub = parser.add_subparsers(dest="action", metavar="<action>")
    sub.required = True
    for name, text in _SUBVERBS.items():
        p = sub.add_parser(name, help=text, description=collect.__doc__ if name == "collect" else text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--target", default="host-cpu", metavar="YAML",
                       help="target config (a path or a shipped name; default: host-cpu)")
        p.add_argument("--log-root", metavar="DIR", help=LOG_ROOT_HELP)
        if name == "collect":
            collect.add_arguments(p)
        else:
            _add_model_arguments(p)


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    from tvm_ofa.cli._common import ARCH_HELP

    parser.add_argument("--arch", metavar="ARCH", help=f"predict: {ARCH_HELP}")
    parser.add_argument("--artifacts", nargs="*", default=(), metavar="DIR",
                        help="artifact folders whose metadata.json latency is used as measurements too")
    parser.add_argument("--width-mult", type=float, help="network width (default: the measured one, else 1.0)")
    parser.add_argument("--n-classes", type=int, help="classifier outputs (default: measured, else 1000)")
    parser.add_argument("--stem-stride", type=int, help="stem stride (default: measured, else 2)")
    parser.add_argument("--batch", type=int, help="batch size (default: measured, else 1)")
    parser.add_argument("--resolutions", type=int, nargs="+", metavar="PX",
                        help="input resolutions of the space to predict for (default: those of the "
                             "measured subnets, else the paper's 128..224)")
    parser.add_argument("--use-all", action="store_true",
                        help="fit: also use the held-out subnets' measurements (eval is then optimistic)")
    parser.add_argument("--plot", metavar="PNG", help="eval: scatter plot path "
                        "(default: latency_eval.png in the log folder)")


def _net_config(args: argparse.Namespace, measurements: list) -> Any:
    from tvm_ofa.predict.workloads import NetConfig

    common = Counter(m.net for m in measurements).most_common(1)
    base = common[0][0] if common else NetConfig()
    over = {"width_mult": args.width_mult, "n_classes": args.n_classes, "stem_stride": args.stem_stride,
            "batch": args.batch}
    return NetConfig.from_dict({**base.to_dict(), **{k: v for k, v in over.items() if v is not None}})


def _space(args: argparse.Namespace, measurements: list) -> Any:
    from tvm_ofa.arch import SearchSpace

    res = args.resolutions or sorted({m.arch.resolution for m in measurements})
    return SearchSpace(resolutions=tuple(sorted(set(res)))) if res else SearchSpace()


def _load_data(args: argparse.Namespace, cfg: Any, log_dir: Path) -> tuple[Any, list, Any]:
    from tvm_ofa.compiler.store import DatabaseWarning
    from tvm_ofa.predict.dataset import build_dataset, load_measurements

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatabaseWarning)
        data = build_dataset(log_dir)
    meas, bad = load_measurements(log_dir, args.artifacts, cpu=cfg.host_cpu())
    net = _net_config(args, meas)
    print(f"logs        {log_dir}")
    print(f"workloads   {len(data)} OFA workloads from {data.total_records} valid records"
          + (f", {data.retimed} of them re-timed in one run (retimed.json)" if data.retimed else ""))
    skipped = {"unreadable lines": data.skipped_lines, "foreign workloads": data.foreign_workloads,
               "failed records": data.failed_records, "unusable or other-CPU measurements": bad}
    if any(skipped.values()):
        print("skipped     " + ", ".join(f"{n} {what}" for what, n in skipped.items() if n))
    print(f"measured    {len(meas)} compiled subnets end to end")
    return data, meas, net


def _setup(args: argparse.Namespace, match: dict | None = None, fastest: bool = False) -> tuple[Any, Path, dict]:
    """The target's lowering for the network ``match`` describes (``choose_lowering``), or, for the
    actions that make, time and score a predictor's data (``fastest``: collect, retime, fit, eval),
    its fastest lowering for this CPU; its logs and provenance."""
    from tvm_ofa.cli._common import chosen_target
    from tvm_ofa.targets import fastest_lowering, host_provenance, load_target

    cfg = load_target(args.target)
    cfg = fastest_lowering(cfg) if fastest else chosen_target(cfg, match, args.log_root)
    return cfg, cfg.log_dir(args.log_root), host_provenance(cfg)


def _fit(args: argparse.Namespace) -> int:
    from tvm_ofa.predict.dataset import is_held_out
    from tvm_ofa.predict.latency import fit_predictor

    cfg, log_dir, prov = _setup(args, fastest=True)
    data, meas, net = _load_data(args, cfg, log_dir)
    used = meas if args.use_all else [m for m in meas if not is_held_out(m.arch)]
    space = _space(args, meas)
    pred = fit_predictor("xgboost", data, used, space=space, net=net)
    path = pred.save(log_dir, prov)
    scale, c0, c1 = pred.calibration
    print(f"calibration {scale:.3f} x task sum + {c0:.3f} ms + {c1 * 1e3:.1f} us per task "
          f"(from {pred.meta['n_measurements']} measured subnets)")
    if not pred.meta["n_measurements"]:
        print("note        no end-to-end measurements: predictions are the sum of tuned task times "
              "(run `tvm-ofa latency collect` to calibrate)")
    if len(data) < 50:
        print(f"note        only {len(data)} tuned workloads: predictions for shapes far from them "
              "are unreliable")
    print(f"space       resolutions {', '.join(map(str, space.resolutions))}")
    print(f"wrote       {path}")
    return Result({"target": cfg.name, "cpu": prov.get("cpu"), "predictor": str(path),
                   "measured_subnets": pred.meta["n_measurements"], "workloads": len(data),
                   "resolutions": list(space.resolutions), "calibration": list(pred.calibration)})


def _predict(args: argparse.Namespace) -> int:
    from tvm_ofa.arch import ArchConfig
    from tvm_ofa.cli._common import network_match, resolve_arch
    from tvm_ofa.errors import ArchError
    from tvm_ofa.predict.latency import load_predictor

    if not args.arch:
        raise ArchError("latency predict: --arch is required")
    match = network_match(args) or {}
    given = None if args.arch in ("smallest", "largest") or args.arch.startswith("random") \
        else ArchConfig.from_json(args.arch)
    if given is not None:
        # the arch names its resolution: that picks the network's predictor and its space
        match.setdefault("resolutions", [given.resolution])
    cfg, log_dir, prov = _setup(args, match or None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = load_predictor(log_dir, prov, match or None)
    for w in caught:
        print(f"tvm-ofa latency: warning: {w.message}", file=sys.stderr)
    arch = pred.space.validate(given) if given is not None else resolve_arch(args.arch, pred.space)
    ms = float(pred.predict([arch])[0])
    ops, n_ops = pred.op_sum_ms([arch])
    untuned = float(pred.untuned_ms([arch])[0])
    outside = pred.extrapolated([arch.resolution])
    fitted = pred.fitted_resolutions
    info = {"arch_id": arch.id, "arch": arch.to_dict(), "target": cfg.name, "cpu": prov.get("cpu"),
            "predicted_ms": ms, "tasks": int(n_ops[0]), "task_sum_ms": float(ops[0]),
            "untuned_task_ms": untuned, "extrapolated": bool(outside),
            "fitted_resolutions": list(fitted), "net": pred.net.to_dict()}
    if outside:
        print(f"tvm-ofa latency: note: resolution {arch.resolution} is outside the measured range "
              f"{min(fitted)}..{max(fitted)} px: an extrapolation", file=sys.stderr)
    print(f"subnet      {arch.id}")
    print(f"target      {cfg.name} ({prov.get('cpu')})")
    print(f"predicted   {ms:.3f} ms  ({int(n_ops[0])} tasks, {float(ops[0]):.3f} ms of task time)")
    if untuned > 0:
        print(f"untuned     {untuned:.3f} ms of the task time ({100 * untuned / max(float(ops[0]), 1e-12):.0f} %) "
              "is predicted for workloads with no record here: a compile gives them their tuned neighbours' "
              "schedules, slower than tuning them (tvm-ofa tune)")
    return Result(info)


def _scatter(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    lo = min(min(y.min(), p.min()) for y, p in results.values())
    hi = max(max(y.max(), p.max()) for y, p in results.values())
    for name, (y, p) in results.items():
        ax.scatter(y, p, s=12, alpha=0.7, label=name)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title("held-out subnets")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _eval(args: argparse.Namespace) -> int:
    import numpy as np
    from scipy.stats import kendalltau

    from tvm_ofa.predict.dataset import is_held_out, key_fold
    from tvm_ofa.predict.latency import (FITTABLE, LatencyPredictorError, cross_validate, evaluate,
                                         fit_predictor, repeatability)

    cfg, log_dir, prov = _setup(args, fastest=True)
    data, meas, net = _load_data(args, cfg, log_dir)
    space = _space(args, meas)
    train = [m for m in meas if not is_held_out(m.arch)]
    test = [m for m in meas if is_held_out(m.arch) and m.net == net]
    out: dict[str, Any] = {"target": cfg.name, "cpu": prov.get("cpu"), "workloads": len(data),
                           "records": data.total_records, "train_subnets": len(train),
                           "test_subnets": len(test),
                           # a truth whose fastest pass no other pass came near may be a lucky pass
                           # or the one pass that caught the machine at full speed
                           "test_confirmed": sum(m.confirmed for m in test), "subnets": {}, "unseen_workloads": {},
                           "subnets_unseen_workloads": {}, "subnets_unseen_resolutions": {}, "cross_validated": {},
                           "cross_validated_unseen_workloads": {}, "repeatability": {}}
    # task level: a quarter of the workloads (by key) hidden from the model
    hide = np.array([key_fold(w.key, 4) == 0 for w in data.workloads])
    if hide.any() and (~hide).any():
        for kind in FITTABLE:
            p = fit_predictor(kind, data.subset(~hide), space=space, net=net)
            y = 1e3 * data.latency_s[hide]
            yp = p.workload_ms([w for w, h in zip(data.workloads, hide) if h])
            err = np.abs(yp - y) / y
            out["unseen_workloads"][kind] = {
                "n": int(hide.sum()), "mape": float(100 * err.mean()),
                "kendall_tau": float(kendalltau(yp, y).statistic) if hide.sum() > 1 else float("nan"),
                "within_10pct": float((err <= 0.1).mean())}
    scatter = {}
    # the resolutions the calibration saw end to end; a held-out subnet at another one is what
    # a search over the whole space mostly asks about
    seen_px = {m.arch.resolution for m in train}
    off_grid = [m for m in test if m.arch.resolution not in seen_px]
    if test:
        for kind in FITTABLE:
            p = fit_predictor(kind, data, train, space=space, net=net)
            out["subnets"][kind] = evaluate(p, test)
            if off_grid:
                out["subnets_unseen_resolutions"][kind] = evaluate(p, off_grid)
            scatter[kind] = (np.array([m.latency_ms for m in test]), p.predict([m.arch for m in test]))
            if hide.any() and (~hide).any():
                # the same subnets when a quarter of the space's shapes were never tuned: what a
                # predictor adds beyond the records it was given
                q = fit_predictor(kind, data.subset(~hide), train, space=space, net=net)
                out["subnets_unseen_workloads"][kind] = evaluate(q, test)
        plot = Path(args.plot) if args.plot else log_dir / "latency_eval.png"
        _scatter(scatter, plot)
        out["plot"] = str(plot)
        # every measured subnet, each scored by a calibration that never saw it (more pairs
        # than the held-out quarter alone, so a one-pair difference in tau is not left to chance)
        for kind in FITTABLE:
            out["cross_validated"][kind] = cross_validate(fit_predictor(kind, data, space=space, net=net), meas)
            if hide.any() and (~hide).any():
                out["cross_validated_unseen_workloads"][kind] = cross_validate(
                    fit_predictor(kind, data.subset(~hide), space=space, net=net), meas)
        again = repeatability(test)
        if again["n"]:
            out["repeatability"]["passes"] = again
    elif not out["unseen_workloads"]:
        raise LatencyPredictorError(
            f"{log_dir}: nothing to evaluate on: no held-out end-to-end measurements and too few "
            "workloads; run `tvm-ofa latency collect --measure-only` to measure subnets")
    for section, title in (("unseen_workloads", "tasks never tuned (a quarter of the workloads, "
                                                 "hidden from the model)"),
                           ("subnets", f"held-out subnets end to end ({len(test)}, {out['test_confirmed']} "
                                       "with a second timing pass within 5 % of their fastest; "
                                       f"{len(train)} others calibrate)"),
                           ("subnets_unseen_resolutions", f"of those, the {len(off_grid)} at resolutions no "
                                                          "calibrating subnet was measured at"),
                           ("subnets_unseen_workloads", "the same held-out subnets, fitted without the "
                                                        "quarter of the workloads hidden above"),
                           ("cross_validated", "every measured subnet, 5-fold cross-validated: each "
                                               "predicted by a calibration fitted on the other folds"),
                           ("cross_validated_unseen_workloads", "the same, fitted without the quarter of the "
                                                                "workloads hidden above"),
                           ("repeatability", "the same held-out subnets, their even-numbered timing passes as the "
                                             "prediction of their odd-numbered ones (the noise every predictor is "
                                             "scored against)")):
        if not out[section]:
            if section == "subnets":
                print("\nno held-out end-to-end measurements: run `tvm-ofa latency collect --measure-only`")
            continue
        print(f"\n{title}")
        print(f"  {'predictor':<10} {'n':>5} {'MAPE %':>8} {'tau':>6} {'within 10 %':>12} "
              f"{'bias fastest 1/3':>17} {'bias slowest 1/3':>17}")
        for kind, s in out[section].items():
            if s.get("n"):
                bias = " ".join(f"{s[k]:>+16.1f}%" if k in s else f"{'':>17}"
                               for k in ("bias_small_pct", "bias_large_pct"))
                print(f"  {kind:<10} {s['n']:>5} {s['mape']:>8.1f} {s['kendall_tau']:>6.3f} "
                      f"{100 * s['within_10pct']:>11.0f}% {bias}")
    if "plot" in out:
        print(f"\nplot        {out['plot']}")
    return Result(out)


# sub-verb -> handler
def _retime(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tvm_ofa.compiler.retime import retime_records
    from tvm_ofa.compiler.store import RETIMED_FILE

    cfg, log_dir, _ = _setup(args, fastest=True)
    bars: list = []  # opened at the first progress report: a refusal prints its one line alone

    def progress(p: Any) -> None:
        if not bars:
            bars.append(tqdm(unit="workload", dynamic_ncols=True))
        bar = bars[0]
        bar.total = p.total
        bar.n = p.done
        bar.set_postfix_str(f"machine at {p.slowdown:.2f}x its fastest, {p.retried_batches} batches retaken")
        bar.refresh()

    try:
        rep = retime_records(cfg, log_dir, progress=progress)
    finally:
        for bar in bars:
            bar.close()
    print(f"re-timed    {rep.retimed} workloads now, {rep.already} before, of {rep.workloads} "
          f"({rep.seconds:.0f} s)")
    if rep.unaccepted:
        print(f"note        {rep.unaccepted} workloads were only timed while the machine ran slow: they keep "
              "their tuning-time records; rerun to try them again")
    print(f"wrote       {log_dir / RETIMED_FILE}")
    return Result({"target": cfg.name, "log_dir": str(log_dir), "retimed_now": rep.retimed,
                   "retimed_before": rep.already, "workloads": rep.workloads, "unaccepted": rep.unaccepted,
                   "seconds": rep.seconds})


def _collect(args: argparse.Namespace) -> Result:
    from tvm_ofa.cli import collect
    from tvm_ofa.compiler.store import MEASUREMENTS_FILE
    from tvm_ofa.predict.collect import measured_ids

    status = collect.run(args)
    cfg, log_dir, _ = _setup(args, fastest=True)
    return Result({"target": cfg.name, "log_dir": str(log_dir),
                   "measured_subnets": len(measured_ids(log_dir / MEASUREMENTS_FILE))}, status)


_ACTIONS = {"collect": _collect, "retime": _retime, "fit": _fit, "predict": _predict, "eval": _eval}


def run(args: argparse.Namespace) -> int:
    return _ACTIONS[args.action](args)
