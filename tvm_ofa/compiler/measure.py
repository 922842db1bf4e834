"""Timing a built Relax VM: locally or through an RPC session, median and p90 of repeats."""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np


@dataclass
class Latency:
    """Milliseconds per run (batch as built)."""

    median_ms: float
    p90_ms: float
    repeats: int
    warmup: int
    threads: int | None
    # share of the CPUs other processes used while this was timed (None: not watched)
    other_cpu: float | None = None
    # medians of the separate timing windows, when there were several
    passes_ms: tuple[float, ...] = ()
    # the fastest window of each fresh load, when the library was loaded several times
    loads_ms: tuple[float, ...] = ()
    # the figure to compare with a prediction: the fastest window, as the latency predictor's
    # training truth is taken (None for a single window: its median is the figure)
    latency_ms: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(times_ms: list[float], warmup: int, threads: int | None) -> Latency:
    arr = np.asarray(times_ms, dtype=np.float64)
    return Latency(median_ms=float(np.median(arr)), p90_ms=float(np.percentile(arr, 90)),
                   repeats=len(times_ms), warmup=warmup, threads=threads)


def time_calls(fn: Callable[[], Any], warmup: int = 10, repeats: int = 50,
               threads: int | None = None) -> Latency:
    """Wall-clock time ``fn`` (which must block until done) ``repeats`` times after a warmup."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return summarize(times, warmup, threads)


# a timing's fastest window counts as the machine's full speed once another window comes this
# close: the fastest alone may be the one window that caught a VM's brief full-speed phase
CONFIRM = 1.05


def confirmed(passes_ms: Sequence[float]) -> bool:
    """Whether a second window came within :data:`CONFIRM` of the fastest."""
    p = sorted(passes_ms)
    return len(p) > 1 and p[1] <= CONFIRM * p[0]


def load_wanted(load_fastest_ms: Sequence[float], loads: int) -> bool:
    """Whether a library needs timing in one more fresh build and load: until it has ``loads``,
    then one more when the fastest passes of its two best loads are more than :data:`CONFIRM`
    apart. Every window of one load can run slow together on a shared VM (a 1.97 ms load of a
    1.05 ms library), which no number of passes in that load reveals."""
    done = len(load_fastest_ms)
    return done < loads or (done == loads and loads > 1 and not confirmed(load_fastest_ms))


# share of the CPUs other processes may use while a library is timed before the timing is taken
# again: with every core running the library, even 10 % stalls its threads at each barrier
BUSY = 0.05


class Canary:
    """How fast the machine runs right now against the fastest it has been seen to run here.

    Shared VMs run 1.3-2.4x slower for tens of seconds at a time with no other process on their
    CPUs (docs/BENCHMARKS.md, "Timing"). ``time_once`` times a fixed small library briefly (ms);
    calling the canary returns that time over the best seen so far (1.0 = full speed).
    """

    def __init__(self, time_once: Callable[[], float]):
        self.time_once = time_once
        self.best = float("inf")

    def __call__(self) -> float:
        c = float(self.time_once())
        self.best = min(self.best, c)
        return c / self.best

    def wait_for_speed(self, slow: float = 1.25, max_wait_s: float = 10.0) -> float:
        """Return once the machine runs within ``slow`` of its best (or after ``max_wait_s``);
        the last ratio seen. The slow phases are 1.3x and more, while a small canary's brief
        timing moves by 10-20 % in a fast one: a tighter limit mostly waits for nothing."""
        t0 = time.monotonic()
        r = self()
        while r > slow and time.monotonic() - t0 < max_wait_s:
            time.sleep(2.0)
            r = self()
        return r


def benchmark_vm(vm: Any, device: Any, x: np.ndarray, warmup: int = 10, repeats: int = 50,
                 threads: int | None = None, min_seconds: float = 1.0, tries: int = 3,
                 local: bool = True, passes: int = 1, canary: Canary | None = None,
                 max_passes: int | None = None) -> Latency:
    """Time ``vm["main"]`` with TVM's time evaluator (one sample per call), which also works
    through an RPC session where Python-side timing would include the network.

    ``repeats`` is a minimum: calls are added (up to 20x ``repeats``) until they span
    ``min_seconds``, as estimated from the warmup calls (with ``warmup=0``, exactly ``repeats``
    calls). A small subnet runs in well under a millisecond, and 50 back-to-back calls
    then cover a window so short that one burst of other load on the machine moves the median by
    a third (docs/BENCHMARKS.md, "Timing").

    When ``local``, the timing is taken again (up to ``tries`` times, a second apart) while other
    processes keep more than ``BUSY`` of the CPUs (:func:`other_load`); the least disturbed try is
    kept, its share in ``other_cpu``. With ``passes`` > 1, that many such windows are timed and
    the result is the median of their medians (each in ``passes_ms``): a small subnet's median
    moves by a tenth from one quiet second to the next on a VM. With a ``canary``, each window
    waits until the machine runs at its usual speed (:meth:`Canary.wait_for_speed`). With
    ``max_passes``, windows are added, up to that many, until the fastest is :func:`confirmed`.
    """
    import tvm

    arg = tvm.runtime.tensor(x, device)
    vm.set_input("main", arg)
    vm.invoke_stateful("main")  # first call allocates
    if warmup:
        probe = vm.time_evaluator("invoke_stateful", device, number=1, repeat=warmup)("main")
        per_call = max(float(np.median(probe.results)), 1e-6)
        repeats = max(repeats, min(int(min_seconds / per_call), 20 * repeats))
    windows: list[Latency] = []
    while len(windows) < max(passes, 1) or (len(windows) < (max_passes or 0)
                                            and not confirmed([w.median_ms for w in windows])):
        if canary is not None:
            canary.wait_for_speed()
        best = None
        for k in range(max(tries, 1) if local else 1):
            if k:
                time.sleep(1.0)
            with other_load() as load:
                res = vm.time_evaluator("invoke_stateful", device, number=1, repeat=repeats)("main")
            lat = summarize([float(r) * 1e3 for r in res.results], warmup, threads)
            lat.other_cpu = load["other_cpu"] if local else None
            if best is None or (lat.other_cpu or 0.0) < (best.other_cpu or 0.0):
                best = lat
            if lat.other_cpu is None or lat.other_cpu <= BUSY:
                break
        windows.append(best)
    return combine_windows(windows)


def combine_windows(windows: list[Latency]) -> Latency:
    """One timing from several windows of the same library: the median of their medians (and of
    their p90s), every window's median kept in ``passes_ms``, the most other load seen."""
    if len(windows) == 1:
        return windows[0]
    busy = [w.other_cpu for w in windows if w.other_cpu is not None]
    return Latency(median_ms=float(np.median([w.median_ms for w in windows])),
                   p90_ms=float(np.median([w.p90_ms for w in windows])),
                   repeats=sum(w.repeats for w in windows), warmup=windows[0].warmup,
                   threads=windows[0].threads, other_cpu=max(busy) if busy else None,
                   passes_ms=tuple(w.median_ms for w in windows))


