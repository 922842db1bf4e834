"""Where one artifact's end-to-end time goes: each fused kernel timed inside a full run.

``task_breakdown.py`` adds up the kernels' tuning records, each timed alone with warm caches.
This script times the kernels where they really run: the Relax VM calls a hook before and after
every call of one inference, so a kernel whose weights are no longer in cache, or a layer that
waits on memory, shows its real share. The hook itself costs a few microseconds per call, so the
kernel sum comes out a little above the plain end-to-end time, which is measured first without it.

    python bench/kernel_profile.py artifacts/host-cpu-prepack/r160-d22222-917449e0 --top 15

``--again`` calls every kernel a second time right after its call in the run, on the same
arguments, and times that call too: the second call finds its inputs and weights where the first
left them (this core's caches, the same split across threads), as the tuner's repeated timing does.
A kernel much slower in the run than called again pays for where its data was, not for its schedule.
The time in the run includes the hook's few microseconds, the second call's does not. (Outputs of
the run are then not meaningful: a kernel that updates a buffer in place runs twice.)

    python bench/kernel_profile.py artifacts/host-cpu-prepack/r224-d44444-26d5eef6 --again --top 15

``--producer`` (with ``--again``) also times each kernel a third way: the kernel called just before
it in the run (in a chain of layers, the one that wrote its input) is run again first, then the
kernel. A kernel that is as slow that way as in the run pays for what its producer left behind
(where its input sits, what the producer evicted), not for anything further back.

Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact", help="an artifact folder (tvm-ofa compile, bench_runtime.py)")
    p.add_argument("--threads", type=int, default=None, help="default: the machine's CPUs")
    p.add_argument("--runs", type=int, default=50, help="instrumented inferences to average")
    p.add_argument("--top", type=int, default=12, help="how many of the slowest kernels to list")
    p.add_argument("--again", action="store_true",
                   help="also time each kernel called again at once on the same arguments")
    p.add_argument("--producer", action="store_true",
                   help="with --again: also time each kernel right after the kernel before it "
                        "runs again")
    args = p.parse_args(argv)
    if args.producer and not args.again:
        p.error("--producer goes with --again")
    return args


def main(argv=None) -> int:
    import os

    import numpy as np
    import tvm

    from tvm_ofa import load_artifact
    from tvm_ofa.compiler.measure import runtime_threads, time_calls
    from tvm_ofa.errors import TvmOfaError

    args = parse_args(argv)
    try:
        art = load_artifact(args.artifact, threads=args.threads or os.cpu_count() or 1)
    except TvmOfaError as exc:
        raise SystemExit(f"error: {exc}") from None
    x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(art.input_shape)
                           .astype(art.input_dtype), art.device)
    main_fn = art.vm[art.metadata.get("entry", "main")]
    plain = time_calls(lambda: main_fn(x), warmup=20, repeats=200)

    spent: dict[str, float] = defaultdict(float)
    again: dict[str, float] = defaultdict(float)
    after: dict[str, float] = defaultdict(float)
    previous: list = []  # the kernel called last in the run: (function, arguments)
    calls: dict[str, int] = defaultdict(int)
    shapes: dict[str, list] = {}
    started = [0.0]

    def hook(func, symbol, before, ret, *call_args):
        if before:
            started[0] = time.perf_counter()
            return 0
        spent[symbol] += time.perf_counter() - started[0]
        calls[symbol] += 1
        if args.again and not symbol.startswith("vm."):
            t0 = time.perf_counter()
            func(*call_args)
            again[symbol] += time.perf_counter() - t0
            if args.producer:
                if previous:
                    previous[0](*previous[1])
                t0 = time.perf_counter()
                func(*call_args)
                after[symbol] += time.perf_counter() - t0
                previous[:] = [func, call_args]
        if symbol not in shapes:
            shapes[symbol] = [tuple(a.shape) for a in call_args if hasattr(a, "shape")]
        return 0

    art.vm.set_instrument(hook)
    for _ in range(args.runs):
        main_fn(x)
    per_run = {s: 1e3 * t / args.runs for s, t in spent.items()}
    kernels = {s: t for s, t in per_run.items() if not s.startswith("vm.")}
    builtins = {s: t for s, t in per_run.items() if s.startswith("vm.")}
    print(f"{art.path} on {runtime_threads()} threads")
    print(f"end to end, no hook: median {plain.median_ms:.3f} ms over {plain.repeats} calls")
    print(f"kernels inside a run: {sum(calls[s] for s in kernels) // args.runs} calls, "
          f"sum {sum(kernels.values()):.3f} ms")
    print(f"VM builtins: {sum(calls[s] for s in builtins) // args.runs} calls, "
          f"sum {sum(builtins.values()):.3f} ms")
    again_ms = {s: 1e3 * t / args.runs for s, t in again.items()}
    after_ms = {s: 1e3 * t / args.runs for s, t in after.items()}
    if args.again:
        total = sum(again_ms.values())
        print(f"the same kernels called again at once: sum {total:.3f} ms "
              f"(in the run {sum(kernels.values()) / total:.2f}x that)")
    if args.producer:
        print(f"the same kernels called again right after the kernel before them: sum "
              f"{sum(after_ms.values()):.3f} ms")
    columns = ("ms per run in the run, called again, ratio, calls per run" if args.again
               else "ms per run, calls per run, argument shapes")
    if args.producer:
        columns = columns.replace("ratio, ", "ratio, after the kernel before, ")
    print(f"\nslowest {args.top} kernels ({columns})")
    for s, t in sorted(kernels.items(), key=lambda kv: -kv[1])[:args.top]:
        if args.again:
            prod = f"  {after_ms[s]:8.4f}" if args.producer else ""
            print(f"  {t:8.4f}  {again_ms[s]:8.4f}  {t / again_ms[s]:5.2f}x{prod}  "
                  f"x{calls[s] // args.runs}  {s}")
        else:
            print(f"  {t:8.4f}  x{calls[s] // args.runs}  {s}  {shapes.get(s)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
