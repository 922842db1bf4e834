"""Calibration on a machine whose CPU has no logs: CPU folders kept apart, the closest source,
the calibration set, the calibrated predictor against the unchanged source and a MACs model, and
(slow) the whole loop on this machine with borrowed schedules, resume and an RPC device."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tvm_ofa.compiler.store import predictor_files
from tvm_ofa.predict.workloads import NetConfig, subnet_workloads

NET = NetConfig(width_mult=0.35, n_classes=10, stem_stride=2)
PROV = {"target": "host-test", "cpu": "newcpu", "cpu_features": ["avx", "avx2", "fma", "sse4.2"],
        "threads": 2, "tvm_version": "0.27.0.post1"}


def _source_seconds(w) -> float:
    """The source machine's (synthetic) tuned time of a workload."""
    from test_latency_predictor import synthetic_seconds

    return synthetic_seconds(w)


def _here_ms(arch) -> float:
    """A simulated new machine: 1x1 convolutions 2x slower, depthwise 1.5x faster than the
    source, and 0.2 ms more per network."""
    from tvm_ofa.predict.latency import op_group

    f = {"conv1x1": 2.0, "conv": 1.0, "dwconv": 1 / 1.5, "other": 1.0}
    return 0.2 + 1e3 * sum(_source_seconds(w) * f[op_group(w)] for w in subnet_workloads(arch, NET))


def _source_predictor(space):
    from tvm_ofa.predict.dataset import Measurement, WorkloadDataset
    from tvm_ofa.predict.latency import fit_predictor
    from tvm_ofa.predict.workloads import WorkloadTable

    wls = WorkloadTable(space, NET).workloads
    data = WorkloadDataset.from_latencies(wls, [_source_seconds(w) for w in wls])
    archs = space.sample_many(20, rng=7)
    meas = [Measurement(a, 1e3 * sum(_source_seconds(w) for w in subnet_workloads(a, NET)), NET) for a in archs]
    return fit_predictor("xgboost", data, meas, space, NET)


def test_find_source_picks_the_closest_cpu(tmp_path):
    from tvm_ofa.predict.calibrate import find_source

    root = tmp_path / "host-test"
    for name, feats, kind in (("far", ["sse4.2"], "xgboost"), ("near", ["avx", "avx2", "fma"], "xgboost"),
                              ("nearest-but-calibrated", PROV["cpu_features"], "calibrated"),
                              ("no-predictor", PROV["cpu_features"], None)):
        (root / name).mkdir(parents=True)
        if kind:
            (root / name / "latency_predictor.json").write_text(json.dumps({"kind": kind, "cpu_features": feats}))
    mine = root / "newcpu"
    assert find_source(mine, PROV) == root / "near"
    assert find_source(tmp_path / "other" / "newcpu", PROV) is None


def test_native_logs_are_kept_per_cpu(tmp_path):
    from tvm_ofa.targets import parse_target

    cfg = parse_target({"name": "host-test", "target": {"kind": "llvm", "mcpu": "native"}})
    d = cfg.log_dir(tmp_path)
    assert d.parent == tmp_path / "host-test" and d.name == cfg.host_cpu() and d.name != "native"


def test_calibration_set_starts_at_the_extremes_and_stays_covered(tiny_space):
    from tvm_ofa.predict.calibrate import calibration_set

    src = _source_predictor(tiny_space)
    archs = calibration_set(tiny_space, src, 10, seed=0)
    assert len({a.id for a in archs}) == 10
    lat = src.predict(archs)
    pool = src.predict(tiny_space.sample_many(500, rng=1))
    assert lat[0] <= pool.min() and lat[1] >= pool.max()
    assert [a.id for a in calibration_set(tiny_space, src, 10, seed=0)] == [a.id for a in archs]
    # only subnets whose every workload has a schedule to borrow
    extra = tiny_space.sample_many(6, rng=3)
    covered = {w.key for a in extra for w in subnet_workloads(a, NET)}
    picked = calibration_set(tiny_space, src, 4, covered=covered, extra=extra)
    assert picked and all(all(w.key in covered for w in subnet_workloads(a, NET)) for a in picked)


