"""Arguments and helpers the compiler verbs (tune, compile) share."""
from __future__ import annotations

import argparse
from typing import Any, Callable

from tvm_ofa.cli._common import LOG_ROOT_HELP, add_model_arguments


def add_compile_arguments(parser: argparse.ArgumentParser, arch_group: Any = None) -> None:
    parser.add_argument("--target", default="host-cpu", metavar="YAML",
                        help="target config file or shipped name (default: host-cpu)")
    add_model_arguments(parser, arch_group=arch_group)
    parser.add_argument("--trials", type=int, metavar="N", help="trials per task (default: the "
                        "target's tuning.trials_per_task; 0: no search, only schedules from --seed-from's "
                        "records and from tuned neighbouring workloads, timed here)")
    parser.add_argument("--trials-per-round", type=int, metavar="N", help="candidates measured per round (default: the target's)")
    parser.add_argument("--log-root", metavar="DIR", help=LOG_ROOT_HELP)
    parser.add_argument("--batch", type=int, default=1, help="batch size the library is built for (default 1)")
    parser.add_argument("--seed-from", metavar="DIR|CPU",
                        help="start from another CPU's schedules: time the best records of this "
                        "log folder (or of this CPU's folder beside this machine's, e.g. znver4) "
                        "here for every workload with no record yet, keep them as this machine's "
                        "records, then tune from them")
    parser.add_argument("--reseed", action="store_true",
                        help="with --seed-from: seed every workload, tuned here or not, and time "
                        "this CPU's own best records beside the other CPU's in the same run (for "
                        "records timed under an older lowering, or to try a neighbouring CPU's)")


def tqdm_progress() -> tuple[Callable[[Any], None], Callable[[], None]]:
    """A progress callback rendering :class:`TuneProgress` with tqdm, and its closer."""
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(p: Any) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=p.trials_budget, unit="trial", desc="tuning", dynamic_ncols=True)
        b = bar["bar"]
        b.total = max(p.trials_budget, p.trials)
        b.n = p.trials
        best = f"{p.best_ms:.3f} ms" if p.best_ms is not None else "-"
        b.set_description_str(p.task_name if p.task_name in ("seeding", "neighbours") else "tuning")
        b.set_postfix_str(f"tasks {p.tasks_done}/{p.tasks_total}  est. {best}")
        b.refresh()

    def close() -> None:
        if "bar" in bar:
            bar["bar"].close()

    return update, close
