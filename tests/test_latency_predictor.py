"""Latency predictor: analytic task lists vs TVM, dataset from a tuning database, fit/predict,
persistence checks. CPU-sized: tiny space, width-0.35 supernet, synthetic tuning records (no
builds, no timing)."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from tvm_ofa.predict.latency import SHRINK_GRID
from tvm_ofa.predict.workloads import NetConfig, Workload, WorkloadTable, subnet_workloads, task_multiset

NET = NetConfig(width_mult=0.35, n_classes=10, stem_stride=2)


def _target():
    import tvm

    return tvm.target.Target({"kind": "llvm", "mcpu": "generic", "num-cores": 1})


def _tasks(supernet, arch, batch=1):
    from tvm.s_tir.meta_schedule.relax_integration import extract_tasks

    from tvm_ofa.compiler.lower import lower_module

    lowered = lower_module(supernet.extract(arch), (batch, 3, arch.resolution, arch.resolution))
    return extract_tasks(lowered.mod, _target())


def synthetic_seconds(w: Workload) -> float:
    """A known, non-linear cost: compute with an efficiency that depends on shape, plus memory
    traffic and a per-task launch cost (so MACs alone cannot explain it)."""
    eff = {"conv2d": 8e9, "dwconv": 1.5e9, "mean": 3e9, "reshape": 1e10, "matmul": 4e9}[w.kind]
    eff *= min(1.0, (w.cout / 64) ** 0.5) * (0.6 if w.k >= 5 else 1.0)
    nbytes = 4 * (w.in_elems + w.weight_elems + w.out_elems)
    return 2e-6 + 2 * w.macs / eff + nbytes / 2e10


@pytest.mark.parametrize("seed", [0, 1])
def test_analytic_tasks_match_tvm(tiny_space, tiny_supernet, seed):
    from tvm_ofa.predict.workloads import tvm_task_multiset

    arch = tiny_space.sample(seed)
    assert tvm_task_multiset(_tasks(tiny_supernet, arch)) == task_multiset(arch, NET)


def test_analytic_tasks_match_tvm_batch2_and_table(tiny_space, tiny_supernet):
    from tvm_ofa.predict.workloads import tvm_task_multiset

    arch = tiny_space.smallest(32)  # 1x1 last stage: the shapes where stride is ambiguous
    net2 = NetConfig(0.35, 10, 2, batch=2)
    assert tvm_task_multiset(_tasks(tiny_supernet, arch, batch=2)) == task_multiset(arch, net2)
    table = WorkloadTable(tiny_space, NET)
    for a in tiny_space.sample_many(20, rng=3):
        assert table.counts(a) == task_multiset(a, NET)


def test_workload_key_roundtrip_and_outside_space(tiny_space):
    from tvm_ofa.arch import ArchConfig
    from tvm_ofa.errors import ArchError

    for w in subnet_workloads(tiny_space.largest(), NET):
        assert Workload.from_key(w.key) == w
    table = WorkloadTable(tiny_space, NET)
    bad = ArchConfig(ks=[9] * 20, e=[3] * 20, d=[2] * 5, resolution=32)
    with pytest.raises(ArchError, match="ks"):
        table.ids([tiny_space.smallest(), bad])
    with pytest.raises(ArchError, match="resolution"):
        table.ids([ArchConfig(ks=[3] * 20, e=[3] * 20, d=[2] * 5, resolution=36)])


def _write_database(log_dir, tasks, seconds_of):
    """A MetaSchedule JSON database with one record per task whose run time is ``seconds_of``."""
    from tvm.s_tir import Schedule
    from tvm.s_tir import meta_schedule as ms

    db = ms.database.JSONDatabase(path_workload=str(log_dir / "database_workload.json"),
                                  path_tuning_record=str(log_dir / "database_tuning_record.json"),
                                  allow_missing=True)
    target = _target()
    for t in tasks:
        mod = t.dispatched[0]
        wl = db.commit_workload(mod)
        secs = seconds_of(mod)
        # TVM's default schedule; a trace with one no-op step, as MetaSchedule's top-k skips
        # records with an empty trace
        sch = Schedule(mod)
        sch.get_sblock("root", func_name="main")
        db.commit_tuning_record(ms.database.TuningRecord(
            sch.trace, wl, [secs], target,
            ms.arg_info.ArgInfo.from_prim_func(mod["main"])))
        # a failed candidate as MetaSchedule stores it: huge run time, must not become the best
        db.commit_tuning_record(ms.database.TuningRecord(Schedule(mod).trace, wl, [1e10], target,
                                                         ms.arg_info.ArgInfo.from_prim_func(mod["main"])))
    return db


def _foreign_task():
    import tvm
    from tvm import te

    a = te.placeholder((7, 9), name="a")
    b = te.compute((7, 9), lambda i, j: te.exp(a[i, j]), name="b")
    return tvm.IRModule({"main": te.create_prim_func([a, b])})


@pytest.fixture(scope="module")
def synthetic_db(tmp_path_factory, tiny_space, tiny_supernet):
    """A real MetaSchedule database for two subnets' tasks plus a foreign workload, with run
    times from :func:`synthetic_seconds`, a failed record per task and two garbage lines."""
    from tvm_ofa.predict.workloads import workload_from_mod

    log_dir = tmp_path_factory.mktemp("logs") / "t"
    log_dir.mkdir()
    tasks = list(_tasks(tiny_supernet, tiny_space.sample(5)))

    class _Foreign:
        dispatched = [_foreign_task()]
        task_name, weight = "foreign_exp", 1

    _write_database(log_dir, tasks + [_Foreign()],
                    lambda mod: synthetic_seconds(workload_from_mod(mod)) if workload_from_mod(mod) else 1e-3)
    with open(log_dir / "database_tuning_record.json", "a") as f:
        f.write('[0, [["trace"], [0.001\n')  # a torn line from a killed tuner
        f.write("not json at all\n")
    return log_dir, tasks


def test_dataset_from_database_counts_garbage(synthetic_db):
    from tvm_ofa.predict.dataset import build_dataset
    from tvm_ofa.predict.workloads import workload_from_mod

    log_dir, tasks = synthetic_db
    data = build_dataset(log_dir)
    assert len(data) == len(tasks)
    assert data.skipped_lines == 2 and data.foreign_workloads == 1
    assert data.failed_records == len(tasks)
    got = data.by_key()
    for t in tasks:
        w = workload_from_mod(t.dispatched[0])
        assert got[w.key] == pytest.approx(synthetic_seconds(w))


def test_cli_fit_predict_eval(synthetic_db, tmp_path, capsys):
    from tvm_ofa.cli import main

    log_dir, _ = synthetic_db
    target = tmp_path / "t.yaml"
    target.write_text("name: t\ntarget: {kind: llvm, mcpu: generic}\n")
    common = ["--target", str(target), "--log-root", str(log_dir.parent)]
    assert main(["latency", "fit", *common, "--width-mult", "0.35", "--n-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "2 unreadable lines" in out and "1 foreign workloads" in out
    assert [p.name for p in log_dir.glob("latency_predictor.*.json")] == ["latency_predictor.10c-w0.35-r128-224.json"]
    assert main(["latency", "predict", *common, "--arch", "random:3"]) == 0
    assert "predicted" in capsys.readouterr().out
    assert main(["latency", "predict", *common, "--arch", '{"ks": [9], "e": [3], "d": [1]}']) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err
    assert main(["latency", "eval", *common]) == 0
    out = capsys.readouterr().out
    assert "tasks never tuned" in out and "bias slowest 1/3" in out
    assert main(["latency", "fit", "--target", str(target), "--log-root", str(tmp_path / "none")]) == 1
    assert "tvm-ofa tune" in capsys.readouterr().err
    # re-timing logs that do not exist: one line, and no empty database left behind
    assert main(["latency", "retime", "--target", str(target), "--log-root", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tvm-ofa tune" in err
    assert not list((tmp_path / "none").rglob("database_*.json"))


def test_a_default_run_writes_to_the_users_folder_and_never_changes_what_shipped(synthetic_db, tmp_path,
                                                                                   monkeypatch, capsys):
    """Without --log-root, logs are read from and written to the user's data folder, which starts
    as a copy of the shipped logs: fitting a predictor leaves the shipped files byte-identical."""
    import shutil

    from tvm_ofa.cli import main
    from tvm_ofa.compiler import store
    from tvm_ofa.targets import load_target

    target = tmp_path / "t.yaml"
    target.write_text("name: t\ntarget: {kind: llvm, mcpu: native}\n")
    cpu = load_target(target).host_cpu()
    shipped = tmp_path / "shipped"
    database = shutil.ignore_patterns("latency_predictor*")  # another test may have fitted one there
    shutil.copytree(synthetic_db[0], shipped / "t" / cpu, ignore=database)
    shutil.copytree(synthetic_db[0], shipped / "t" / "othercpu", ignore=database)
    monkeypatch.setattr(store, "SHIPPED_LOG_ROOT", shipped)
    monkeypatch.setenv("TVM_OFA_HOME", str(tmp_path / "home"))
    before = {p: p.read_bytes() for p in shipped.rglob("*") if p.is_file()}
    assert main(["latency", "fit", "--target", str(target), "--width-mult", "0.35", "--n-classes", "10"]) == 0
    capsys.readouterr()
    user = tmp_path / "home" / "tuning_logs" / "t"
    assert list((user / cpu).glob("latency_predictor.*.json")) and (user / "othercpu").is_dir()
    assert {p: p.read_bytes() for p in shipped.rglob("*") if p.is_file()} == before
    assert not list(shipped.rglob("latency_predictor.*"))
    # maintainers write to the shipped folder itself by naming it
    monkeypatch.setenv("TVM_OFA_LOG_ROOT", str(shipped))
    assert main(["latency", "fit", "--target", str(target), "--width-mult", "0.35", "--n-classes", "10"]) == 0
    assert list((shipped / "t" / cpu).glob("latency_predictor.*.json"))


def test_eval_scores_held_out_subnets_at_unmeasured_resolutions_apart(synthetic_db, tiny_space, tmp_path, capsys):
    """Calibrated on 32 and 40 px only, eval reports the held-out subnets at 48 px on their own
    (what a search over the whole space mostly asks about), with the size-class bias."""
    import shutil

    from tvm_ofa.cli import main
    from tvm_ofa.predict.dataset import Measurement, is_held_out

    log_dir = tmp_path / "logs" / "t"  # mcpu: generic below: no CPU folder
    shutil.copytree(synthetic_db[0], log_dir)
    rng = np.random.default_rng(0)
    pool = [tiny_space.sample(rng, resolution=px) for px in (32, 40, 48) for _ in range(24)]
    keep = [a for a in pool if a.resolution < 48 or is_held_out(a)]
    lines = [json.dumps(Measurement(a, 1e3 * sum(synthetic_seconds(w) for w in subnet_workloads(a, NET)) + 0.05,
                                    NET, cpu="generic").to_dict()) for a in keep]
    (log_dir / "measurements.jsonl").write_text("\n".join(lines) + "\n")
    target = tmp_path / "t.yaml"
    target.write_text("name: t\ntarget: {kind: llvm, mcpu: generic}\n")
    off = [a for a in keep if a.resolution == 48]
    assert off and main(["latency", "eval", "--target", str(target), "--log-root", str(tmp_path / "logs"),
                         "--json", "--plot", str(tmp_path / "e.png")]) == 0
    out = json.loads(capsys.readouterr().out)
    got = out["subnets_unseen_resolutions"]["xgboost"]
    assert got["n"] == len(off) and "bias_large_pct" in out["subnets"]["xgboost"]


def test_no_logs_is_a_one_line_error(tmp_path):
    from tvm_ofa.errors import TvmOfaError
    from tvm_ofa.predict.dataset import build_dataset

    with pytest.raises(TvmOfaError, match="tvm-ofa tune"):
        build_dataset(tmp_path / "nothing")


def _synthetic(space, rng):
    from tvm_ofa.predict.dataset import Measurement, WorkloadDataset

    table = WorkloadTable(space, NET)
    wls = table.workloads
    train = rng.random(len(wls)) < 0.6  # 40 % of the shapes are never "tuned"
    lat = np.array([synthetic_seconds(w) for w in wls]) * np.exp(rng.normal(0, 0.03, len(wls)))
    data = WorkloadDataset.from_latencies([w for w, t in zip(wls, train) if t], lat[train])
    archs = space.sample_many(60, rng=rng)
    true = [1e3 * sum(synthetic_seconds(w) for w in subnet_workloads(a, NET)) + 0.05 for a in archs]
    meas = [Measurement(a, t, NET) for a, t in zip(archs, true)]
    return data, meas, wls, train, lat


def test_xgboost_generalizes_to_unseen_shapes_and_beats_baselines(tiny_space):
    from tvm_ofa.predict.latency import evaluate, fit_predictor

    rng = np.random.default_rng(0)
    data, meas, wls, train, lat = _synthetic(tiny_space, rng)
    fit_meas, test_meas = meas[:20], meas[20:]
    preds = {k: fit_predictor(k, data, fit_meas, tiny_space, NET) for k in ("xgboost", "macs", "lookup")}
    unseen = [w for w, t in zip(wls, train) if not t]
    err = np.abs(preds["xgboost"].workload_ms(unseen) / (1e3 * lat[~train]) - 1)
    err_macs = np.abs(preds["macs"].workload_ms(unseen) / (1e3 * lat[~train]) - 1)
    assert np.median(err) < 0.25 and np.median(err) < np.median(err_macs)
    # a tuned shape keeps its measured time (the build uses that very schedule), shrunk by the
    # cross-validated amount towards the trees that never saw it
    seen = [w for w, t in zip(wls, train) if t]
    xg = preds["xgboost"]
    assert xg.shrink in SHRINK_GRID
    cross = np.array([xg._cross[w.key] for w in seen])
    np.testing.assert_allclose(xg.workload_ms(seen), 1e3 * lat[train] ** (1 - xg.shrink) * cross ** xg.shrink,
                               rtol=1e-9)
    scores = {k: evaluate(p, test_meas) for k, p in preds.items()}
    assert scores["xgboost"]["mape"] < scores["macs"]["mape"]
    assert scores["xgboost"]["mape"] < scores["lookup"]["mape"]
    assert scores["xgboost"]["kendall_tau"] > 0.8
    assert scores["xgboost"]["mape"] < 10


def test_cross_validate_scores_every_subnet_with_a_calibration_that_never_saw_it(tiny_space):
    from tvm_ofa.predict.dataset import Measurement
    from tvm_ofa.predict.latency import cross_predict, cross_validate, fit_predictor

    rng = np.random.default_rng(3)
    data, meas, *_ = _synthetic(tiny_space, rng)
    # the end-to-end law differs from the task sum by a factor only the calibration can learn
    meas = [Measurement(m.arch, 1.5 * m.latency_ms, NET) for m in meas]
    lookup = fit_predictor("lookup", data, space=tiny_space, net=NET)
    got = cross_validate(lookup, meas)
    assert got["n"] == len(meas) and got["mape"] < 15
    # left calibrated on all of them, as fit would have it
    assert lookup.calibration == pytest.approx(fit_predictor("lookup", data, meas, tiny_space, NET).calibration)
    # a subnet is predicted by the calibration of the other folds, whatever its own truth
    from tvm_ofa.predict.dataset import key_fold

    odd = [Measurement(m.arch, (30.0 if i == 0 else 1.0) * m.latency_ms, NET) for i, m in enumerate(meas)]
    ms, p = cross_predict(fit_predictor("macs", data, space=tiny_space, net=NET), odd)
    others = [m for m in odd if key_fold("cv:" + m.arch.id, 5) != key_fold("cv:" + odd[0].arch.id, 5)]
    alone = fit_predictor("macs", data, others, tiny_space, NET).predict([odd[0].arch])[0]
    assert ms[0] is odd[0] and p[0] == pytest.approx(alone)
    assert p[0] == pytest.approx(cross_predict(fit_predictor("macs", data, space=tiny_space, net=NET), meas)[1][0])
    assert cross_validate(lookup, meas[:9]) == {"n": 0}


def test_noisy_records_are_shrunk_towards_their_neighbours(tiny_space):
    """Each tuned workload's record is off by a random +-30 % (one 16-trial search's luck and a
    shared machine's timing); cross-validation over the measured subnets then picks a shrink > 0
    and the predictor gets closer to subnets it never saw than the raw records do."""
    from tvm_ofa.predict.dataset import Measurement, WorkloadDataset
    from tvm_ofa.predict.latency import LatencyPredictor, evaluate, fit_predictor

    rng = np.random.default_rng(7)
    wls = WorkloadTable(tiny_space, NET).workloads
    true = np.array([synthetic_seconds(w) for w in wls])
    data = WorkloadDataset.from_latencies(wls, true * np.exp(rng.normal(0, 0.3, len(wls))))
    archs = tiny_space.sample_many(80, rng=rng)
    meas = [Measurement(a, 1e3 * sum(synthetic_seconds(w) for w in subnet_workloads(a, NET)), NET) for a in archs]
    pred = fit_predictor("xgboost", data, meas[:40], tiny_space, NET)
    assert pred.shrink > 0 and pred.meta["shrink"] == pred.shrink
    assert fit_predictor("xgboost", data, meas[:5], tiny_space, NET).shrink == 0.0  # too few to choose
    # the same model keeping the raw records, calibrated on the same subnets
    raw = fit_predictor("xgboost", data, meas[:40], tiny_space, NET)
    raw._set_shrink(0.0)
    LatencyPredictor.calibrate(raw, meas[:40])
    assert evaluate(pred, meas[40:])["mape"] < evaluate(raw, meas[40:])["mape"]


def test_save_load_refuses_other_tvm_and_target(tmp_path, tiny_space):
    from tvm_ofa.predict.latency import CpuMismatchWarning, LatencyPredictorError, fit_predictor, load_predictor

    data, meas, *_ = _synthetic(tiny_space, np.random.default_rng(1))
    pred = fit_predictor("xgboost", data, meas[:10], tiny_space, NET)
    prov = {"target": "host-cpu", "cpu": "znver4", "cpu_features": ["avx2"], "threads": 2,
            "tvm_version": "0.27.0.post1"}
    pred.save(tmp_path, prov)
    from tvm_ofa.predict.latency import predictor_file

    doc = json.loads((tmp_path / predictor_file(NET, tiny_space)).read_text())
    assert doc["n_workloads"] == len(data) and doc["n_measurements"] == 10 and doc["cpu"] == "znver4"
    archs = tiny_space.sample_many(50, rng=2)
    again = load_predictor(tmp_path, prov)
    np.testing.assert_allclose(again.predict(archs), pred.predict(archs), rtol=1e-5)
    with pytest.raises(LatencyPredictorError, match="TVM 0.26"):
        load_predictor(tmp_path, {**prov, "tvm_version": "0.26"})
    with pytest.raises(LatencyPredictorError, match="target"):
        load_predictor(tmp_path, {**prov, "target": "arm-cortex-a72"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_predictor(tmp_path, {**prov, "cpu": "skylake"})
        load_predictor(tmp_path, {**prov, "cpu": "skylake"})
    assert sum(issubclass(w.category, CpuMismatchWarning) for w in caught) == 1


def test_calibration_stays_positive_with_few_inconsistent_measurements(tiny_space):
    from tvm_ofa.predict.dataset import Measurement
    from tvm_ofa.predict.latency import fit_predictor

    data, meas, *_ = _synthetic(tiny_space, np.random.default_rng(2))
    # the tuner's isolated timings can exceed the whole network's (a loaded machine while tuning)
    low = [Measurement(m.arch, 0.3 * m.median_ms, NET) for m in meas[:1]]
    pred = fit_predictor("macs", data, low, tiny_space, NET)
    assert pred.calibration[0] < 1 and (pred.predict(tiny_space.sample_many(30, rng=4)) > 0).all()


def test_repeated_timings_round_trip_and_give_the_noise_ceiling(tiny_space, tmp_path):
    from tvm_ofa.predict.dataset import Measurement, load_measurements
    from tvm_ofa.predict.latency import repeatability

    archs = tiny_space.sample_many(4, rng=5)
    # two passes per subnet; the third subnet's second pass is 20 % slower
    ms = [Measurement(a, 1.0 + i, NET, passes_ms=(1.0 + i, (1.0 + i) * (1.2 if i == 2 else 1.02)))
          for i, a in enumerate(archs[:3])] + [Measurement(archs[3], 5.0, NET)]
    lines = [json.dumps(m.to_dict()) for m in ms]
    lines.append(json.dumps({**ms[0].to_dict(), "pass_medians_ms": [1.0, -2.0]}))  # corrupt: counted
    (tmp_path / "measurements.jsonl").write_text("\n".join(lines) + "\n")
    back, bad = load_measurements(tmp_path)
    assert bad == 1 and [m.passes_ms for m in back] == [m.passes_ms for m in ms]
    r = repeatability(back)
    assert r["n"] == 3  # the subnet timed once does not count
    assert r["within_10pct"] == pytest.approx(2 / 3) and r["kendall_tau"] == pytest.approx(1.0)
    # size bias, apart for the fastest and the slowest third: only the slowest is 1/1.2 too fast
    assert r["bias_small_pct"] == pytest.approx(100 * (1 / 1.02 - 1))
    assert r["bias_large_pct"] == pytest.approx(100 * (1 / 1.2 - 1))
    assert repeatability(back[3:]) == {"n": 0}
    # more passes: the fastest even-numbered pass predicts the fastest odd-numbered one, so a
    # slow pass (the machine slowed by its neighbours) does not count against the predictor
    five = Measurement(archs[0], 1.0, NET, passes_ms=(1.0, 1.0, 3.0, 1.0, 1.0))
    assert repeatability([five])["mape"] == pytest.approx(0.0)


def test_one_predictor_per_network_in_a_cpu_folder(tiny_space, tmp_path):
    from tvm_ofa.arch import SearchSpace
    from tvm_ofa.predict.calibrate import find_source
    from tvm_ofa.predict.latency import LatencyPredictorError, fit_predictor, load_predictor

    data, meas, *_ = _synthetic(tiny_space, np.random.default_rng(1))
    prov = {"target": "host-cpu", "cpu": "znver4", "cpu_features": ["avx2"], "threads": 2,
            "tvm_version": "0.27.0.post1"}
    small = fit_predictor("xgboost", data, meas[:10], tiny_space, NET)
    other_space, other_net = SearchSpace(resolutions=(40,)), NetConfig(width_mult=0.35, n_classes=7)
    other = fit_predictor("macs", data, (), other_space, other_net)
    folder = tmp_path / "host-cpu" / "znver4"
    small.save(folder, prov)
    other.save(folder, prov)
    with pytest.raises(LatencyPredictorError, match="several networks") as err:
        load_predictor(folder, prov)
    assert "\n" not in str(err.value)
    assert load_predictor(folder, prov, {"n_classes": 7}).kind == "macs"
    got = load_predictor(folder, prov, {"space": tiny_space, "n_classes": 10, "width_mult": 0.35})
    assert got.kind == "xgboost" and got.space == tiny_space
    assert load_predictor(folder, prov, {"resolutions": [48, 32, 40]}).kind == "xgboost"
    with pytest.raises(LatencyPredictorError, match="no latency predictor for this network.*it has"):
        load_predictor(folder, prov, {"n_classes": 1000})
    # a calibration source must hold the network asked for
    here = tmp_path / "host-cpu" / "newcpu"
    assert find_source(here, prov, {"n_classes": 7}) == folder
    assert find_source(here, prov, {"n_classes": 1000}) is None


def test_a_predictor_answers_at_resolutions_it_was_not_fitted_at_and_flags_extrapolation(tmp_path):
    """Fitted at 32 and 48 px, it predicts 40 px (new shapes, from their descriptors) between the
    two, predicts 56 px and names it an extrapolation; a calibrated one refuses what its source
    never predicted."""
    from tvm_ofa.arch import SearchSpace
    from tvm_ofa.predict.latency import CalibratedPredictor, LatencyPredictorError, fit_predictor, load_predictor

    fitted = SearchSpace(resolutions=(32, 48))
    data, meas, *_ = _synthetic(fitted, np.random.default_rng(3))
    prov = {"target": "host-cpu", "cpu": "znver4", "cpu_features": ["avx2"], "threads": 2,
            "tvm_version": "0.27.0.post1"}
    fit_predictor("xgboost", data, meas[:20], fitted, NET).save(tmp_path, prov)
    wide = SearchSpace(resolutions=(32, 36, 40, 44, 48, 56))
    pred = load_predictor(tmp_path, prov, {"space": wide, "n_classes": NET.n_classes, "width_mult": NET.width_mult})
    assert pred.space == wide and pred.fitted_resolutions == (32, 48)
    p32, p40, p48, p56 = pred.predict([wide.largest(r) for r in (32, 40, 48, 56)])
    assert 0.9 * p32 <= p40 <= 1.1 * p48 and p56 > 0
    assert pred.extrapolated([40, 44]) == [] and pred.extrapolated([40, 56]) == [56]
    # a resolution named alone widens the space it answers for
    assert 44 in load_predictor(tmp_path, prov, {"resolutions": [44]}).space.resolutions
    with pytest.raises(LatencyPredictorError, match="source's resolutions only"):
        CalibratedPredictor.from_source(pred.for_space(fitted)).for_space(wide)


def test_the_predictor_of_the_network_is_found_without_flags(tiny_space, tmp_path):
    """Two networks' predictors in one folder: a resolution picks the one whose range covers it,
    else the nearest range; only an equal distance to two ranges asks."""
    from tvm_ofa.arch import SearchSpace
    from tvm_ofa.predict.latency import LatencyPredictorError, find_predictor, fit_predictor

    data, meas, *_ = _synthetic(tiny_space, np.random.default_rng(4))
    prov = {"target": "host-cpu", "cpu": "znver4", "tvm_version": "0.27.0.post1"}
    fit_predictor("macs", data, (), tiny_space, NET).save(tmp_path, prov)
    big_net = NetConfig(width_mult=NET.width_mult, n_classes=1000)
    fit_predictor("macs", data, (), SearchSpace(resolutions=(64, 72)), big_net).save(tmp_path, prov)
    small, big = (find_predictor(tmp_path, {"resolutions": [r]}).name for r in (44, 80))
    assert "-r32-48" in small and "1000c" in big and "-r64-72" in big
    assert "1000c" in find_predictor(tmp_path, {"space": SearchSpace(resolutions=(60, 64, 68, 72)),
                                                "n_classes": 1000}).name
    with pytest.raises(LatencyPredictorError, match="more than one latency predictor"):
        find_predictor(tmp_path, {"resolutions": [56]})


def test_collect_runs_from_python_and_resumes(tmp_path):
    """The collector is a library function (the CLI only draws its progress): it tunes a subnet,
    measures it end to end into measurements.jsonl, and a rerun skips what is measured."""
    from tvm_ofa.predict.collect import CollectOptions, collect
    from tvm_ofa.predict.dataset import load_measurements
    from tvm_ofa.targets import parse_target

    cfg = parse_target({"name": "host-test", "target": {"kind": "llvm", "mcpu": "native"}, "threads": 2},
                       "host-test.yaml")
    opts = CollectOptions(resolutions=[32], width_mult=0.35, n_classes=10, trials_per_task=2,
                          trials_per_round=2, max_subnets=1, repeats=5)
    events = []
    report = collect(cfg, opts, log_root=tmp_path, progress=events.append)
    assert report.measured_subnets == 1 and report.log_dir == cfg.log_dir(tmp_path)
    assert events[0].stage == "start" and str(report.log_dir) in events[0].message
    assert [e.done for e in events if e.stage == "subnet"] == [1]
    (m,), bad = load_measurements(report.log_dir)
    assert bad == 0 and m.arch.resolution == 32 and m.latency_ms > 0
    again = []
    collect(cfg, CollectOptions(**{**opts.__dict__, "max_subnets": 0}), log_root=tmp_path, progress=again.append)
    assert "1 subnets already measured" in again[0].message
    # one writer per folder: refused while another process holds it, in one line
    from conftest import lock_held_elsewhere

    from tvm_ofa.compiler.store import DatabaseBusy

    with lock_held_elsewhere(report.log_dir), pytest.raises(DatabaseBusy, match="another process"):
        collect(cfg, opts, log_root=tmp_path)


def test_host_cpu_uses_the_fastest_lowering_with_a_predictor_of_the_network(tiny_space, tmp_path, monkeypatch):
    """host-cpu prefers prepacked NCHW16c on full-width AVX-512, prepack elsewhere, and falls back
    to a slower lowering only for a network the faster ones have no predictor of (here or on a
    CPU to calibrate from); collect and fit always work on the fastest."""
    from tvm_ofa.arch import SearchSpace
    from tvm_ofa.predict.calibrate import choose_lowering
    from tvm_ofa.predict.latency import fit_predictor
    from tvm_ofa.targets import TargetConfig, fastest_lowering, load_target, lowering_candidates

    cfg = load_target("host-cpu")
    cpu = {"name": "emeraldrapids"}
    monkeypatch.setattr(TargetConfig, "host_cpu", lambda self: cpu["name"])
    monkeypatch.setattr("tvm_ofa.targets.host_provenance",
                        lambda c: {"target": c.name, "cpu": cpu["name"], "cpu_features": ["avx512f"],
                                   "threads": c.num_threads, "tvm_version": "0.27.0.post1"})
    lowerings = lambda: [(c.name, c.lowering.prepack, c.lowering.nchwc) for c in lowering_candidates(cfg)]  # noqa: E731
    assert lowerings() == [("host-cpu-nchwc16", True, 16), ("host-cpu-prepack", True, 0), ("host-cpu", False, 0)]
    cpu["name"] = "znver5"  # full-width 512-bit FMAs, as on Intel Xeon
    assert lowerings()[0] == ("host-cpu-nchwc16", True, 16)
    cpu["name"] = "znver4"  # AVX-512 on 256-bit units: blocks of 16 do not pay
    assert lowerings() == [("host-cpu-prepack", True, 0), ("host-cpu", False, 0)]
    assert all(c.num_threads == cfg.num_threads and c.target == cfg.target for c in lowering_candidates(cfg))

    data, meas, *_ = _synthetic(tiny_space, np.random.default_rng(1))
    small = {"space": tiny_space, "n_classes": 10, "width_mult": 0.35}
    paper_space, paper_net = SearchSpace(resolutions=(128,)), NetConfig(n_classes=1000)
    paper = {"space": paper_space, "n_classes": 1000}

    def save(pred, target, cpu_name):
        pred.save(tmp_path / target / cpu_name, {"target": target, "cpu": cpu_name, "threads": cfg.num_threads,
                                                 "cpu_features": ["avx512f"], "tvm_version": "0.27.0.post1"})

    # nothing anywhere: the fastest lowering, which is also where collect and fit write
    chosen, why = choose_lowering(cfg, small, tmp_path)
    assert chosen.name == "host-cpu-prepack" == fastest_lowering(cfg).name and "no lowering" in why
    # the small network has a plain predictor on another CPU (a calibration source), the paper's
    # network a prepack one on this CPU
    save(fit_predictor("xgboost", data, meas[:10], tiny_space, NET), "host-cpu", "cascadelake")
    save(fit_predictor("macs", data, (), paper_space, paper_net), "host-cpu-prepack", "znver4")
    chosen, why = choose_lowering(cfg, small, tmp_path)
    assert (chosen.name, chosen.lowering.prepack) == ("host-cpu", False) and "cascadelake" in why
    assert chosen.log_dir(tmp_path) == tmp_path / "host-cpu" / "znver4"
    chosen, _ = choose_lowering(cfg, paper, tmp_path)
    assert (chosen.name, chosen.lowering.prepack) == ("host-cpu-prepack", True)
    assert chosen.log_dir(tmp_path) == tmp_path / "host-cpu-prepack" / "znver4"
    # once the small network's prepack predictor exists, host-cpu moves to it
    save(fit_predictor("macs", data, (), tiny_space, NET), "host-cpu-prepack", "znver4")
    assert choose_lowering(cfg, small, tmp_path)[0].name == "host-cpu-prepack"
    # a target without `prefer` is what it says
    explicit = load_target("host-cpu-nchwc16")
    assert choose_lowering(explicit, small, tmp_path) == (explicit, None)
    assert fastest_lowering(explicit) is explicit
