"""The latency collector's timing protocol (bench/collect_latency_data.py), without TVM."""
from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def collector():
    spec = importlib.util.spec_from_file_location("collect_latency_data", ROOT / "bench" / "collect_latency_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def fake_load(shares):
    """An ``other_load`` whose successive windows report ``shares``."""
    it = iter(shares)

    @contextlib.contextmanager
    def other_load():
        out = {"other_cpu": None}
        yield out
        out["other_cpu"] = next(it)
    return other_load


def test_a_pass_disturbed_by_other_processes_is_timed_again(collector, monkeypatch):
    import tvm_ofa.compiler.measure as measure

    monkeypatch.setattr(collector.time, "sleep", lambda s: None)
    times = iter([9.0, 5.0, 1.0])

    def timer():
        return {"median_ms": next(times), "p90_ms": 1.0, "repeats": 10}

    # busy, busy, quiet: the third try is kept
    monkeypatch.setattr(measure, "other_load", fake_load([0.5, 0.3, 0.01]))
    got = collector.quiet_pass(timer)
    assert got["median_ms"] == 1.0 and got["other_cpu"] == 0.01
    # busy every time: the least disturbed try is kept, with its share as evidence
    times = iter([9.0, 5.0, 7.0])
    monkeypatch.setattr(measure, "other_load", fake_load([0.5, 0.3, 0.4]))
    got = collector.quiet_pass(timer)
    assert got["median_ms"] == 5.0 and got["other_cpu"] == 0.3


def test_passes_combine_to_their_median(collector):
    passes = [{"median_ms": v, "p90_ms": v * 1.1, "repeats": 100} for v in (1.0, 1.1, 3.0, 1.05, 0.95)]
    m = collector.combine_passes(passes)
    assert m["median_ms"] == pytest.approx(1.05) and m["repeats"] == 500
    assert m["pass_medians_ms"] == [1.0, 1.1, 3.0, 1.05, 0.95]
