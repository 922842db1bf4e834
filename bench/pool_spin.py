#!/usr/bin/env python
"""How long a runtime's pool threads stay busy after its last call: CPU time per thread of this
process, in windows after a burst of calls to a tvm-ofa artifact.

``bench/bench_runtime.py`` times the runtimes one after another; a worker that keeps a core busy
after its own runtime's turn slows the runtime timed next, which is why each turn there starts
after a pause (``bench_runtime.SETTLE_S``). This shows how long that pause must be for TVM.

    python bench/pool_spin.py artifacts/host-cpu-prepack/r224-d22222-a270be92
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def thread_ticks() -> dict[str, int]:
    """Thread id -> user + system CPU ticks so far."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[tid] = int(fields[11]) + int(fields[12])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("artifact")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--window", type=float, default=0.05, help="seconds")
    p.add_argument("--windows", type=int, default=10)
    args = p.parse_args(argv)

    import numpy as np

    from tvm_ofa import load_artifact
    from tvm_ofa.compiler.artifact import ArtifactError

    try:
        art = load_artifact(args.artifact, threads=args.threads)
    except ArtifactError as exc:
        raise SystemExit(f"error: {exc}") from None
    x = np.random.default_rng(0).standard_normal(art.input_shape).astype(art.input_dtype)
    for _ in range(args.calls):
        art(x)
    hz = os.sysconf("SC_CLK_TCK")
    before, t0 = thread_ticks(), time.perf_counter()
    print(f"{args.calls} calls, then CPU share of each busy thread per {args.window:g} s window "
          f"(main thread {os.getpid()}):")
    for _ in range(args.windows):
        time.sleep(args.window)
        now = thread_ticks()
        busy = {t: (now[t] - before.get(t, 0)) / hz / args.window for t in now}
        shown = "  ".join(f"{t}: {v:.0%}" for t, v in sorted(busy.items()) if v > 0) or "idle"
        print(f"  {time.perf_counter() - t0:5.2f} s  {shown}")
        before = now
    return 0


if __name__ == "__main__":
    sys.exit(main())
