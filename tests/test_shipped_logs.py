"""The tuning logs and latency predictors the repository ships (every lowering's CPU folders that
have one): they load, say which CPU they describe, agree with each other, and a copy unpacks into
a database the builder can use."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1] / "tuning_logs"
SHIPPED = sorted(d for d in ROOT.glob("*/*") if any(d.glob("latency_predictor*.json")))
IDS = [f"{d.parent.name}/{d.name}" for d in SHIPPED]


def _provenance(folder: Path) -> dict:
    doc = json.loads(next(folder.glob("latency_predictor*.json")).read_text())
    return {k: doc.get(k) for k in ("target", "cpu", "cpu_features", "threads", "tvm_version")}


def test_a_predictor_ships_for_the_plain_and_the_prepacked_lowering():
    assert {d.parent.name for d in SHIPPED} >= {"host-cpu", "host-cpu-prepack"}, IDS


@pytest.mark.parametrize("folder", SHIPPED, ids=IDS)
def test_shipped_predictor_describes_its_folder_and_predicts(folder):
    import tvm

    from tvm_ofa.predict.latency import load_predictor

    prov = _provenance(folder)
    logs = json.loads((folder / "provenance.json").read_text())
    assert prov["cpu"] == folder.name == logs["cpu"] and prov["cpu_features"] == logs["cpu_features"]
    assert prov["target"] == folder.parent.name == logs["target"]
    assert prov["tvm_version"] == tvm.__version__
    pred = load_predictor(folder, prov)
    assert pred.meta["n_measurements"] >= 20
    space = pred.space
    archs = space.sample_many(200, rng=0)
    ms = pred.predict(archs)
    assert np.all(np.isfinite(ms)) and np.all(ms > 0)
    r = space.resolutions
    lo, hi = pred.predict([space.smallest(r[0]), space.largest(r[-1])])
    # the smallest subnet is the fastest; the largest is slower than most (not necessarily all:
    # at 16 trials per task the 224 px largest subnet's tuned tasks came out faster than some
    # mid-size subnets' on znver4, and the predictor learns what the records say)
    assert lo < ms.min() and hi > np.percentile(ms, 90)
    for line in (folder / "measurements.jsonl").read_text().splitlines():
        m = json.loads(line)
        assert m["cpu"] == folder.name and m["median_ms"] > 0


@pytest.mark.parametrize("folder", SHIPPED, ids=IDS)
def test_shipped_database_unpacks_with_a_record_per_workload(folder, tmp_path):
    from tvm_ofa.compiler.store import PACKED_SUFFIX, RECORD_FILE, WORKLOAD_FILE, unpack

    for name in (WORKLOAD_FILE, RECORD_FILE):
        shutil.copy2(folder / (name + PACKED_SUFFIX), tmp_path / (name + PACKED_SUFFIX))
    assert unpack(tmp_path)
    n_wl = sum(1 for ln in (tmp_path / WORKLOAD_FILE).read_text().splitlines() if ln.strip())
    used = {json.loads(ln)[0] for ln in (tmp_path / RECORD_FILE).read_text().splitlines() if ln.strip()}
    assert n_wl >= 100 and used == set(range(n_wl))  # packed: only workloads that have a record
