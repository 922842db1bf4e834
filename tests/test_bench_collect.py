"""The latency collector's measurement lines (`tvm-ofa latency collect`), without TVM."""
from __future__ import annotations

import json

import pytest

from conftest import bench_script


@pytest.fixture(scope="module")
def collector():
    from tvm_ofa.predict import collect

    return collect


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
    from tvm_ofa.compiler.store import RETIMED_FILE, accepted_times

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


def test_confirm_picks_subnets_whose_fastest_pass_stands_alone_held_out_first(collector, tiny_space, tmp_path):
    from tvm_ofa.predict.dataset import is_held_out
    from tvm_ofa.predict.workloads import NetConfig

    archs = tiny_space.sample_many(40, rng=1)
    held = next(a for a in archs if is_held_out(a))
    kept = [a for a in archs if not is_held_out(a)][:4]
    lines = [  # settled (second pass within 5 %, one of them at speed), lone fastest pass, one pass
        # only, two close passes both in a slow phase; then held-out
        {"id": kept[0].id, "arch": kept[0].to_dict(), "median_ms": 1.0, "pass_medians_ms": [1.0, 1.04, 1.5],
         "pass_canary_ms": [1.3, 1.1, 2.0], "cpu": "c", "net": NetConfig().to_dict()},
        {"id": kept[1].id, "arch": kept[1].to_dict(), "median_ms": 1.5, "pass_medians_ms": [1.0, 1.5, 1.6],
         "pass_canary_ms": [0.9, 1.3, 1.4], "cpu": "c", "net": NetConfig().to_dict()},
        {"id": kept[2].id, "arch": kept[2].to_dict(), "median_ms": 2.0, "cpu": "c", "net": NetConfig().to_dict()},
        {"id": kept[3].id, "arch": kept[3].to_dict(), "median_ms": 1.0, "pass_medians_ms": [1.0, 1.01],
         "pass_canary_ms": [1.2, 1.6], "cpu": "c", "net": NetConfig().to_dict()},
        {"id": held.id, "arch": held.to_dict(), "median_ms": 1.5, "pass_medians_ms": [1.0, 1.5],
         "cpu": "c", "net": NetConfig().to_dict()},
        # another CPU's and a torn line are not this run's business
        {"id": held.id, "arch": held.to_dict(), "median_ms": 1.5, "pass_medians_ms": [1.0, 1.5], "cpu": "other",
         "net": NetConfig().to_dict()}]
    path = tmp_path / "measurements.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in lines) + '{"id": "torn')
    todo, best = collector.unconfirmed(path, NetConfig(), "c")
    assert [d["id"] for d in todo] == [held.id, kept[1].id, kept[2].id, kept[3].id] and best == 0.9
    # the merged record a confirming run appends is the latest line, which readers take
    with open(path, "a") as f:
        f.write("\n" + json.dumps({**lines[4], "pass_medians_ms": [1.0, 1.5, 1.02]}) + "\n")
    todo, _ = collector.unconfirmed(path, NetConfig(), "c")
    assert [d["id"] for d in todo] == [kept[1].id, kept[2].id, kept[3].id]