def test_calibrated_predictor_beats_source_and_macs_on_a_new_machine(tiny_space, tmp_path):
    from tvm_ofa.predict.calibrate import calibration_set
    from tvm_ofa.predict.dataset import Measurement, WorkloadDataset
    from tvm_ofa.predict.latency import CalibratedPredictor, evaluate, fit_predictor, load_predictor
    from tvm_ofa.predict.workloads import WorkloadTable

    src = _source_predictor(tiny_space)
    cal_archs = calibration_set(tiny_space, src, 12, seed=0)
    cal = [Measurement(a, _here_ms(a), NET) for a in cal_archs]
    held = [Measurement(a, _here_ms(a), NET) for a in tiny_space.sample_many(40, rng=11)]

    pred = CalibratedPredictor.from_source(src, None, {"cpu": "srccpu"})
    pred.calibrate(cal)
    ours, unchanged = evaluate(pred, held), evaluate(src, held)
    # the MACs-proportional baseline fitted on the same few measurements
    wls = WorkloadTable(tiny_space, NET).workloads
    macs = fit_predictor("macs", WorkloadDataset.from_latencies(wls, [1e-9 * max(w.macs, 1) for w in wls]),
                         cal, tiny_space, NET)
    base = evaluate(macs, held)
    assert ours["mape"] < 5 and ours["kendall_tau"] > 0.9
    assert ours["mape"] < unchanged["mape"] and ours["mape"] < base["mape"]
    assert pred.factors["conv1x1"] > pred.factors["dwconv"]

    pred.save(tmp_path, PROV)
    again = load_predictor(tmp_path, PROV)
    archs = tiny_space.sample_many(20, rng=5)
    np.testing.assert_allclose(again.predict(archs), pred.predict(archs), rtol=1e-6)

    # this machine's own tuned records replace the source's estimate for those workloads
    key = subnet_workloads(tiny_space.largest(), NET)[0].key
    local = WorkloadDataset.from_latencies([w for w in wls if w.key == key], [5e-3])
    pred.set_local(local)
    assert pred.workload_ms([w for w in wls if w.key == key])[0] == pytest.approx(5.0)


def test_borrowed_schedules_timed_here_replace_the_scaled_guess(tiny_space, tmp_path):
    """A new machine whose workloads differ from the source's each in its own way (not one factor
    per operator group): the times of the borrowed schedules taken here carry that, and the net
    scale over them is fitted."""
    import zlib

    from tvm_ofa.predict.calibrate import calibration_set
    from tvm_ofa.predict.dataset import Measurement
    from tvm_ofa.predict.latency import CalibratedPredictor, evaluate, load_predictor
    from tvm_ofa.predict.workloads import WorkloadTable

    def here_s(w) -> float:
        return _source_seconds(w) * (0.5 + (zlib.crc32(w.key.encode()) % 1000) / 1000)

    def truth(a) -> float:
        return 0.1 + 1e3 * 1.3 * sum(here_s(w) for w in subnet_workloads(a, NET))

    src = _source_predictor(tiny_space)
    cal = [Measurement(a, truth(a), NET) for a in calibration_set(tiny_space, src, 12, seed=0)]
    held = [Measurement(a, truth(a), NET) for a in tiny_space.sample_many(40, rng=11)]
    timed = {w.key: here_s(w) for w in WorkloadTable(tiny_space, NET).workloads}
    scaled = CalibratedPredictor.from_source(src)
    scaled.calibrate(cal)
    pred = CalibratedPredictor.from_source(src, None, {"cpu": "srccpu"}, timed)
    pred.calibrate(cal)
    ours, guess = evaluate(pred, held), evaluate(scaled, held)
    assert ours["mape"] < 3 and ours["kendall_tau"] > 0.9 and ours["mape"] < guess["mape"]
    assert pred.local_factor * pred.calibration[0] == pytest.approx(1.3, rel=0.05)
    pred.save(tmp_path, PROV)
    again = load_predictor(tmp_path, PROV)
    archs = [m.arch for m in held]
    np.testing.assert_allclose(again.predict(archs), pred.predict(archs), rtol=1e-6)


def test_a_failed_retime_leaves_calibration_going(tiny_space, tmp_path, monkeypatch):
    """Timing the borrowed schedules here is an improvement, not a precondition: when it cannot
    run, calibration says why and goes on with the source's scaled times."""
    import tvm_ofa.compiler.retime as retime
    from tvm_ofa.predict.calibrate import _retime_borrowed

    def refuse(*args, **kwargs):
        raise retime.RetimeError("srccpu: the canary workload does not build")

    monkeypatch.setattr(retime, "retime_records", refuse)
    events = []
    n = _retime_borrowed(None, _source_predictor(tiny_space), tmp_path / "srccpu", tmp_path / "here", {}, PROV,
                         float("inf"), lambda: 0.0, lambda *ev: events.append(ev))
    assert n == 0 and events[-1][0] == "warning" and "canary workload does not build" in events[-1][3]


