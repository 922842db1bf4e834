"""Training configuration: one YAML file, validated with one-line errors naming file and field."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tvm_ofa.errors import ConfigError

# phase -> how many sub-stages it has (depth and expand shrink in two steps, as in the paper)
PHASE_STAGES = {"largest": 1, "kernel": 1, "depth": 2, "expand": 2}


@dataclass
class PhaseConfig:
    """One progressive-shrinking phase."""

    phase: str
    epochs: float = 1.0
    lr: float = 0.02
    stage: int = 1
    subnets_per_step: int = 2


@dataclass
class TrainConfig:
    dataset: str = "fashion-mnist"
    image_size: int = 64
    val_fraction: float = 0.1
    train_subset: int | None = None
    n_classes: int | None = None
    width_mult: float = 1.0
    stem_stride: int = 2
    dropout_rate: float = 0.1
    space: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 3e-5
    label_smoothing: float = 0.1
    kd_ratio: float = 1.0
    phases: list[PhaseConfig] = field(default_factory=lambda: [
        PhaseConfig("largest", 2, 0.05, 1, 1), PhaseConfig("kernel", 1, 0.02),
        PhaseConfig("depth", 1, 0.02, 1), PhaseConfig("depth", 1, 0.02, 2),
        PhaseConfig("expand", 1, 0.02, 1), PhaseConfig("expand", 1, 0.02, 2)])
    max_batches_per_epoch: int | None = None
    save_every: int = 100
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    out_dir: str = "runs/supernet"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_type(source: str, name: str, value: Any, typ: Any) -> Any:
    # yaml gives ints where floats are meant; never the reverse
    if typ in ("float", float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    allowed = {"int": int, "float": float, "str": str, "dict[str, Any]": dict, "int | None": (int, type(None)),
               int: int, float: float, str: str}
    expected = allowed.get(typ)
    if expected is not None and (not isinstance(value, expected) or isinstance(value, bool)):
        raise ConfigError(f"{source}: field '{name}' must be {getattr(typ, '__name__', typ)}, got {value!r}")
    return value


def load_train_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    """Read a training YAML (``yaml.safe_load``); unknown keys and wrong types are errors."""
    import yaml

    data: dict[str, Any] = {}
    source = str(path) if path else "train config"
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as err:
            raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}: invalid YAML{where}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of training settings")
    data.update({k: v for k, v in overrides.items() if v is not None})
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key '{unknown[0]}' (allowed: {', '.join(fields)})")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name == "phases":
            kwargs[name] = _phases(source, value)
        elif value is not None or "None" in str(fields[name].type):
            kwargs[name] = _check_type(source, name, value, fields[name].type)
    return TrainConfig(**kwargs)


def _phases(source: str, value: Any) -> list[PhaseConfig]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{source}: field 'phases' must be a non-empty list")
    names = {f.name: f for f in dataclasses.fields(PhaseConfig)}
    phases = []
    for i, item in enumerate(value):
        where = f"phases[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{source}: {where} must be a mapping")
        unknown = sorted(set(item) - set(names))
        if unknown:
            raise ConfigError(f"{source}: {where}: unknown key '{unknown[0]}' (allowed: {', '.join(names)})")
        if item.get("phase") not in PHASE_STAGES:
            raise ConfigError(f"{source}: {where}.phase = {item.get('phase')!r}: allowed "
                              f"{', '.join(PHASE_STAGES)}")
        item = {k: _check_type(source, f"{where}.{k}", v, names[k].type) for k, v in item.items()}
        phase = PhaseConfig(**item)
        if not 1 <= phase.stage <= PHASE_STAGES[phase.phase]:
            raise ConfigError(f"{source}: {where}.stage = {phase.stage}: phase '{phase.phase}' has stages "
                              f"1..{PHASE_STAGES[phase.phase]}")
        phases.append(phase)
    return phases