def test_confirm_with_loads_times_each_library_in_a_second_build_until_two_agree(collector, tiny_space, tmp_path):
    from tvm_ofa.predict.dataset import is_held_out, record_loads
    from tvm_ofa.predict.workloads import NetConfig

    archs = tiny_space.sample_many(40, rng=2)
    held = [a for a in archs if is_held_out(a)][:3]
    kept = next(a for a in archs if not is_held_out(a))
    net = NetConfig().to_dict()
    lines = [  # all settled in one load (the first: 8.24 at speed, the slow load of its library)
        {"id": held[0].id, "arch": held[0].to_dict(), "median_ms": 8.4, "pass_medians_ms": [8.24, 8.45, 8.35],
         "pass_canary_ms": [1.0, 1.6, 1.7], "cpu": "c", "net": net},
        # a line from before loads were kept, its latest --confirm a second load that agrees
        {"id": held[1].id, "arch": held[1].to_dict(), "median_ms": 2.0, "pass_medians_ms": [2.0, 2.02, 1.99],
         "pass_canary_ms": [1.0, 1.0, 1.0], "confirm_passes": 1, "cpu": "c", "net": net},
        # two loads that disagree by more than 5 %: one more
        {"id": held[2].id, "arch": held[2].to_dict(), "median_ms": 3.0, "pass_medians_ms": [3.3, 3.31, 3.0, 3.01],
         "pass_canary_ms": [1.0, 1.0, 1.0, 1.0], "round_fastest_ms": [3.3, 3.0], "cpu": "c", "net": net},
        {"id": kept.id, "arch": kept.to_dict(), "median_ms": 1.0, "pass_medians_ms": [1.0, 1.01],
         "pass_canary_ms": [1.0, 1.0], "cpu": "c", "net": net}]
    assert record_loads(lines[0]) == [8.24] and record_loads(lines[1]) == [2.0, 1.99]
    path = tmp_path / "measurements.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in lines))
    assert collector.unconfirmed(path, NetConfig(), "c")[0] == []  # one load is enough by default
    todo, _ = collector.unconfirmed(path, NetConfig(), "c", loads=2)
    assert [d["id"] for d in todo] == [held[0].id, held[2].id, kept.id]
    todo, _ = collector.unconfirmed(path, NetConfig(), "c", loads=2, held_out_only=True)
    assert [d["id"] for d in todo] == [held[0].id, held[2].id]
    # three loads: none more, whatever they say
    with open(path, "a") as f:
        f.write(json.dumps({**lines[2], "round_fastest_ms": [3.3, 3.0, 3.2]}) + "\n")
    assert [d["id"] for d in collector.unconfirmed(path, NetConfig(), "c", loads=2, held_out_only=True)[0]] == [held[0].id]


def test_calibration_benchmark_truth_takes_sweeps_until_two_agree():
    bench = bench_script("calibration_benchmark")

    first = {"id": "a", "median_ms": 2.0, "pass_medians_ms": [2.0, 1.96, 1.97]}  # a load that ran slow
    assert bench.truth_wanted(None, 0, 2) and not bench.truth_wanted(first, 0, 2)
    assert bench.truth_wanted(first, 1, 2)  # a record from before sweeps counts as one
    two = bench.merge_rounds(first, {"id": "a", "median_ms": 1.1, "pass_medians_ms": [1.1, 1.08, 1.12]})
    assert two["round_fastest_ms"] == [1.96, 1.08] and two["pass_medians_ms"][-1] == 1.12
    assert two["median_ms"] == pytest.approx(1.54)
    # the two sweeps disagree: a third; once two agree, no more
    assert not bench.truth_wanted(two, 1, 2) and bench.truth_wanted(two, 2, 2)
    three = bench.merge_rounds(two, {"id": "a", "median_ms": 1.1, "pass_medians_ms": [1.1]})
    assert three["round_fastest_ms"] == [1.96, 1.08, 1.1] and not bench.truth_wanted(three, 3, 2)
    agreed = bench.merge_rounds(first, {"id": "a", "median_ms": 2.0, "pass_medians_ms": [1.99]})
    assert not bench.truth_wanted(agreed, 2, 2)