def test_few_measurements_fit_one_common_factor(tiny_space):
    from tvm_ofa.predict.dataset import Measurement
    from tvm_ofa.predict.latency import CalibratedPredictor

    src = _source_predictor(tiny_space)
    pred = CalibratedPredictor.from_source(src)
    a, b = tiny_space.smallest(), tiny_space.largest()
    pred.calibrate([Measurement(a, 3 * float(src.predict([a])[0]), NET),
                    Measurement(b, 3 * float(src.predict([b])[0]), NET)])
    assert len(set(pred.factors.values())) == 1
    np.testing.assert_allclose(pred.predict([a, b]), 3 * src.predict([a, b]), rtol=1e-6)


def test_calibrated_starts_as_the_source_and_scales_its_overheads(tiny_space, tmp_path):
    from tvm_ofa.predict.dataset import Measurement
    from tvm_ofa.predict.latency import CalibratedPredictor, load_predictor

    src = _source_predictor(tiny_space)
    src.calibration = (1.2, 0.3, 0.01)  # overheads that dominate small subnets
    archs = tiny_space.sample_many(8, rng=3) + [tiny_space.smallest(), tiny_space.largest()]
    pred = CalibratedPredictor.from_source(src)
    np.testing.assert_allclose(pred.predict(archs), src.predict(archs), rtol=1e-9)
    a, b = tiny_space.smallest(), tiny_space.largest()
    pred.calibrate([Measurement(a, 0.5 * float(src.predict([a])[0]), NET),
                    Measurement(b, 0.5 * float(src.predict([b])[0]), NET)])
    np.testing.assert_allclose(pred.predict(archs), 0.5 * src.predict(archs), rtol=1e-6)
    pred.save(tmp_path, PROV)
    again = load_predictor(tmp_path, PROV)
    np.testing.assert_allclose(again.predict(archs), pred.predict(archs), rtol=1e-9)


# -- the real loop on this machine ---------------------------------------------------------------
SOURCE_SLOWDOWN = 3.0


def _host_cfg(**over):
    from tvm_ofa.targets import parse_target

    return parse_target({"name": "host-test", "target": {"kind": "llvm", "mcpu": "native"}, "threads": 1,
                         "tuning": {"trials_per_task": 2, "trials_per_round": 2}, **over}, "host-test.yaml")


@pytest.fixture(scope="module")
def source_machine(tmp_path_factory, tiny_space, tiny_supernet):
    """Another CPU's folder: a MetaSchedule database holding a schedule (TVM's default one,
    with synthetic timings) for every workload of six subnets, and a predictor fitted on it."""
    from test_latency_predictor import _tasks, _write_database

    from tvm_ofa.predict.dataset import Measurement, build_dataset
    from tvm_ofa.predict.latency import fit_predictor
    from tvm_ofa.predict.workloads import workload_from_mod

    root = tmp_path_factory.mktemp("logs")
    src = root / "host-test" / "srccpu"
    src.mkdir(parents=True)
    archs = [tiny_space.smallest(32), tiny_space.largest(32)] + tiny_space.sample_many(4, rng=9)
    archs = [a.__class__(a.ks, a.e, a.d, resolution=32) for a in archs]
    seen, tasks = set(), []
    for a in archs:
        for t in _tasks(tiny_supernet, a):
            key = workload_from_mod(t.dispatched[0]).key
            if key not in seen:
                seen.add(key)
                tasks.append(t)
    # the source machine is 3x slower than any CPU this runs on is likely to be, so that the
    # unchanged source predictor is clearly wrong here (synthetic times can happen to be close)
    _write_database(src, tasks, lambda mod: SOURCE_SLOWDOWN * _source_seconds(workload_from_mod(mod)))
    meas = [Measurement(a, 1e3 * SOURCE_SLOWDOWN * sum(_source_seconds(w) for w in subnet_workloads(a, NET)), NET)
            for a in archs]
    with open(src / "measurements.jsonl", "w") as f:
        for m in meas:
            f.write(json.dumps(m.to_dict()) + "\n")
    pred = fit_predictor("xgboost", build_dataset(src), meas, tiny_space, NET)
    pred.save(src, {**PROV, "cpu": "srccpu", "cpu_features": ["sse4.2"]})
    return root, src, archs


