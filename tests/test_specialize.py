"""The specialize loop: search -> emit -> measure -> tighten and retry; resume; infeasible budgets."""
import json
from pathlib import Path

import numpy as np
import pytest

from tvm_ofa.arch import ArchConfig, arrays_to_archs
from tvm_ofa.nn.profile import count_macs
from tvm_ofa.search import InfeasibleBudgetError
from tvm_ofa.search.specialize import specialize
from tvm_ofa.targets import parse_target


class MacsLatency:
    """Stand-in latency predictor: proportional to MACs (ms per MMAC)."""

    def __init__(self, ms_per_mmac=0.01, width=0.35, classes=10):
        self.k, self.width, self.classes = ms_per_mmac, width, classes

    def predict(self, archs=None, *, arrays):
        return np.array([self.k * count_macs(a, self.width, self.classes) / 1e6 for a in arrays_to_archs(*arrays)])


class DepthAccuracy:
    def predict(self, archs=None, *, arrays):
        ks, e, d, r = arrays
        return 0.5 + 0.01 * d.sum(1) + 0.001 * r + 0.0005 * (ks * e).sum(1)


def host_cfg():
    return parse_target({"name": "host-test", "target": {"kind": "llvm", "mcpu": "native"}, "threads": 2,
                         "tuning": {"trials_per_task": 1, "trials_per_round": 1}}, "host-test.yaml")


SEARCH = dict(population_size=16, generations=4)


def test_missed_budget_tightens_the_next_search_and_resume_skips_done(tiny_supernet, tmp_path, monkeypatch):
    from tvm_ofa.compiler import pipeline

    lat = MacsLatency()
    calls = []

    def fake_emit(cfg, arch, module, out_root, **kwargs):
        # the "device" is 1.5x slower than predicted
        folder = tmp_path / "art" / arch.id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.so").write_bytes(b"\x7fELF")
        ms = 1.5 * float(lat.predict(arrays=tuple(np.array([v]) for v in (arch.ks, arch.e, arch.d, arch.resolution)))[0])
        (folder / "metadata.json").write_text(json.dumps({"format": "tvm-ofa-artifact", "version": 1, "latency": {"median_ms": ms, "p90_ms": ms * 1.1}}))
        calls.append((arch, ms))
        return folder

    monkeypatch.setattr(pipeline, "emit", fake_emit)
    space = tiny_supernet.space
    largest_ms = float(lat.predict(arrays=tuple(np.array([v]) for v in (
        space.largest().ks, space.largest().e, space.largest().d, space.largest().resolution)))[0])
    budget = 0.8 * largest_ms
    events = []
    (result,) = specialize(host_cfg(), tiny_supernet, lat, DepthAccuracy(), [budget], out_root=tmp_path / "art",
                           max_attempts=3, progress=events.append, **SEARCH)
    assert result.status == "met" and result.measured_latency_ms <= budget
    assert len(result.attempts) >= 2  # the first winner missed, the loop closed
    first, last = result.attempts[0], result.attempts[-1]
    assert first["measured_latency_ms"] > budget and last["search_budget_ms"] < first["search_budget_ms"]
    meta = json.loads((tmp_path / "art" / result.arch_id / "metadata.json").read_text())
    assert meta["predicted_latency_ms"] == pytest.approx(result.predicted_latency_ms)
    assert meta["accuracy"]["predicted"] == pytest.approx(result.predicted_accuracy)

    n = len(calls)
    again = specialize(host_cfg(), tiny_supernet, lat, DepthAccuracy(), [budget], out_root=tmp_path / "art",
                       progress=events.append, **SEARCH)
    assert len(calls) == n and again[0].arch_id == result.arch_id
    assert events[-1]["event"] == "resumed"


