"""TVM RPC helpers: reachability, sessions, and a loopback tracker + server for tests/demos."""
from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any


def tracker_reachable(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when something accepts TCP connections at ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def connect(tracker_host: str, tracker_port: int, key: str, timeout_s: int = 60) -> Any:
    """An RPC session to a device registered at the tracker under ``key``."""
    from tvm import rpc

    tracker = rpc.connect_tracker(tracker_host, tracker_port)
    return tracker.request(key, priority=1, session_timeout=timeout_s)


@dataclass
class LoopbackRPC:
    """A TVM RPC tracker and one server, both on 127.0.0.1, in subprocesses.

    Use as a context manager; ``port`` is the tracker's port, ``key`` the server's key.
    """

    key: str = "loopback"
    port: int = 0
    _tracker: Any = None
    _server: Any = None

    def __enter__(self) -> "LoopbackRPC":
        from tvm import rpc
        from tvm.rpc.tracker import Tracker

        self._tracker = Tracker(host="127.0.0.1", port=9190, port_end=9290, silent=True)
        self.port = self._tracker.port
        self._server = rpc.Server(host="127.0.0.1", port=9300, port_end=9400, key=self.key,
                                  tracker_addr=("127.0.0.1", self.port), silent=True)
        deadline = time.time() + 30
        while time.time() < deadline:  # the server registers asynchronously
            try:
                summary = rpc.connect_tracker("127.0.0.1", self.port).summary()
                if any(self.key in str(q) for q in summary.get("server_info", [])):
                    break
            except Exception:
                pass
            time.sleep(0.3)
        return self

    def __exit__(self, *exc: Any) -> None:
        for proc in (self._server, self._tracker):
            if proc is not None:
                proc.terminate()


def measure_rpc(artifact: str, runner: dict, warmup: int = 10, repeats: int = 50,
                min_seconds: float = 1.0) -> Any:
    """Upload an artifact's model.so to the device behind an RPC tracker and time ``main`` there.

    Parameters
    ----------
    artifact : path
        Artifact folder.
    runner : dict
        ``{tracker_host, tracker_port, key}`` (a target config's ``runner`` section).
    warmup, repeats, min_seconds
        As in :func:`tvm_ofa.compiler.measure.benchmark_vm`.
    """
    from pathlib import Path

    import numpy as np
    from tvm import relax

    from tvm_ofa.compiler.artifact import LIBRARY, read_metadata
    from tvm_ofa.compiler.measure import benchmark_vm

    meta = read_metadata(artifact)
    sess = connect(runner["tracker_host"], int(runner["tracker_port"]), runner["key"],
                   int(runner.get("timeout_s", 60)))
    lib_path = Path(artifact) / LIBRARY
    sess.upload(str(lib_path))
    lib = sess.load_module(LIBRARY)
    dev = sess.cpu(0)
    vm = relax.VirtualMachine(lib, dev)
    x = np.random.default_rng(0).standard_normal(meta["input_shape"]).astype(meta["input_dtype"])
    threads = (meta.get("latency") or {}).get("threads")
    return benchmark_vm(vm, dev, x, warmup, repeats, threads, min_seconds, local=False)
