"""More trials for chosen workloads of one benchmark subnet, in a target's own logs.

``bench_runtime.py --trials N`` tunes every workload of a subnet up to N trials. This script
tunes only the workloads worth it, chosen from the records already there (``task_breakdown.py``
lists the same numbers):

- ``--slow-gflops G --min-ms M``: workloads whose best record runs below G GFLOP/s and whose calls
  take at least M ms per inference together (the slow kernels that matter);
- ``--worse-than LOGDIR --factor F``: workloads whose best record is more than F times (and 5 us)
  slower than in another target's logs (e.g. prepacked records that lost to the plain ones);
- ``--keys K ...``: workload keys (``tvm_ofa.predict.workloads.Workload.key``) given outright.

It prints the chosen keys, then tunes them with the target's lowering (up to ``--trials`` per
task, the chosen tasks taking turns). Resumable like every tune.

    python bench/tune_workloads.py --target host-cpu-prepack --subnet largest --resolution 224 \\
        --trials 96 --slow-gflops 110 --min-ms 0.1
    python bench/tune_workloads.py --target host-cpu-prepack --subnet smallest --resolution 160 \\
        --trials 48 --worse-than tuning_logs/host-cpu/znver4 --factor 1.2
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="host-cpu-prepack", help="target config (path or shipped name)")
    p.add_argument("--subnet", default="largest", choices=("smallest", "middle", "largest"))
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--trials", type=int, required=True,
                   help="trials per chosen task, in all: those it had before count")
    p.add_argument("--log-root", default="tuning_logs")
    p.add_argument("--slow-gflops", type=float, default=None, metavar="G")
    p.add_argument("--min-ms", type=float, default=0.1, metavar="M",
                   help="with --slow-gflops: least time per inference (all calls of the workload)")
    p.add_argument("--worse-than", default=None, metavar="LOGDIR")
    p.add_argument("--factor", type=float, default=1.2)
    p.add_argument("--keys", nargs="+", default=None, metavar="K")
    p.add_argument("--dry-run", action="store_true", help="print the chosen keys, tune nothing")
    args = p.parse_args(argv)
    if sum(x is not None for x in (args.slow_gflops, args.worse_than, args.keys)) != 1:
        p.error("choose the workloads with one of --slow-gflops, --worse-than or --keys")
    return args


def choose(workloads: list, best_ms: dict[str, float], args: argparse.Namespace,
           other_ms: dict[str, float] | None = None) -> list[str]:
    """The workload keys of ``workloads`` (one entry per call) that ``args`` selects."""
    calls = Counter(w.key for w in workloads)
    by_key = {w.key: w for w in workloads}
    if args.keys is not None:
        return [k for k in args.keys if k in by_key]
    out = []
    for key, w in by_key.items():
        ms = best_ms.get(key)
        if ms is None:
            continue
        if args.slow_gflops is not None:
            if 2 * w.macs / 1e6 / ms < args.slow_gflops and ms * calls[key] >= args.min_ms:
                out.append(key)
        elif other_ms and key in other_ms and ms > args.factor * other_ms[key] and ms - other_ms[key] > 0.005:
            out.append(key)
    return sorted(out)


def main(argv=None) -> int:
    args = parse_args(argv)
    from tvm_ofa.cli._common import untrained_supernet
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.compiler.measure import set_threads
    from tvm_ofa.compiler.tune import tune
    from tvm_ofa.errors import TvmOfaError
    from tvm_ofa.predict.dataset import build_dataset
    from tvm_ofa.predict.workloads import subnet_workloads
    from tvm_ofa.targets import load_target

    try:
        cfg = load_target(args.target)
        set_threads(cfg.num_threads)
        net = untrained_supernet()
        arch = net.space.validate(getattr(net.space, args.subnet)(args.resolution))

        def best(log_dir) -> dict[str, float]:
            return {k: 1e3 * v for k, v in build_dataset(log_dir).by_key().items()}

        other = best(args.worse_than) if args.worse_than else None
        keys = choose(subnet_workloads(arch), best(cfg.log_dir(args.log_root)), args, other)
        print(f"{arch.id}: {len(keys)} workloads chosen", flush=True)
        for k in keys:
            print(f"  {k}", flush=True)
        if args.dry_run or not keys:
            return 0
        low = lower_module(net.extract(arch).eval(), (1, 3, args.resolution, args.resolution), lowering=cfg.lowering)
        t0 = time.time()
        rep = tune(cfg, low, trials_per_task=args.trials, only=set(keys), log_root=args.log_root,
                   progress=lambda p: print(f"  {p.trials}/{p.trials_budget} trials", flush=True))
    except TvmOfaError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"tuned {rep.tasks_tuned} tasks, {rep.new_trials} trials in {time.time() - t0:.0f} s")
    if not rep.tasks_tuned:
        # --trials counts every trial a task ever had here (records or a finished tune's budget)
        print(f"note: every chosen workload already had {args.trials} trials here; "
              "--trials is the total per task: give more to tune them again")
    return 0


if __name__ == "__main__":
    sys.exit(main())
