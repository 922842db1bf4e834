"""Target configs: one YAML file per hardware target (``targets/<name>.yaml``).

Validation is plain Python on ``yaml.safe_load`` output and never imports tvm (``import tvm``
costs seconds), so ``tvm-ofa targets`` and config errors stay instant. Resolving ``mcpu: native``
needs LLVM and therefore tvm; it happens lazily in :meth:`TargetConfig.resolved_target`.

Schema::

    name: host-cpu                       # [a-z0-9._-]+, names log and artifact folders
    target: {kind: llvm, mcpu: native}   # passed to tvm.target.Target (dict form only)
    host: {kind: llvm}                   # optional, for device targets (cuda)
    threads: 2                           # optional, runtime threads (default: all cores)
    runner: {kind: local}                # or {kind: rpc, tracker_host, tracker_port, key}
    cc: aarch64-linux-gnu-gcc            # optional cross compiler for export_library
    tuning: {trials_per_task: 64, trials_per_round: 16}
    prepack: false                       # optional: weights stored in each schedule's tiled
                                         # layout at compile time (tuning records of such a
                                         # target only fit such a target: give it its own name)
    nchwc: false                         # optional: convolutions and the ops between them in the
                                         # blocked NCHW8c layout (true or 8), or NCHW16c where a
                                         # tensor's channels allow and NCHW8c elsewhere (16: for
                                         # CPUs with full-width AVX-512) (same caveat)
    prefer: [host-cpu-nchwc16, host-cpu-prepack]
                                         # optional: targets of faster lowerings of the same CPU,
                                         # fastest first (predict.calibrate.choose_lowering)
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from tvm_ofa.compiler.lower import NCHWC_BLOCKS, Lowering, nchwc_block
from tvm_ofa.defaults import shipped
from tvm_ofa.errors import ConfigError

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
# tvm.target.Target.list_kinds() of TVM 0.27, kept here so that validating a config needs no
# tvm import (5 s); tests/test_targets.py checks it against the installed TVM
TVM_TARGET_KINDS = frozenset({"c", "composite", "cuda", "cuda_host", "ext_dev", "hexagon", "llvm", "metal",
                              "nvptx", "opencl", "rocm", "test", "trn", "vulkan", "webgpu"})
TARGETS_DIR = shipped("targets")


def _err(path: str, fld: str, msg: str) -> ConfigError:
    return ConfigError(f"{path}: {fld}: {msg}")


def _check_str(path: str, fld: str, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise _err(path, fld, f"expected a non-empty string, got {v!r}")
    return v


def _check_int(path: str, fld: str, v: Any, lo: int = 1, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise _err(path, fld, f"expected an integer {rng}, got {v!r}")
    return v


def _check_keys(path: str, fld: str, v: Any, allowed: set[str], required: set[str]) -> dict:
    if not isinstance(v, Mapping):
        raise _err(path, fld, f"expected a mapping, got {type(v).__name__}")
    unknown = sorted(set(map(str, v)) - allowed)
    if unknown:
        raise _err(path, f"{fld}.{unknown[0]}" if fld else unknown[0],
                   f"unknown key (allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(v))
    if missing:
        raise _err(path, f"{fld}.{missing[0]}" if fld else missing[0], "required key is missing")
    return dict(v)


def _check_tvm_target(path: str, fld: str, v: Any) -> dict:
    if isinstance(v, str):
        raise _err(path, fld, "target strings are not supported by TVM 0.27; "
                              "write a mapping such as {kind: llvm, mcpu: native}")
    d = _check_keys(path, fld, v, allowed=set(map(str, v)) if isinstance(v, Mapping) else set(),
                    required={"kind"})
    _check_str(path, f"{fld}.kind", d["kind"])
    if d["kind"] not in TVM_TARGET_KINDS:
        raise _err(path, f"{fld}.kind", f"{d['kind']!r} is not a target kind TVM knows "
                                        f"(it knows: {', '.join(sorted(TVM_TARGET_KINDS))})")
    for k, val in d.items():
        if not isinstance(val, (str, int, float, bool, list)):
            raise _err(path, f"{fld}.{k}", f"expected a scalar or list, got {type(val).__name__}")
    return d


def _check_runner(path: str, fld: str, v: Any) -> dict:
    if not isinstance(v, Mapping) or "kind" not in v:
        raise _err(path, f"{fld}.kind", "required key is missing (local or rpc)")
    kind = v["kind"]
    spec = _RUNNER_SCHEMA.get(kind)
    if spec is None:
        raise _err(path, f"{fld}.kind", f"unknown runner {kind!r} (choose: {', '.join(_RUNNER_SCHEMA)})")
    d = _check_keys(path, fld, v, allowed=spec[0], required=spec[1])
    if kind == "rpc":
        _check_str(path, f"{fld}.tracker_host", d["tracker_host"])
        _check_int(path, f"{fld}.tracker_port", d["tracker_port"], 1, 65535)
        _check_str(path, f"{fld}.key", d["key"])
    return d


# runner kind -> (allowed keys, required keys)
_RUNNER_SCHEMA: dict[str, tuple[set[str], set[str]]] = {
    "local": ({"kind"}, {"kind"}),
    "rpc": ({"kind", "tracker_host", "tracker_port", "key", "timeout_s"},
            {"kind", "tracker_host", "tracker_port", "key"}),
}


def _check_bool(path: str, fld: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise _err(path, fld, f"expected true or false, got {v!r}")
    return v


def _check_nchwc(path: str, fld: str, v: Any) -> int:
    if not isinstance(v, (bool, int)) or (not isinstance(v, bool) and v not in NCHWC_BLOCKS):
        raise _err(path, fld, f"expected true, false or a block of "
                              f"{' or '.join(map(str, NCHWC_BLOCKS))} channels, got {v!r}")
    return nchwc_block(v)


def _check_prefer(path: str, fld: str, v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(n, str) and _NAME_RE.match(n) for n in v):
        raise _err(path, fld, f"expected a list of target names, got {v!r}")
    return tuple(v)


def _check_tuning(path: str, fld: str, v: Any) -> dict:
    d = _check_keys(path, fld, v, allowed={"trials_per_task", "trials_per_round"}, required=set())
    out = {"trials_per_task": 64, "trials_per_round": 16, **d}
    _check_int(path, f"{fld}.trials_per_task", out["trials_per_task"])
    _check_int(path, f"{fld}.trials_per_round", out["trials_per_round"])
    return out


# top-level key -> validator; required keys below. The registry is the schema.
_FIELDS: dict[str, Callable[[str, str, Any], Any]] = {
    "name": _check_str,
    "target": _check_tvm_target,
    "host": _check_tvm_target,
    "threads": lambda p, f, v: _check_int(p, f, v),
    "runner": _check_runner,
    "cc": _check_str,
    "tuning": _check_tuning,
    "description": _check_str,
    "prepack": _check_bool,
    "nchwc": _check_nchwc,
    "prefer": _check_prefer,
}
_REQUIRED = {"name", "target"}


@dataclass(frozen=True)
class TargetConfig:
    """A validated target config. ``target`` is the mapping as written (``mcpu`` may be
    ``native``); :meth:`resolved_target` gives the dict to hand to ``tvm.target.Target``."""

    name: str
    target: dict
    path: str = "<memory>"
    host: dict | None = None
    threads: int | None = None
    runner: dict = field(default_factory=lambda: {"kind": "local"})
    cc: str | None = None
    tuning: dict = field(default_factory=lambda: {"trials_per_task": 64, "trials_per_round": 16})
    description: str | None = None
    # the YAML's prepack and nchwc keys: they change the workloads, so the tuning records of a
    # target fit only a lowering with the same options
    lowering: Lowering = field(default_factory=Lowering)
    # targets of faster lowerings of the same CPU, fastest first
    # (``tvm_ofa.predict.calibrate.choose_lowering``)
    prefer: tuple[str, ...] = ()

    @property
    def is_native(self) -> bool:
        return self.target.get("mcpu") == "native"

    @property
    def is_cpu(self) -> bool:
        return self.target.get("kind") == "llvm"

    @property
    def is_cross(self) -> bool:
        """True when the code cannot run on this machine (other arch or a device target)."""
        if self.target.get("kind") != "llvm":
            return True
        triple = str(self.target.get("mtriple", ""))
        return bool(triple) and not triple.startswith(os.uname().machine)

    @property
    def num_threads(self) -> int:
        return self.threads or os.cpu_count() or 1

    def host_cpu(self) -> str | None:
        """LLVM's name of the CPU the code is built for (native resolved), None for non-LLVM."""
        if not self.is_cpu:
            return None
        if self.is_native:
            from tvm.target import codegen  # lazy: costs seconds

            return str(codegen.llvm_get_system_cpu())
        return str(self.target.get("mcpu", "generic"))

    def resolved_target(self) -> dict:
        """The target mapping with ``mcpu: native`` replaced by the host CPU's LLVM name
        (TVM's wheel silently turns ``native`` into ``generic``) and ``num-cores`` set."""
        t = dict(self.target)
        if self.is_native:
            t["mcpu"] = self.host_cpu()
        if self.is_cpu and "num-cores" not in t:
            # MetaSchedule sizes its parallel loops from num-cores
            t["num-cores"] = self.num_threads
        if self.host is not None:
            t["host"] = dict(self.host)
        return t

    def tvm_target(self) -> Any:
        import tvm  # lazy

        try:
            return tvm.target.Target(self.resolved_target())
        except Exception as exc:  # TVM's message is long; keep the first line
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{self.path}: target: TVM rejects it: {first}") from None

    def log_dir(self, root: str | os.PathLike | None = None) -> Path:
        """``<root>/<name>/<cpu>/`` for native targets (``<cpu>-<n>threads`` where ``<cpu>``'s
        records were timed with another thread count: :func:`tvm_ofa.compiler.store.cpu_folder`),
        ``<root>/<name>/`` otherwise. Without a
        root, the default one (``tvm_ofa.compiler.store.default_log_root``: the user's data folder,
        filled from the shipped logs on first use)."""
        from tvm_ofa.compiler import store

        base = Path(root) / self.name if root is not None else \
            store.target_folder(store.default_log_root(), self.name)
        if not self.is_native:
            return base
        return store.cpu_folder(base, self.host_cpu(), self.num_threads)  # type: ignore[arg-type]