def test_tune_workloads_chooses_slow_or_beaten_workloads():
    """``bench/tune_workloads.py``: a workload is chosen when its record runs below the GFLOP/s
    bar and its calls add up to the time floor, or when it loses to another log by the factor
    (and 5 us); exactly one way of choosing is accepted."""
    from tvm_ofa.predict.workloads import Workload

    script = bench_script("tune_workloads")
    big = Workload("conv2d", "bias", 1, 64, 64, 56, 56, 1, 1)    # 12.8 MMAC
    small = Workload("dwconv", "bias_relu", 1, 32, 32, 14, 14, 3, 1)
    net = [big, big, small]
    best = {big.key: 0.4, small.key: 0.004}   # big: 64 GFLOP/s, 0.8 ms in all
    slow = script.parse_args(["--trials", "8", "--slow-gflops", "100", "--min-ms", "0.5"])
    assert script.choose(net, best, slow) == [big.key]
    floor = script.parse_args(["--trials", "8", "--slow-gflops", "100", "--min-ms", "1.0"])
    assert script.choose(net, best, floor) == []
    beaten = script.parse_args(["--trials", "8", "--worse-than", "x", "--factor", "1.2"])
    # small loses by 2x but by less than 5 us: not worth a tune
    assert script.choose(net, best, beaten, {big.key: 0.3, small.key: 0.002}) == [big.key]
    assert script.choose(net, best, beaten, {big.key: 0.35}) == []
    given = script.parse_args(["--trials", "8", "--keys", small.key, "conv2d:none"])
    assert script.choose(net, best, given) == [small.key]
    with pytest.raises(SystemExit):
        script.parse_args(["--trials", "8"])
    with pytest.raises(SystemExit):
        script.parse_args(["--trials", "8", "--keys", "a", "--slow-gflops", "1"])
    with pytest.raises(SystemExit, match=r"^error: .*no-such-target"):
        script.main(["--target", "no-such-target", "--trials", "8", "--keys", "a"])


def test_bench_runtime_pools_the_rounds_of_every_load():
    """A row is the median over all rounds of all fresh loads, so one slow load of a library
    (seen: 2.2 ms in one load, 3.7 ms in the next) moves it less than a single load would."""
    bench = bench_script("bench_runtime")
    assert bench.parse_args([]).loads == 2
    loads = [{"ONNX Runtime": [2.0, 2.1, 2.2], "tvm": [3.6, 3.7, 3.8]},
             {"ONNX Runtime": [2.1, 2.0, 2.3], "tvm": [2.1, 2.2, 2.3]}]
    assert bench.pooled_median(loads) == {"ONNX Runtime": 2.1, "tvm": pytest.approx(2.95)}


def test_bench_runtime_table_gives_each_tvm_column_over_onnx_runtime():
    """The issue's bar is a ratio to ONNX Runtime: the table prints it per TVM column, in bold
    where the artifact is at least as fast."""
    bench = bench_script("bench_runtime")
    tun = {"a": {"tuned_workloads": 51, "total_workloads": 51},
           "b": {"tuned_workloads": 50, "total_workloads": 51}}
    med = {"ONNX Runtime": 2.0, "tvm-ofa (TVM)": 2.5, "tvm-ofa (b)": 1.9}
    paired = {"tvm-ofa (TVM)": (1.1, 3, 10), "tvm-ofa (b)": (0.9, 8, 10)}
    lines = bench.table_rows([("smallest", 160, "r160-x", tun, med, paired)],
                             ["tvm-ofa (TVM)", "tvm-ofa (b)"], ["a", "b"])
    assert lines[0].endswith("| tuned workloads (TVM) | tuned workloads (b) | tvm-ofa (TVM) / ORT "
                             "| tvm-ofa (b) / ORT | tvm-ofa (TVM) / ORT per round (rounds <= 1) "
                             "| tvm-ofa (b) / ORT per round (rounds <= 1) |")
    assert lines[1].count("---") == 2 + 3 + 6
    assert lines[2] == ("| smallest (`r160-x`) | 160 | 2.00 ms | 2.50 ms | 1.90 ms | 51/51 | 50/51 "
                        "| 1.25 | **0.95** | 1.10 (3/10) | **0.90** (8/10) |")


def test_bench_runtime_pairs_each_round_with_onnx_runtimes():
    """A slow phase moves both runtimes of a round alike: the ratio is taken round by round, and
    the count says in how many rounds the artifact was at least as fast."""
    bench = bench_script("bench_runtime")
    loads = [{"ONNX Runtime": [2.0, 3.0, 2.0], "tvm": [1.8, 3.3, 2.0]},
             {"ONNX Runtime": [2.0, 2.0], "tvm": [2.2, 1.9]}]
    median, ahead, n = bench.paired_ratio(loads, "tvm")
    assert (median, ahead, n) == (pytest.approx(1.0), 3, 5)