@pytest.mark.slow
def test_calibrate_borrows_schedules_resumes_and_beats_the_source(source_machine, tiny_supernet, tmp_path,
                                                                 monkeypatch):
    import shutil

    import tvm_ofa.predict.calibrate as calibration

    # a CI machine's slow phases must not make the borrowed schedules' timing retake batches
    monkeypatch.setattr(calibration, "RETIME_SLOW", 100.0)

    import torch

    from tvm_ofa import load_artifact
    from tvm_ofa.compiler.pipeline import emit
    from tvm_ofa.compiler.store import CALIBRATION_MEASUREMENTS_FILE as MEASUREMENTS_FILE
    from tvm_ofa.predict.calibrate import calibrate, read_measurements
    from tvm_ofa.predict.latency import evaluate, load_predictor
    from tvm_ofa.predict.dataset import Measurement
    from tvm_ofa.targets import host_provenance

    root0, src0, archs = source_machine
    root = tmp_path / "logs"
    shutil.copytree(root0, root)
    cfg = _host_cfg()
    here = cfg.log_dir(root)
    assert not here.exists()

    # a calibration in a process of its own, killed with SIGKILL after its first measurement
    import sys
    import textwrap

    from conftest import kill_when, lock_held_elsewhere
    from tvm_ofa.compiler.store import DatabaseBusy

    script = tmp_path / "calibrate.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import tvm_ofa.predict.calibrate as calibration
        from test_calibrate import _host_cfg
        calibration.RETIME_SLOW = 100.0
        calibration.calibrate(_host_cfg(), minutes=20, log_root=sys.argv[1], n_subnets=4, tune=False, repeats=5)
    """))
    kill_when([sys.executable, str(script), str(root)], lambda: len(read_measurements(here)) >= 1)
    k = len(read_measurements(here))
    assert 1 <= k < 4
    # one writer per folder: a second calibration is refused while another process holds it
    with lock_held_elsewhere(here), pytest.raises(DatabaseBusy, match="another process"):
        calibrate(cfg, minutes=20, log_root=root, n_subnets=4, tune=False, repeats=5)
    rep = calibrate(cfg, minutes=20, log_root=root, n_subnets=4, tune=False, repeats=5)
    lines = (here / MEASUREMENTS_FILE).read_text().splitlines()
    assert rep.measured == 4 and rep.measured_now == 4 - k and len(lines) == 4  # nothing measured twice
    assert len(predictor_files(here)) == 1  # refit after every measurement
    # the borrowed schedules were timed here and the predictor uses those times
    from tvm_ofa.compiler.store import BORROWED_FILE
    from tvm_ofa.predict.calibrate import borrowed_times

    assert rep.retimed_workloads > 0 and (here / BORROWED_FILE).is_file()
    assert len(borrowed_times(here)) == rep.retimed_workloads
    assert rep.source_cpu == "srccpu" and all(json.loads(x)["coverage"] == 1.0 for x in lines)

    # the source is stored relative to this folder, so a log root moves (or is committed) whole
    from tvm_ofa.compiler.store import calibration_source

    assert json.loads((here / "calibration.json").read_text())["source_dir"] == "../srccpu"
    shutil.copytree(root, tmp_path / "moved")
    moved = cfg.log_dir(tmp_path / "moved")
    assert calibration_source(moved).resolve() == (moved.parent / "srccpu").resolve()

    # a library built here from the borrowed schedules works and matches PyTorch
    arch = archs[-1]
    folder = emit(cfg, arch, tiny_supernet.extract(arch).eval(), log_root=root, out_root=tmp_path / "art",
                  tune_first=True, repeats=5)
    meta = json.loads((folder / "metadata.json").read_text())
    assert meta["tuning"]["coverage"] == 1.0
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype("float32")
    with torch.no_grad():
        ref = tiny_supernet.extract(arch)(torch.from_numpy(x)).numpy()
    assert np.abs(load_artifact(folder)(x) - ref).max() <= 1e-4

    # held-out subnets measured here: the calibrated predictor beats the source's unchanged
    prov = host_provenance(cfg)
    pred = load_predictor(here, prov)
    assert pred.kind == "calibrated"
    cal_ids = {m["id"] for m in read_measurements(here)}
    held = [a for a in archs if a.id not in cal_ids][:2]
    assert held
    truth = []
    for a in held:
        f = emit(cfg, a, tiny_supernet.extract(a).eval(), log_root=root, out_root=tmp_path / "held",
                 tune_first=False, repeats=10)
        truth.append(Measurement(a, json.loads((f / "metadata.json").read_text())["latency"]["median_ms"], NET))
    from tvm_ofa.predict.calibrate import load_source

    source = load_source(src0, prov)
    assert evaluate(pred, truth)["mape"] < evaluate(source, truth)["mape"]

    # step 5: tuning here, then this machine's own records are used
    timed = borrowed_times(here)
    rep = calibrate(cfg, minutes=20, log_root=root, n_subnets=4, tune=True, trials_per_task=1, tune_rounds=1,
                    repeats=5)
    assert rep.tuned_workloads > 0
    assert set(timed) <= set(borrowed_times(here))  # what was timed at speed is not timed again
    assert load_predictor(here, prov).local_ms


def test_calibrate_bad_input_is_one_line(source_machine, tmp_path):
    import shutil

    from tvm_ofa.predict.calibrate import CalibrationError, calibrate

    root0, src0, _ = source_machine
    cfg = _host_cfg()
    with pytest.raises(CalibrationError, match=r"too short.*at least"):
        calibrate(cfg, minutes=0.1, log_root=root0)
    with pytest.raises(CalibrationError, match="latency collect"):
        calibrate(cfg, minutes=5, log_root=tmp_path / "empty")
    root = tmp_path / "old"
    shutil.copytree(root0, root)
    doc_path, = predictor_files(root / "host-test" / "srccpu")
    doc = json.loads(doc_path.read_text())
    doc_path.write_text(json.dumps({**doc, "tvm_version": "0.19.0"}))
    with pytest.raises(CalibrationError, match="TVM 0.19.0"):
        calibrate(cfg, minutes=5, log_root=root)
    rpc = _host_cfg(runner={"kind": "rpc", "tracker_host": "127.0.0.1", "tracker_port": 9, "key": "board"})
    with pytest.raises(CalibrationError, match=r"127\.0\.0\.1:9 \(key board\)"):
        calibrate(rpc, minutes=5, log_root=root0, source_dir=src0)


def test_cli_calibrate_errors_are_one_line(tmp_path, capsys):
    from tvm_ofa.cli import main

    target = tmp_path / "t.yaml"
    target.write_text("name: t\ntarget: {kind: llvm, mcpu: native}\n")
    assert main(["calibrate", "--target", str(target), "--log-root", str(tmp_path), "--minutes", "3"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--source" in err


@pytest.mark.slow
def test_calibrate_a_device_through_an_rpc_tracker(source_machine, tmp_path, monkeypatch):
    """A remote device (a loopback tracker and server): measured there, logs under the target."""
    import tvm_ofa.predict.calibrate as calibration

    monkeypatch.setattr(calibration, "RETIME_SLOW", 100.0)
    from tvm_ofa.compiler.rpc import LoopbackRPC
    from tvm_ofa.predict.calibrate import calibrate, read_measurements
    from tvm_ofa.targets import parse_target

    root0, src0, _ = source_machine
    with LoopbackRPC(key="tvm-ofa-cal") as rpc:
        host = _host_cfg().host_cpu()
        cfg = parse_target({"name": "board", "target": {"kind": "llvm", "mcpu": host},
                            "runner": {"kind": "rpc", "tracker_host": "127.0.0.1", "tracker_port": rpc.port,
                                       "key": "tvm-ofa-cal"}}, "board.yaml")
        rep = calibrate(cfg, minutes=20, log_root=tmp_path, source_dir=src0, n_subnets=2, tune=False, repeats=5)
    assert rep.measured == 2 and Path(rep.log_dir) == tmp_path / "board"
    assert all(m["median_ms"] > 0 for m in read_measurements(tmp_path / "board"))


def test_specialize_on_a_cpu_without_logs_calibrates_first_and_says_so(tiny_space, tmp_path, monkeypatch, capsys):
    from tvm_ofa.cli import calibrate as cli
    from tvm_ofa.predict import calibrate as lib
    from tvm_ofa.predict.latency import CalibratedPredictor
    from tvm_ofa.targets import host_provenance

    cfg = _host_cfg()
    prov = host_provenance(cfg)
    src = tmp_path / "host-test" / "srccpu"
    _source_predictor(tiny_space).save(src, {**prov, "cpu": "srccpu"})
    calls = []

    def fake(cfg_, *, minutes, **kw):
        calls.append((minutes, kw["source_dir"]))
        CalibratedPredictor.from_source(_source_predictor(tiny_space)).save(cfg_.log_dir(kw["log_root"]), prov)

    monkeypatch.setattr(lib, "calibrate", fake)
    pred = cli.ensure_predictor(cfg, str(tmp_path), 3.0)
    out = capsys.readouterr().out
    assert pred.kind == "calibrated" and calls == [(3.0, src)]
    assert out.count("\n") == 1 and f"({prov['cpu']}) has no logs of its own for this network: calibrating from {src}" in out
    cli.ensure_predictor(cfg, str(tmp_path), 3.0)  # the second time it has its own
    assert len(calls) == 1 and capsys.readouterr().out == ""