def combine_loads(loads: list[Latency]) -> Latency:
    """One timing from several fresh loads of the same library, each of one or more windows:
    every window kept (``passes_ms``), the fastest window of each load in ``loads_ms``, and
    ``latency_ms`` the fastest window overall."""
    per_load = [load.passes_ms or (load.median_ms,) for load in loads]
    windows = [w for load in per_load for w in load]
    return Latency(median_ms=float(np.median(windows)), p90_ms=float(np.median([l.p90_ms for l in loads])),
                   repeats=sum(l.repeats for l in loads), warmup=loads[0].warmup, threads=loads[0].threads,
                   other_cpu=max((l.other_cpu for l in loads if l.other_cpu is not None), default=None),
                   passes_ms=tuple(windows), loads_ms=tuple(min(load) for load in per_load),
                   latency_ms=min(windows))


def physical_cores() -> int:
    """The physical cores this process may run on (SMT siblings counted once): what an artifact
    runs on unless told otherwise. Read from sysfs; the usable CPUs where that is unavailable."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        try:
            siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip()
        except OSError:
            return max(1, len(cpus))
        cores.add(siblings)
    return max(1, len(cores))


def default_threads() -> int:
    """Runtime threads when the caller names none: ``TVM_NUM_THREADS`` if set, else every
    physical core (TVM's own default, half the logical CPUs, is one thread on a 2-core VM)."""
    env = os.environ.get("TVM_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else physical_cores()


def set_threads(n: int | None) -> None:
    """Size TVM's runtime thread pool to ``n`` threads (None or 0: leave it).

    TVM creates its pool once, when first used, with ``TVM_NUM_THREADS`` workers, or else half
    the logical CPUs on x86 (it assumes SMT): on a 2-core VM without SMT that is one thread, and
    ``runtime.config_threadpool`` can only use fewer workers than the pool has. So, unless the
    variable is set already, it is set to the larger of ``n`` and the logical CPUs before the
    call that creates the pool (a first call for fewer threads must not cap later ones); a pool
    that already has fewer workers than ``n`` cannot grow, which is warned about
    (``RuntimeWarning``).
    """
    if not n:
        return
    import warnings

    import tvm

    os.environ.setdefault("TVM_NUM_THREADS", str(max(int(n), os.cpu_count() or 1)))
    fn = tvm.get_global_func("runtime.config_threadpool", allow_missing=True)
    if fn is None:
        return
    fn(0, int(n))  # 0: big cores first
    got = runtime_threads()
    if got is not None and got < int(n):
        warnings.warn(f"TVM's thread pool already runs {got} thread(s) in this process and cannot "
                      f"grow to {n}; set TVM_NUM_THREADS={n} before the first TVM call",
                      RuntimeWarning, stacklevel=2)


def runtime_threads() -> int | None:
    """How many threads TVM's runtime pool uses in this process now (None if TVM does not say)."""
    import tvm

    fn = tvm.get_global_func("runtime.NumThreads", allow_missing=True)
    return int(fn()) if fn is not None else None


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all processes have spent since boot (Linux ``/proc/stat``; None elsewhere)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    # user nice system idle iowait irq softirq steal: all but idle and iowait are busy
    ticks = [int(v) for v in fields[:8]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


@contextmanager
def other_load() -> Iterator[dict]:
    """Measure how busy the machine's other processes kept its CPUs while the block ran.

    Yields a dict that, on exit, holds ``other_cpu``: the share of all CPUs (0 to 1) that other
    processes used, or None where the OS does not say. Timings taken while others use the cores
    that a parallel kernel needs come out slower by much more than that share (one stalled thread
    holds up the rest), so a measurement keeps this as its evidence.
    """
    out: dict = {"other_cpu": None}
    t0, busy0, own0 = time.monotonic(), _busy_cpu_seconds(), time.process_time()
    try:
        yield out
    finally:
        busy1, elapsed = _busy_cpu_seconds(), time.monotonic() - t0
        if busy0 is not None and busy1 is not None and elapsed > 0:
            others = (busy1 - busy0) - (time.process_time() - own0)
            out["other_cpu"] = round(min(max(others / (elapsed * (os.cpu_count() or 1)), 0.0), 1.0), 3)
