"""``tvm-ofa tune``: tune a subnet's workloads, or the whole space's, into the target's database."""
from __future__ import annotations

import argparse
import sys

from tvm_ofa.cli._compile_common import add_compile_arguments, tqdm_progress

REPORTS = True
HELP = "tune a subnet, or the whole space, with MetaSchedule into the target's tuning log (resumable)"
DESCRIPTION = """Tune the workloads of one subnet that the target's database does not cover yet,
or (--space) those of the whole search space, the ones that carry the most latency in random
subnets first, for --hours. Interrupt at any time: records are appended per batch and a rerun
continues.

examples:
  tvm-ofa tune --target targets/host-cpu.yaml --arch arch.json --trials 64
  tvm-ofa tune --arch smallest --resolution 160
  tvm-ofa tune --arch smallest --seed-from znver4 --trials 16   # a new CPU: start from znver4's
  tvm-ofa tune --target host-cpu-prepack --arch largest --resolution 224 --seed-from znver5 \\
      --reseed --trials 0   # znver5's schedules and this CPU's own, timed side by side here
  tvm-ofa tune --space --hours 8 --checkpoint ofa_mbv3_d234_e346_k357_w1.0   # a night's background job"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    add_compile_arguments(parser, arch_group=which)
    which.add_argument("--space", action="store_true",
                       help="tune the whole space of the supernet: the workloads carrying the most "
                       "latency over a uniform sample of subnets first, until every one has --trials "
                       "or --hours run out")
    parser.add_argument("--hours", type=float, default=1.0,
                        help="--space: wall-clock budget (default 1; a rerun continues)")
    parser.add_argument("--workloads-per-round", type=int, default=8, metavar="N",
                        help="--space: workloads tuned together inside one subnet (default 8)")


def run(args: argparse.Namespace) -> int:
    from tvm_ofa.cli._common import Result, chosen_target, load_model, resolve_arch, supernet_match
    from tvm_ofa.targets import load_target

    cfg = load_target(args.target)
    net, _ = load_model(args)
    cfg = chosen_target(cfg, supernet_match(net), args.log_root)
    if args.space:
        return _tune_space(args, cfg, net)
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.tune import tune

    arch = resolve_arch(args.arch, net.space, args.resolution)
    lowered = lower_module(net.extract(arch).eval(), (args.batch, 3, arch.resolution, arch.resolution),
                           lowering=cfg.lowering)
    update, close = tqdm_progress()
    try:
        rep = tune(cfg, lowered, trials_per_task=args.trials,
                   trials_per_round=args.trials_per_round, log_root=args.log_root, progress=update,
                   seed_from=args.seed_from, reseed=args.reseed)
    finally:
        close()
    if rep.skipped_lines:
        print(f"warning: skipped {rep.skipped_lines} unreadable line(s) in {rep.log_dir}", file=sys.stderr)
    if rep.seed_source:
        print(f"seeded {rep.seeded_tasks} tasks with {rep.seed_measured} schedules from "
              f"{rep.seed_source}, timed here")
    est = f"{rep.estimated_ms:.3f} ms" if rep.estimated_ms is not None else "n/a"
    print(f"{arch.id} on {cfg.name}: {rep.tasks_total} tasks, {rep.tasks_skipped} already tuned, "
          f"{rep.tasks_tuned} tuned now with {rep.new_trials} trials; estimated {est}; "
          f"log {rep.log_dir}")
    return Result({"arch_id": arch.id, "target": cfg.name, **rep.to_dict()})


def _tune_space(args: argparse.Namespace, cfg, net) -> int:
    import signal
    from dataclasses import asdict

    from tqdm import tqdm

    from tvm_ofa.cli._common import Result
    from tvm_ofa.errors import ConfigError
    from tvm_ofa.predict.space_tune import tune_space

    for flag in ("seed_from", "reseed", "resolution"):
        if getattr(args, flag):
            raise ConfigError(f"--{flag.replace('_', '-')} goes with --arch, not --space")
    bar = tqdm(total=100, unit="%", desc="space", dynamic_ncols=True,
               bar_format="{desc}: {percentage:3.0f}% of the latency tuned |{bar}| {elapsed} {postfix}")

    def show(e) -> None:
        bar.n = round(100 * e.covered, 1)
        if e.kind in ("start", "note"):
            bar.write(e.message)
        else:
            bar.set_postfix_str(f"round {e.rounds + (e.kind == 'round')}: {e.message}")
        bar.refresh()

    asked = []

    def on_interrupt(signum, frame) -> None:
        if asked:
            raise KeyboardInterrupt
        asked.append(True)
        bar.write("stopping after this round (its records are kept); Ctrl-C again stops now")

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        rep = tune_space(cfg, net, hours=args.hours, trials_per_task=args.trials,
                         workloads_per_round=args.workloads_per_round, log_root=args.log_root, progress=show,
                         stop=lambda: bool(asked))
    finally:
        signal.signal(signal.SIGINT, previous)
        bar.close()
    print(f"{cfg.name}: {rep.workloads_tuned} workloads tuned in {rep.rounds} rounds ({rep.new_trials} trials); "
          f"{rep.pending} of {rep.workloads_total} below the budget; the tuned workloads carry "
          f"{100 * rep.covered_after:.1f} % of the space's predicted latency (was {100 * rep.covered_before:.1f} %); "
          f"ranked by {rep.ranking}; log {rep.log_dir}")
    return Result({"target": cfg.name, **asdict(rep)})
