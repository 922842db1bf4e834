"""``tvm-ofa tune``: tune a subnet's workloads into the target's persistent database."""
from __future__ import annotations

import argparse
import sys

from tvm_ofa.cli._compile_common import add_compile_arguments, tqdm_progress

REPORTS = True
HELP = "tune a subnet with MetaSchedule into the target's tuning log (resumable)"
DESCRIPTION = """Tune the workloads of one subnet that the target's database does not cover yet.
Interrupt at any time: records are appended per batch and a rerun continues.

examples:
  tvm-ofa tune --target targets/host-cpu.yaml --arch arch.json --trials 64
  tvm-ofa tune --arch smallest --resolution 160
  tvm-ofa tune --arch smallest --seed-from znver4 --trials 16   # a new CPU: start from znver4's
  tvm-ofa tune --target host-cpu-prepack --arch largest --resolution 224 --seed-from znver5 \
      --reseed --trials 0   # znver5's schedules and this CPU's own, timed side by side here"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_compile_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from tvm_ofa.cli._common import chosen_target, load_model, resolve_arch, supernet_match
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.tune import tune
    from tvm_ofa.targets import load_target

    cfg = load_target(args.target)
    net, _ = load_model(args)
    cfg = chosen_target(cfg, supernet_match(net), args.log_root)
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
    from dataclasses import asdict, is_dataclass

    from tvm_ofa.cli._common import Result

    data = asdict(rep) if is_dataclass(rep) else dict(vars(rep))
    return Result({"arch_id": arch.id, "target": cfg.name, **data})
