"""The emitted artifact: ``artifacts/<target>/<arch-id>/{model.so, metadata.json}``.

``model.so`` is a Relax VM executable exported with ``export_library``; the weights are bound as
constants at lowering, i.e. linked into the library. One file per subnet keeps the C++ runner and
``load_artifact`` free of a params side file, and ``weights_sha256`` in the metadata names them.
Entry ``main`` takes one float32 NCHW tensor and returns the logits ``(batch, n_classes)``.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional, TypedDict

import numpy as np

from tvm_ofa.errors import TvmOfaError

FORMAT = "tvm-ofa-artifact"
VERSION = 1
LIBRARY = "model.so"
METADATA = "metadata.json"


class ArtifactError(TvmOfaError):
    """A folder that is not a readable tvm-ofa artifact."""


class Tuning(TypedDict):
    """How much of the subnet's work the target's records covered when it was built."""

    coverage: float
    tuned_workloads: int
    total_workloads: int
    log_dir: str
    note: Optional[str]


class ArtifactMetadata(TypedDict, total=False):
    """``metadata.json`` (docs/COMPILER.md, "Artifact contract"): every key an artifact may hold.

    ``emit`` writes all but ``specialize``; ``specialize`` fills in the prediction it chose the
    subnet by (:func:`update_metadata`). ``latency`` is :meth:`Latency.to_dict` of
    ``tvm_ofa.compiler.measure``, or None with ``latency_note`` saying why."""

    format: str
    version: int
    target: dict[str, Any]
    arch: dict[str, Any]
    arch_id: str
    input_shape: list[int]
    input_dtype: str
    output_shape: list[int]
    entry: str
    weights: str
    lowering: dict[str, Any]
    tir_pipeline: str
    weights_sha256: str
    device_code: Optional[str]
    tvm_version: str
    cpu: Optional[dict[str, Any]]
    tuning: Tuning
    latency: Optional[dict[str, Any]]
    latency_note: Optional[str]
    predicted_latency_ms: Optional[float]
    accuracy: Optional[dict[str, Any]]
    specialize: dict[str, Any]


def export(executable: Any, out_dir: str | os.PathLike, cc: str | None = None) -> Path:
    """Write ``executable`` to ``out_dir/model.so``, linking with ``cc`` when cross-compiling."""
    from tvm.support import cc as _cc

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LIBRARY
    tmp = out_dir / (LIBRARY + ".tmp.so")
    if cc:
        if shutil.which(cc) is None:
            raise ArtifactError(f"cross compiler {cc!r} not found on PATH "
                                "(Debian: apt-get install gcc-aarch64-linux-gnu)")
        executable.export_library(str(tmp), fcompile=_cc.create_shared, cc=cc)
    else:
        executable.export_library(str(tmp))
    os.replace(tmp, path)  # a reader never sees a half-written library
    return path


def write_metadata(out_dir: str | os.PathLike, meta: ArtifactMetadata) -> Path:
    """Write ``metadata.json`` atomically; a key the contract does not define is refused."""
    unknown = sorted(set(meta) - set(ArtifactMetadata.__annotations__))
    if unknown:
        raise ArtifactError(f"{Path(out_dir) / METADATA}: unknown metadata key {unknown[0]!r}")
    meta = {"format": FORMAT, "version": VERSION, **meta}
    path = Path(out_dir) / METADATA
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def update_metadata(path: str | os.PathLike, **fields: Any) -> ArtifactMetadata:
    """Set ``fields`` in an artifact's metadata (the one way to amend it after ``emit``)."""
    meta = read_metadata(path)
    meta.update(fields)  # type: ignore[typeddict-item]
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    write_metadata(folder, meta)
    return meta


def read_metadata(path: str | os.PathLike) -> ArtifactMetadata:
    """Metadata of an artifact folder (or of its metadata.json / model.so)."""
    p = Path(path)
    if not p.exists():
        raise ArtifactError(f"{p}: no such artifact folder")
    d = p if p.is_dir() else p.parent
    mp = d / METADATA
    try:
        meta = json.loads(mp.read_text())
    except OSError:
        raise ArtifactError(f"{d}: not a tvm-ofa artifact ({METADATA} missing)") from None
    except ValueError as exc:
        raise ArtifactError(f"{mp}: invalid JSON: {exc}") from None
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{mp}: format: expected {FORMAT!r}, got {meta.get('format')!r}")
    if meta.get("version") != VERSION:
        raise ArtifactError(f"{mp}: version: {meta.get('version')!r} is not supported "
                            f"(this tvm-ofa reads {VERSION})")
    return meta


