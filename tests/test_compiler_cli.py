"""CLI verbs of the compiler half: targets, run, bench (tune/compile are exercised in
test_compiler through the same library calls)."""
from __future__ import annotations

import numpy as np
import pytest

from tvm_ofa.cli import main


def test_targets_lists_shipped(capsys):
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    assert "host-cpu" in out and "arm-cortex-a72" in out and "rpc 127.0.0.1:9190/rasp4" in out


def test_targets_bad_file_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntarget: {kind: llvm}\nrunner: {kind: local, host: a}\n")
    assert main(["targets", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{bad}: runner.host: unknown key" in err


def test_tune_unknown_target_one_line(capsys):
    assert main(["tune", "--target", "/nonexistent.yaml", "--arch", "smallest"]) == 1
    assert "cannot read target config" in capsys.readouterr().err


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    pytest.importorskip("tvm")
    import torch
    from conftest import randomize_
    from test_compiler import MiniMBV3, host_cfg

    from tvm_ofa.arch import ArchConfig
    from tvm_ofa.compiler.pipeline import emit

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("cli")
    arch = ArchConfig(ks=[3] * 20, e=[3] * 20, d=[2] * 5, resolution=32)
    return emit(host_cfg(), arch, randomize_(MiniMBV3()).eval(), log_root=root / "logs",
                out_root=root / "art", tune_first=False, warmup=1, repeats=3)


def test_run_prints_top5(artifact, tmp_path, capsys):
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    assert main(["run", str(artifact), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line[:2] in {f"{i}." for i in range(1, 6)}]
    assert len(lines) == 5
    logits = np.load(tmp_path / "y.npy")
    assert logits.shape[0] == 1 and np.isfinite(logits).all()


def test_run_wrong_shape_one_line(artifact, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 8, 8), "float32"))
    assert main(["run", str(artifact), "--input", str(tmp_path / "x.npy")]) == 1
    assert "does not match" in capsys.readouterr().err


def test_bench(artifact, capsys):
    assert main(["bench", str(artifact), "--warmup", "1", "--repeats", "3"]) == 0
    assert "median" in capsys.readouterr().out


def test_run_missing_artifact(capsys):
    assert main(["run", "/nonexistent/artifact"]) == 1
    assert "no such artifact folder" in capsys.readouterr().err
