"""The latency collector's measurement lines (bench/collect_latency_data.py), without TVM."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def collector():
    spec = importlib.util.spec_from_file_location("collect_latency_data", ROOT / "bench" / "collect_latency_data.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_measurement_line_keeps_its_passes_and_reads_back(collector, tiny_space, tmp_path):
    from tvm_ofa.compiler.measure import Latency, combine_windows
    from tvm_ofa.predict.dataset import load_measurements
    from tvm_ofa.predict.workloads import NetConfig
    from tvm_ofa.targets import parse_target

    cfg = parse_target({"name": "t", "target": {"kind": "llvm"}, "threads": 2}, "t.yaml")
    arch = tiny_space.sample_many(1, rng=0)[0]
    windows = [Latency(v, v * 1.1, 100, 10, 2, other_cpu=o) for v, o in ((1.0, 0.0), (3.0, 0.2), (1.1, 0.01))]
    lat = combine_windows(windows)
    rec = collector.measurement_record(arch, lat, cfg, {"cpu": "testcpu", "tvm_version": "x"}, NetConfig(),
                                       trials=4)
    assert rec["median_ms"] == pytest.approx(1.1) and rec["pass_medians_ms"] == [1.0, 3.0, 1.1]
    assert rec["other_cpu"] == 0.2 and rec["repeats"] == 300 and rec["threads"] == 2
    (tmp_path / "measurements.jsonl").write_text(json.dumps(rec) + "\n")
    (back,), bad = load_measurements(tmp_path)
    assert bad == 0 and back.passes_ms == (1.0, 3.0, 1.1) and back.arch == arch


def test_only_retimed_values_taken_at_speed_for_the_current_best_record_stand(tmp_path):
    from tvm_ofa.compiler.retime import RETIMED_FILE, accepted_times

    doc = {"canary": "k0", "canary_best_s": 1.0, "slow": 1.1, "workloads": {
        "fast": {"s": 0.5, "canary_s": 1.05, "record_s": 0.9},
        "slow-phase": {"s": 0.5, "canary_s": 1.6, "record_s": 0.9},
        "retuned-since": {"s": 0.5, "canary_s": 1.0, "record_s": 0.9},
        "torn": {"s": "x"}}}
    (tmp_path / RETIMED_FILE).write_text(json.dumps(doc))
    best = {"fast": 0.9, "slow-phase": 0.9, "retuned-since": 0.7, "torn": 1.0}
    assert accepted_times(tmp_path, best) == {"fast": 0.5}
    # another machine's frozen records (no current best to compare with): any record, at speed
    doc["workloads"]["not-an-entry"] = [0.5]
    (tmp_path / RETIMED_FILE).write_text(json.dumps(doc))
    assert accepted_times(tmp_path, None) == {"fast": 0.5, "retuned-since": 0.5}
    (tmp_path / RETIMED_FILE).write_text("{not json")
    assert accepted_times(tmp_path, best) == {}