class Artifact:
    """A loaded artifact: call it on a numpy array to get the logits.

    Attributes
    ----------
    path : Path
    metadata : dict
    """

    def __init__(self, path: str | os.PathLike, device: str | None = None, threads: int | None = None):
        import tvm
        from tvm import relax

        from tvm_ofa.compiler.measure import default_threads, set_threads

        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self.path = self.path if self.path.is_dir() else self.path.parent
        lib = self.path / LIBRARY
        if not lib.exists():
            raise ArtifactError(f"{self.path}: {LIBRARY} missing")
        target = self.metadata.get("target", {}).get("resolved", {})
        if target.get("kind") == "llvm" and str(target.get("mtriple", "")) \
                and not str(target["mtriple"]).startswith(os.uname().machine):
            raise ArtifactError(f"{self.path}: built for {target['mtriple']}, cannot run on this "
                                f"{os.uname().machine} machine (measure it over RPC instead)")
        # every physical core unless told otherwise, whatever the machine that measured it used
        self.threads = threads or default_threads()
        set_threads(self.threads)
        self.device = tvm.device(device or ("cuda" if target.get("kind") == "cuda" else "cpu"), 0)
        try:
            self._lib = tvm.runtime.load_module(str(lib))
        except Exception as exc:
            raise ArtifactError(f"{lib}: cannot load: {str(exc).strip().splitlines()[-1]}") from None
        self.vm = relax.VirtualMachine(self._lib, self.device)
        self.input_shape = tuple(self.metadata["input_shape"])
        self.input_dtype = self.metadata.get("input_dtype", "float32")
        self._input: Any = None

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        if tuple(x.shape) != self.input_shape:
            raise ArtifactError(f"{self.path}: input shape {tuple(x.shape)} does not match the "
                                f"artifact's {self.input_shape}")
        return x

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import tvm

        x = self._check(x)
        if self._input is None:
            # one input buffer for every call: a fresh one per call is a large allocation that
            # the C library maps and unmaps each time, page faults included, on every call
            self._input = tvm.runtime.empty(self.input_shape, self.input_dtype, self.device)
        out = self.vm[self.metadata.get("entry", "main")](self._input.copyfrom(x))
        if not hasattr(out, "numpy"):  # a tuple return
            out = out[0]
        return out.numpy()

    def benchmark(self, warmup: int = 10, repeats: int = 50, x: np.ndarray | None = None,
                  min_seconds: float = 1.0, passes: int = 1, canary: Any = None,
                  max_passes: int | None = None) -> Any:
        """Median/p90 latency in ms (:class:`tvm_ofa.compiler.measure.Latency`) over at least
        ``repeats`` calls spanning at least ``min_seconds``, in ``passes`` such windows, each at
        the ``canary``'s usual speed when given, more up to ``max_passes`` until the fastest is
        confirmed (see :func:`benchmark_vm`)."""
        from tvm_ofa.compiler.measure import benchmark_vm, runtime_threads

        if x is None:
            x = np.random.default_rng(0).standard_normal(self.input_shape).astype(self.input_dtype)
        # the threads the pool really runs, which a pool started earlier may have capped
        threads = runtime_threads() if self.device.dlpack_device_type() == 1 else None  # kDLCPU
        return benchmark_vm(self.vm, self.device, self._check(x), warmup, repeats,
                            threads or self.threads,
                            min_seconds, passes=passes, canary=canary, max_passes=max_passes)


def time_artifact(path: str | os.PathLike, threads: int | None = None, warmup: int = 10, repeats: int = 50,
                  x: np.ndarray | None = None, loads: int = 2, passes: int = 2, max_passes: int = 4,
                  min_seconds: float = 1.0) -> Any:
    """Time a library the way the latency predictor's truth is timed, so that the figure in its
    metadata can be compared with a prediction.

    On a shared VM every window of one load can run slow together, which no number of windows in
    that load reveals; so the library is loaded ``loads`` times afresh (one more when the two
    fastest loads disagree by more than 5 %), and each load is timed in ``passes`` windows, more up
    to ``max_passes`` until its fastest is confirmed by a second.

    Returns
    -------
    Latency
        ``latency_ms`` the fastest window, ``loads_ms`` the fastest window of each load,
        ``passes_ms`` every window, ``median_ms`` their median.
    """
    from tvm_ofa.compiler.measure import combine_loads, load_wanted

    timed = []
    while load_wanted([min(t.passes_ms or (t.median_ms,)) for t in timed], loads):
        art = load_artifact(path, threads=threads)
        timed.append(art.benchmark(warmup, repeats, x, min_seconds=min_seconds, passes=passes,
                                   max_passes=max_passes))
        del art
    return combine_loads(timed)


def load_artifact(path: str | os.PathLike, device: str | None = None, threads: int | None = None
                  ) -> Artifact:
    """Load ``artifacts/<target>/<arch-id>/`` as a callable on numpy arrays.

    Parameters
    ----------
    path : path
        The artifact folder (or its model.so / metadata.json).
    device : str, optional
        TVM device name (``cpu``, ``cuda``); default: where the artifact's target runs.
    threads : int, optional
        Runtime threads (default: ``TVM_NUM_THREADS`` if set, else every physical core).
    """
    return Artifact(path, device=device, threads=threads)
