"""The C++ side: tvm_ofa_run against Python's Relax VM, and tvm_ofa_add_model in a CMake project."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from _cpp_artifact import make_tiny_artifact  # noqa: E402

pytestmark = pytest.mark.slow

TOP_RE = re.compile(r"^top rank=(\d+) index=(\d+) score=(\S+)$", re.M)
LAT_RE = re.compile(r"^latency_ms median=(\S+) p90=(\S+) min=(\S+) repeat=(\d+) warmup=(\d+) threads=(\d+)$", re.M)


def _cxx_available() -> bool:
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "c++", "g++", "clang++") if c)


def _require_toolchain() -> None:
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed (apt-get install cmake)")
    if not _cxx_available():
        pytest.skip("no C++ compiler found (apt-get install g++)")


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _cmake_build(src: Path, build: Path, *defs: str) -> None:
    _run(["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release",
          f"-DTVM_OFA_PYTHON={sys.executable}", *defs])
    _run(["cmake", "--build", build, "-j2"])


@pytest.fixture(scope="module")
def cpp_build(tmp_path_factory) -> Path:
    _require_toolchain()
    build = tmp_path_factory.mktemp("cpp_build")
    _cmake_build(REPO, build)
    return build


@pytest.fixture(scope="module")
def runner(cpp_build) -> Path:
    exe = cpp_build / "tvm_ofa_run"
    assert exe.is_file()
    return exe


@pytest.fixture(scope="module")
def installed(cpp_build, tmp_path_factory) -> Path:
    """`cmake --install` of the checkout into a fresh prefix: what a C++ project finds with
    find_package(tvm_ofa), with nothing of the checkout on its paths."""
    prefix = tmp_path_factory.mktemp("prefix")
    _run(["cmake", "--install", cpp_build, "--prefix", prefix])
    assert (prefix / "lib" / "cmake" / "tvm_ofa" / "tvm_ofaConfig.cmake").is_file()
    assert (prefix / "share" / "tvm_ofa" / "cpp" / "tvm_ofa_model.cc").is_file()
    return prefix


def _example(tmp_path: Path) -> Path:
    """The example project copied out of the checkout, so that only the installed package serves it."""
    src = tmp_path / "cpp_project"
    shutil.copytree(REPO / "examples" / "cpp_project", src)
    return src


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("tvm")
    out = tmp_path_factory.mktemp("artifact") / "tiny"
    model = make_tiny_artifact(out)
    return out, model


def _python_logits(art: Path, x: np.ndarray) -> np.ndarray:
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(art / "model.so")), tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x))
    if not hasattr(out, "numpy"):  # a tuple from torch.export
        out = out[0]
    return out.numpy().reshape(-1)


def _parse_top(stdout: str) -> tuple[list[int], list[float]]:
    rows = TOP_RE.findall(stdout)
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1)), stdout
    return [int(r[1]) for r in rows], [float(r[2]) for r in rows]


def _check_against_python(stdout: str, logits: np.ndarray) -> None:
    idx, scores = _parse_top(stdout)
    expect = np.argsort(-logits, kind="stable")[:5]
    assert idx == expect.tolist(), stdout
    np.testing.assert_allclose(scores, logits[expect], rtol=0, atol=1e-4)


def test_runner_matches_python_npy(runner, artifact, tmp_path):
    art, torch_model = artifact
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    proc = _run([runner, art, "--input", tmp_path / "x.npy", "--repeat", "5", "--warmup", "1",
                 "--output", tmp_path / "logits.bin"])
    logits = _python_logits(art, x)
    _check_against_python(proc.stdout, logits)
    # the full output, and TVM against PyTorch as a sanity check of the artifact itself
    np.testing.assert_allclose(np.fromfile(tmp_path / "logits.bin", dtype=np.float32), logits,
                               rtol=0, atol=1e-5)
    import torch
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(x)).numpy().reshape(-1)
    np.testing.assert_allclose(logits, ref, rtol=0, atol=1e-4)

    assert f"input npy:{tmp_path / 'x.npy'} shape=1x3x16x16" in proc.stdout
    assert "output shape=1x10" in proc.stdout
    lat = LAT_RE.search(proc.stdout)
    assert lat, proc.stdout
    median, p90, low = map(float, lat.groups()[:3])
    assert 0 < low <= median <= p90 and lat.group(4) == "5" and lat.group(5) == "1"


def test_runner_raw_and_default_pattern(runner, artifact, tmp_path):
    art, _ = artifact
    n = 3 * 16 * 16
    # the documented default input: x[i] = float32((i % 251) / 125.0 - 1.0)
    pattern = ((np.arange(n) % 251) / 125.0 - 1.0).astype(np.float32).reshape(1, 3, 16, 16)
    expect = _python_logits(art, pattern)
    proc = _run([runner, art, "--repeat", "1", "--warmup", "0", "--threads", "1"])
    assert "input pattern" in proc.stdout
    _check_against_python(proc.stdout, expect)
    assert LAT_RE.search(proc.stdout).group(6) == "1"
    # by default every logical CPU, not TVM's own x86 default of half of them
    env = {k: v for k, v in os.environ.items() if k not in ("TVM_NUM_THREADS", "OMP_NUM_THREADS")}
    proc = _run([runner, art, "--repeat", "1", "--warmup", "0"], env=env)
    assert LAT_RE.search(proc.stdout).group(6) == str(os.cpu_count())

    x = np.linspace(-2, 2, n, dtype=np.float32).reshape(1, 3, 16, 16)
    x.tofile(tmp_path / "x.bin")
    proc = _run([runner, art, "--raw", tmp_path / "x.bin", "--repeat", "2"])
    _check_against_python(proc.stdout, _python_logits(art, x))


def _cuda_runtime_loads() -> bool:
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


def test_runner_errors_are_one_line_naming_the_file(runner, artifact, tmp_path):
    art, _ = artifact
    bad = np.zeros((1, 3, 8, 8), dtype=np.float32)
    np.save(tmp_path / "bad.npy", bad)
    np.save(tmp_path / "f64.npy", bad.astype(np.float64))
    cases = [
        ([tmp_path / "missing"], "missing/metadata.json"),
        ([art, "--input", tmp_path / "bad.npy"], "bad.npy: shape 1x3x8x8 does not match"),
        ([art, "--input", tmp_path / "f64.npy"], "f64.npy: dtype '<f8'"),
        ([art, "--raw", tmp_path / "bad.npy"], "bad.npy:"),
    ]
    # a library for another kind of device: refused by name, or (CUDA on a machine without the
    # CUDA runtime) a line saying what is missing
    for kind, expected in [("rocm", "target.resolved.kind 'rocm' is not supported"),
                           ("cuda", "a CUDA library needs libtvm_runtime_cuda.so")]:
        other = tmp_path / kind
        other.mkdir()
        shutil.copy(Path(art) / "model.so", other / "model.so")
        meta = json.loads((Path(art) / "metadata.json").read_text())
        meta["target"] = {"resolved": {"kind": kind}}
        (other / "metadata.json").write_text(json.dumps(meta))
        if kind == "cuda" and _cuda_runtime_loads():
            continue  # this machine could run it: nothing is missing
        cases.append(([other], expected))
    for args, expected in cases:
        proc = subprocess.run([str(runner), *map(str, args)], capture_output=True, text=True)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
    proc = subprocess.run([str(runner), str(art), "--repeat", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--repeat" in proc.stderr


def test_example_project_with_tvm_ofa_add_model(installed, tmp_path):
    """tvm_ofa_add_model compiles the artifact at build time; the example links and runs it.

    The compile step is the stand-in tests/_cpp_artifact.py (same flags as `tvm-ofa compile`),
    which keeps this test fast and independent of the compiler; the CMake wiring is the same.
    """
    _require_toolchain()
    pytest.importorskip("torch")
    pytest.importorskip("tvm")
    build = tmp_path / "example"
    cli = f"{sys.executable};{TESTS / '_cpp_artifact.py'}"
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"stand-in")
    _cmake_build(_example(tmp_path), build, f"-DCMAKE_PREFIX_PATH={installed}", f"-DTVM_OFA_CLI={cli}",
                 f"-DEXAMPLE_CHECKPOINT={ckpt}")
    art = build / "tvm_ofa" / "mbv3"
    assert (art / "model.so").is_file() and (art / "metadata.json").is_file()
    header = (build / "tvm_ofa_include" / "mbv3" / "mbv3_model.h").read_text()
    assert f'kModelDir[] = "{art}"' in header

    proc = _run([build / "classify"])
    x = np.full((1, 3, 16, 16), 0.5, dtype=np.float32)
    logits = _python_logits(art, x)
    m = re.search(r"classes=(\d+) argmax=(\d+) score=(\S+)", proc.stdout)
    assert m, proc.stdout
    assert int(m.group(1)) == logits.size and int(m.group(2)) == int(np.argmax(logits))
    assert abs(float(m.group(3)) - logits.max()) < 1e-4

    # a second build is a no-op: the compile step reruns only when an input changes
    again = _run(["cmake", "--build", build, "-j2"])
    assert "tvm-ofa compile mbv3" not in again.stdout
    ckpt.write_bytes(b"stand-in, changed")
    again = _run(["cmake", "--build", build, "-j2"])
    assert "tvm-ofa compile mbv3" in again.stdout


def test_example_project_with_its_defaults_against_the_installed_package(installed, tmp_path, monkeypatch):
    """The example as a user builds it: find_package(tvm_ofa) from the installed prefix, its
    defaults (the embedded supernet's smallest subnet for host-cpu, the real `tvm-ofa compile`)."""
    pytest.importorskip("tvm")
    from tvm_ofa.defaults import default_checkpoint

    if default_checkpoint() is None:
        pytest.skip("this checkout embeds no supernet")
    build = tmp_path / "example"
    monkeypatch.delenv("TVM_OFA_PYTHON", raising=False)
    # no TVM_OFA_PYTHON given: the installed config names the Python tvm-ofa was installed with
    _run(["cmake", "-S", _example(tmp_path), "-B", build, "-DCMAKE_BUILD_TYPE=Release",
          f"-DCMAKE_PREFIX_PATH={installed}", "-DEXAMPLE_COMPILE_ARGS=--no-measure"])
    _run(["cmake", "--build", build, "-j2"])
    art = build / "tvm_ofa" / "mbv3"
    meta = json.loads((art / "metadata.json").read_text())
    assert meta["arch"]["resolution"] == 32 and meta["target"]["name"] == "host-cpu"
    proc = _run([build / "classify"])
    x = np.full((1, 3, 32, 32), 0.5, dtype=np.float32)
    logits = _python_logits(art, x)
    m = re.search(r"classes=(\d+) argmax=(\d+) score=(\S+)", proc.stdout)
    assert m and int(m.group(1)) == logits.size == 10, proc.stdout
    assert int(m.group(2)) == int(np.argmax(logits))
