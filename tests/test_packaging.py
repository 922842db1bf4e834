"""An installed tvm-ofa (a wheel, not this checkout) finds its shipped targets, tuning logs and
checkpoint from any folder."""
from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_lists_every_package_of_the_tree():
    """pyproject lists the packages by hand (two of them are mapped from the checkout's top-level
    folders): a new subpackage must be added there, or a wheel would leave it out."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    tree = sorted(".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "tvm_ofa").rglob("__init__.py"))
    assert sorted(p for p in listed if "._shipped." not in p) == tree
    assert {"tvm_ofa._shipped.targets", "tvm_ofa._shipped.tuning_logs"} <= set(listed)


@pytest.mark.slow
def test_an_installed_wheel_finds_what_ships_from_any_folder(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(wheels), str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    wheel = next(wheels.glob("tvm_ofa-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped_logs = [p.relative_to(ROOT).as_posix() for p in (ROOT / "tuning_logs").rglob("*.xz")]
    assert shipped_logs and all(f"tvm_ofa/_shipped/{p}" in names for p in shipped_logs)
    assert "tvm_ofa/_shipped/targets/host-cpu.yaml" in names and "tvm_ofa/assets/supernet.pt" in names
    assert not any(n.endswith(("database_tuning_record.json", "database_workload.json")) for n in names)

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                    str(wheel)], check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "TVM_OFA_HOME": str(tmp_path / "home")}
    code = ("import tvm_ofa, tvm_ofa.targets as t, tvm_ofa.compiler.store as s, tvm_ofa.defaults as d;"
            "print(tvm_ofa.__file__, t.TARGETS_DIR, s.SHIPPED_LOG_ROOT, d.default_checkpoint(), sep='\\n')")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=elsewhere, check=True,
                         capture_output=True, text=True).stdout.split()
    assert all(Path(p).is_relative_to(site) for p in out), out
    listed = subprocess.run([sys.executable, "-m", "tvm_ofa.cli", "targets"], env=env, cwd=elsewhere,
                            capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert "host-cpu-prepack" in listed.stdout and "error" not in listed.stdout.lower()
