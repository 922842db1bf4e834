"""``tvm-ofa calibrate``: a latency predictor for a machine the shipped logs never saw."""
from __future__ import annotations

import argparse
import sys

from tvm_ofa.cli._common import LOG_ROOT_HELP, add_network_args, network_match

REPORTS = True
HELP = "calibrate the latency predictor on a machine whose CPU has no logs (minutes, resumable)"
DESCRIPTION = """Make this machine (or the RPC device of the target) usable for search in minutes:
borrow the schedules of the closest CPU that has logs, measure a few deliberately chosen subnets
end to end (the extremes and a space-filling sample, for up to half the budget), time the
borrowed schedules here (the workloads that carry the most predicted latency first), fit this
machine's predictor from the source's and all that, and spend the time left measuring the rest of
the sample and tuning the workloads that carry the most predicted latency.
Logs stay per CPU (tuning_logs/<target>/<cpu>/). Interrupt at any time: a rerun continues.

examples:
  tvm-ofa calibrate --target targets/host-cpu.yaml --minutes 10
  tvm-ofa calibrate --target my-board.yaml --source tuning_logs/host-cpu/znver4 --minutes 30"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="host-cpu", metavar="YAML",
                        help="target config file or shipped name (default: host-cpu)")
    parser.add_argument("--minutes", type=float, default=10.0, help="time budget of this run (default 10)")
    parser.add_argument("--source", metavar="DIR",
                        help="log folder of the machine to start from (default: the closest CPU "
                             "with a predictor under the same target)")
    parser.add_argument("--subnets", type=int, default=16, help="subnets measured end to end (default 16)")
    parser.add_argument("--no-retime", action="store_true",
                        help="do not time the borrowed schedules here (scale the source's times instead)")
    parser.add_argument("--no-tune", action="store_true", help="measure and fit only; tune nothing here")
    parser.add_argument("--trials", type=int, metavar="N",
                        help="tuning trials per workload (default: half the target's, at least 8)")
    parser.add_argument("--log-root", metavar="DIR", help=LOG_ROOT_HELP)
    parser.add_argument("--seed", type=int, default=0, help="seed of the calibration subnets (default 0)")
    add_network_args(parser, "the source's predictor to carry over, when its folder holds several")


def run(args: argparse.Namespace) -> int:
    from tvm_ofa.cli._common import chosen_target
    from tvm_ofa.targets import host_provenance, load_target

    cfg = chosen_target(load_target(args.target), network_match(args), args.log_root)
    prov = host_provenance(cfg)
    print(f"machine     {prov.get('cpu') or cfg.name}, {prov.get('threads')} threads -> {cfg.log_dir(args.log_root)}")
    report = run_calibration(cfg, args.minutes, log_root=args.log_root, source_dir=args.source,
                             n_subnets=args.subnets, seed=args.seed, tune=not args.no_tune,
                             retime=not args.no_retime,
                             trials_per_task=args.trials, match=network_match(args))
    f = ", ".join(f"{g} x{v:.2f}" for g, v in report.factors.items())
    print(f"source      {report.source_dir} ({report.source_cpu})")
    print(f"measured    {report.measured} subnets ({report.measured_now} now); borrowed schedules timed "
          f"here: {report.retimed_workloads} now; tuned here: {report.tuned_workloads} workloads; "
          f"{report.seconds / 60:.1f} min")
    print(f"factors     {f}")
    if report.fit_mape is not None:
        print(f"fit         MAPE {report.fit_mape:.1f} % on the calibration subnets (in-sample)")
    print(f"wrote       {report.predictor}")
    from tvm_ofa.cli._common import Result

    return Result({"target": cfg.name, "cpu": prov.get("cpu"), "log_dir": str(cfg.log_dir(args.log_root)),
                   "source": str(report.source_dir), "source_cpu": report.source_cpu,
                   "measured_subnets": report.measured, "measured_now": report.measured_now,
                   "retimed_workloads": report.retimed_workloads, "tuned_workloads": report.tuned_workloads,
                   "minutes": report.seconds / 60, "factors": report.factors, "fit_mape": report.fit_mape,
                   "predictor": str(report.predictor)})


def _progress_bar():
    """A progress callback for calibration events, and the function that closes its bar."""
    from tqdm import tqdm

    bars: list = []  # made at the first event, so that an error before it is one clean line

    def progress(ev) -> None:
        if ev.stage == "start":
            print(f"calibrate   {ev.message}", flush=True)
            return
        if not bars:
            bars.append(tqdm(total=None, desc="calibrating", unit="subnet", dynamic_ncols=True))
        bar = bars[0]
        if ev.stage == "measure":
            bar.total = ev.total
            bar.n = ev.done
            bar.set_postfix_str(ev.message)
            bar.refresh()
        elif ev.stage == "warning":
            bar.write(f"warning     {ev.message}", file=sys.stderr)
        elif ev.stage == "retime":
            bar.set_postfix_str(f"timing borrowed schedules here: {ev.done}/{ev.total}, {ev.message}")
            bar.refresh()
        elif ev.stage == "tune":
            bar.set_postfix_str(f"tuning {ev.message}")
            bar.refresh()

    def close() -> None:
        for bar in bars:
            bar.close()

    return progress, close


def run_calibration(cfg, minutes: float, **kwargs):
    """:func:`tvm_ofa.predict.calibrate.calibrate` with a progress bar."""
    from tvm_ofa.predict.calibrate import calibrate

    progress, close = _progress_bar()
    try:
        return calibrate(cfg, minutes=minutes, progress=progress, **kwargs)
    finally:
        close()


def ensure_predictor(cfg, log_root: str | None, minutes: float, match: dict | None = None):
    """:func:`tvm_ofa.predict.calibrate.ensure_predictor` with a progress bar, its warnings on
    stderr (used by specialize and the demo)."""
    import warnings

    from tvm_ofa.predict import calibrate

    progress, close = _progress_bar()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pred = calibrate.ensure_predictor(cfg, log_root, minutes, match, progress)
        finally:
            close()
    for w in caught:
        print(f"warning     {w.message}", file=sys.stderr)
    return pred