def test_unreachable_budget_is_reported_missed_not_hidden(tiny_supernet, tmp_path, monkeypatch):
    from tvm_ofa.compiler import pipeline

    def slow_emit(cfg, arch, module, out_root, **kwargs):
        folder = tmp_path / "art" / arch.id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.so").write_bytes(b"")
        (folder / "metadata.json").write_text(json.dumps({"format": "tvm-ofa-artifact", "version": 1, "latency": {"median_ms": 1e3, "p90_ms": 1e3}}))
        return folder

    monkeypatch.setattr(pipeline, "emit", slow_emit)
    lat = MacsLatency()
    (result,) = specialize(host_cfg(), tiny_supernet, lat, DepthAccuracy(), [50.0], out_root=tmp_path / "art",
                           max_attempts=3, **SEARCH)
    assert result.status == "missed" and result.measured_latency_ms == 1e3
    assert 1 <= len(result.attempts) <= 3


def test_budget_below_the_fastest_subnet_names_the_smallest_feasible(tiny_supernet, tmp_path):
    with pytest.raises(InfeasibleBudgetError, match=r"below the smallest predicted latency on host-test: .* use a budget of at least"):
        specialize(host_cfg(), tiny_supernet, MacsLatency(), DepthAccuracy(), [1e-6], out_root=tmp_path, **SEARCH)


@pytest.mark.slow
def test_specialize_end_to_end_with_real_tuning(tiny_supernet, tmp_path):
    import torch

    from tvm_ofa import load_artifact

    lat = MacsLatency()
    small = tiny_supernet.space.smallest()
    budget = 1.2 * float(lat.predict(arrays=tuple(np.array([v]) for v in (small.ks, small.e, small.d, small.resolution)))[0])
    (result,) = specialize(host_cfg(), tiny_supernet, lat, DepthAccuracy(), [budget], out_root=tmp_path / "art",
                           log_root=tmp_path / "logs", trials_per_task=1, trials_per_round=1, repeats=5,
                           warmup=1, max_attempts=1, **SEARCH)
    assert result.status in ("met", "missed") and result.measured_latency_ms > 0
    meta = json.loads((Path(result.artifact) / "metadata.json").read_text())
    assert meta["tuning"]["tuned_workloads"] > 0
    assert meta["predicted_latency_ms"] == pytest.approx(result.predicted_latency_ms)
    art = load_artifact(result.artifact)
    arch = tiny_supernet.space.validate(ArchConfig.from_dict(result.arch))
    x = np.random.default_rng(0).standard_normal((1, 3, arch.resolution, arch.resolution)).astype("float32")
    with torch.no_grad():
        expected = tiny_supernet.extract(arch)(torch.from_numpy(x)).numpy()
    assert np.abs(art(x) - expected).max() <= 1e-4


def test_cli_exit_status_says_whether_every_budget_was_met(monkeypatch, capsys):
    """0 when every budget is met, 3 when one is missed (the results are still written and
    printed), 2 for a usage error; the top-level help says so."""
    from types import SimpleNamespace

    from tvm_ofa.cli import main
    from tvm_ofa.cli import specialize as cli

    statuses = {}
    monkeypatch.setattr(cli, "specialize_and_report",
                        lambda target, budgets, **kw: [SimpleNamespace(status=statuses[b], to_dict=lambda b=b: {
                            "budget_ms": b, "status": statuses[b]}) for b in budgets])
    statuses.update({2.0: "met", 4.0: "met"})
    assert main(["specialize", "--latency-ms", "2", "4"]) == 0
    statuses[4.0] = "missed"
    assert main(["specialize", "--latency-ms", "2", "4"]) == 3
    capsys.readouterr()
    # --json: the same status, the results on stdout
    assert main(["specialize", "--latency-ms", "2", "4", "--json"]) == 3
    assert [r["status"] for r in json.loads(capsys.readouterr().out)["results"]] == ["met", "missed"]
    with pytest.raises(SystemExit) as usage:
        main(["specialize", "--latency-ms", "two"])
    assert usage.value.code == 2
    from tvm_ofa.cli import build_parser

    assert "exit status: 0 done; 1 an error" in " ".join(build_parser().format_help().split())
