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
import sys

from tvm_ofa.predict.collect import RESOLUTIONS


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
    p.add_argument("--no-measure", action="store_true",
                   help="only tune the subnets it would measure (to tune the whole space for speed, "
                        "heaviest workloads first: `tvm-ofa tune --space`)")
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


def main(argv=None) -> int:
    return run(parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run :func:`tvm_ofa.predict.collect.collect` with a progress bar on stderr."""
    import warnings

    from tqdm import tqdm

    from tvm_ofa.predict.collect import CollectOptions, collect
    from tvm_ofa.targets import fastest_lowering, load_target

    warnings.filterwarnings("ignore", category=FutureWarning)
    # a predictor's data go to the fastest lowering: host-cpu moves to it once its predictor exists
    cfg = fastest_lowering(load_target(args.target))
    bars: list = []

    def progress(ev) -> None:
        if ev.stage == "start":
            print(ev.message, file=sys.stderr, flush=True)
            return
        if not bars:
            bars.append(tqdm(total=ev.total, unit="subnet", dynamic_ncols=True))
        bar = bars[0]
        if bar.total != ev.total:
            bar.total = ev.total
        if ev.stage == "status":
            bar.set_postfix_str(ev.message)
        elif ev.stage == "subnet":
            bar.update(ev.done - bar.n)
        if ev.message and ev.stage in ("subnet", "note"):
            bar.write(ev.message, file=sys.stderr)

    try:
        report = collect(cfg, CollectOptions.from_namespace(args), args.log_root, progress)
    finally:
        for bar in bars:
            bar.close()
    if report.packed:
        before, after = report.packed
        print(f"packed {report.log_dir}: {before} -> {after} records (best {args.pack} per workload), .xz written",
              file=sys.stderr)
    return 0