def parse_target(data: Any, path: str = "<memory>") -> TargetConfig:
    """Validate a loaded YAML document; raise ConfigError naming ``path`` and the field."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    d = _check_keys(path, "", data, allowed=set(_FIELDS), required=_REQUIRED)
    out = {k: _FIELDS[k](path, k, v) for k, v in d.items()}
    if not _NAME_RE.match(out["name"]):
        raise _err(path, "name", f"{out['name']!r} must match [a-z0-9][a-z0-9._-]*")
    if out["target"]["kind"] not in ("llvm", "c") and "host" not in out:
        out["host"] = {"kind": "llvm"}
    out["lowering"] = Lowering(out.pop("prepack", False), out.pop("nchwc", 0))
    return TargetConfig(path=path, **out)


def load_target(path: str | os.PathLike) -> TargetConfig:
    """Read and validate ``targets/<name>.yaml``. A bare name looks in the shipped targets/."""
    p = Path(path)
    if not p.exists() and not p.suffix and (TARGETS_DIR / f"{p}.yaml").exists():
        p = TARGETS_DIR / f"{p}.yaml"
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read target config: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not a YAML text file (byte {exc.start} is not UTF-8)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise ConfigError(f"{p}: {where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    return parse_target(data, str(p))


def lowering_candidates(cfg: TargetConfig) -> list[TargetConfig]:
    """``cfg``'s preferred lowerings that suit this CPU (``Lowering.suits``), fastest first, then
    ``cfg`` itself. Each keeps ``cfg``'s CPU, threads and runner and takes the name (and so the
    logs) and the lowering of its target."""
    if not cfg.prefer:
        return [cfg]
    cpu = cfg.host_cpu()
    out = []
    for name in cfg.prefer:
        here = Path(cfg.path).parent / f"{name}.yaml"
        alt = load_target(here if here.is_file() else name)
        if alt.lowering.suits(cpu):
            out.append(replace(cfg, name=alt.name, lowering=alt.lowering, description=alt.description, prefer=()))
    return out + [replace(cfg, prefer=())]


def fastest_lowering(cfg: TargetConfig) -> TargetConfig:
    """The fastest lowering of ``cfg`` for this CPU: where new measurements and predictors go
    (``latency collect`` and ``fit``), so that ``tvm_ofa.predict.calibrate.choose_lowering`` moves
    to it once they exist."""
    return lowering_candidates(cfg)[0]


def list_targets(directory: str | os.PathLike = TARGETS_DIR) -> list[Path]:
    """The shipped target config files, sorted by name."""
    return sorted(Path(directory).glob("*.yaml"))


def host_provenance(cfg: TargetConfig) -> dict:
    """CPU name and features, threads and TVM version: what a tuning log or timing depends on."""
    import tvm  # lazy

    info: dict[str, Any] = {"target": cfg.name, "resolved_target": cfg.resolved_target(),
                            "threads": cfg.num_threads, "tvm_version": tvm.__version__}
    if cfg.is_cpu:
        info["cpu"] = cfg.host_cpu()
        info["cpu_features"] = cpu_features(cfg)
    return info


def cpu_features(cfg: TargetConfig) -> list[str]:
    """Enabled LLVM features of the resolved target (``/proc/cpuinfo`` flags as a fallback)."""
    try:
        import tvm
        from tvm.target import codegen

        target = tvm.target.Target({k: v for k, v in cfg.resolved_target().items() if k != "host"})
        return sorted(str(f) for f in codegen.llvm_get_cpu_features(target))
    except Exception:  # features are provenance, not function: fall back rather than fail
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("flags"):
                    return sorted(line.split(":", 1)[1].split())
        except OSError:
            pass
        return []
