"""Shared fixtures: tiny spaces and supernets keep every test CPU-sized."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest

# Keep torch from oversubscribing the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session", autouse=True)
def _user_data_folder(tmp_path_factory):
    """Every test, and every process it starts, writes default logs into a scratch user folder,
    never into the user's own (``tvm_ofa.compiler.store.default_log_root``)."""
    os.environ["TVM_OFA_HOME"] = str(tmp_path_factory.mktemp("tvm-ofa-home"))
    os.environ.pop("TVM_OFA_LOG_ROOT", None)


@pytest.fixture(scope="session")
def tiny_space():
    from tvm_ofa.arch import SearchSpace

    return SearchSpace(resolutions=(32, 40, 48))


@pytest.fixture(scope="session")
def tiny_supernet(tiny_space):
    """A width-0.35 supernet with randomized BN statistics and kernel transforms, so equivalence
    tests are not passing on an identity-initialized network."""
    import torch

    from tvm_ofa import OFAMobileNetV3

    torch.manual_seed(0)
    net = OFAMobileNetV3(n_classes=10, width_mult=0.35, space=tiny_space, dropout_rate=0.0)
    randomize_(net)
    return net.eval()


def bench_script(name: str):
    """``bench/<name>.py`` imported as a module (the bench folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def randomize_(net, scale: float = 0.1):
    import torch

    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif name.endswith("_matrix"):
                t.add_(torch.randn_like(t) * scale)
            elif name.endswith(("bn.weight", "bn.bn.weight")):
                t.uniform_(0.5, 1.5)
            else:
                t.normal_(0.0, scale if t.dim() > 1 else 0.1)
    return net


@contextlib.contextmanager
def lock_held_elsewhere(log_dir):
    """A second, real process holding ``log_dir``'s writer lock until the block ends, when it is
    killed with SIGKILL (a killed holder must leave no stale lock). Yields its pid."""
    import subprocess

    code = ("import sys, time\nfrom tvm_ofa.compiler.store import writer_lock\n"
            "with writer_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(log_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def kill_when(argv, ready, timeout: float = 600.0) -> None:
    """Run ``argv`` in a process of its own and ``kill -9`` it as soon as ``ready()`` holds (polled
    every 50 ms); fail if it ends or times out before that."""
    import signal
    import subprocess
    import time

    import tempfile

    err = tempfile.TemporaryFile("w+")  # not a pipe: a chatty child would block on a full one
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, text=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                err.seek(0)
                raise AssertionError(f"{argv[:4]} ended (exit {proc.returncode}) before it could be killed: "
                                     f"{err.read()[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{argv[:4]} not ready after {timeout:.0f} s")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        err.close()
