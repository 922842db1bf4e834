"""The latency collector's timing protocol (bench/collect_latency_data.py), without TVM."""
from __future__ import annotations

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


def test_passes_combine_to_their_median(collector):
    passes = [{"median_ms": v, "p90_ms": v * 1.1, "repeats": 100} for v in (1.0, 1.1, 3.0, 1.05, 0.95)]
    m = collector.combine_passes(passes)
    assert m["median_ms"] == pytest.approx(1.05) and m["repeats"] == 500
    assert m["pass_medians_ms"] == [1.0, 1.1, 3.0, 1.05, 0.95]
