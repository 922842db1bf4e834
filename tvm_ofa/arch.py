"""Architectures of the OFA MobileNetV3 space: ``ArchConfig`` names one subnet, ``SearchSpace``
holds the choices and the operations a search needs (sample, mutate, crossover, encode).

The layout follows the official once-for-all API (``set_active_subnet(ks=, e=, d=)``): one kernel
size and one expand ratio per block slot (``n_stages * max_depth`` slots, 20 by default) and one
depth per stage (5), so configs can be pasted from there. Entries of block slots that a stage's
depth skips are kept as given but ignored: they do not change the network, its id or its encoding.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import numpy as np

from tvm_ofa.errors import ArchError

RngLike = Union[np.random.Generator, int, None]

_ARCH_KEYS = {"ks", "e", "d", "resolution"}


def _rng(rng: RngLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _int_list(value: Any, name: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ArchError(f"arch.{name}: expected a list of integers, got {value!r}")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                raise ArchError(f"arch.{name}[{i}] = {v!r}: expected an integer")
        out.append(int(v))
    return tuple(out)


@dataclass(frozen=True)
class ArchConfig:
    """One subnet: per-block kernel sizes ``ks``, expand ratios ``e``, per-stage depths ``d`` and the
    input ``resolution`` (square, pixels).

    Parameters
    ----------
    ks, e : sequence of int
        One entry per block slot (``n_stages * max_depth``, 20 for the default space).
    d : sequence of int
        One entry per stage (5 for the default space).
    resolution : int
        Input height and width.
    """

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    resolution: int = 224

    def __post_init__(self) -> None:
        object.__setattr__(self, "ks", _int_list(self.ks, "ks"))
        object.__setattr__(self, "e", _int_list(self.e, "e"))
        object.__setattr__(self, "d", _int_list(self.d, "d"))
        if isinstance(self.resolution, bool) or not isinstance(self.resolution, (int, np.integer)):
            raise ArchError(f"arch.resolution = {self.resolution!r}: expected an integer")
        object.__setattr__(self, "resolution", int(self.resolution))
        if len(self.ks) != len(self.e):
            raise ArchError(f"arch: ks has {len(self.ks)} entries but e has {len(self.e)}")
        if not self.d:
            raise ArchError("arch.d: needs one depth per stage, got none")
        if len(self.ks) % len(self.d):
            raise ArchError(
                f"arch: {len(self.ks)} block slots do not split evenly into {len(self.d)} stages"
            )

    # -- structure ---------------------------------------------------------------------------
    @property
    def n_stages(self) -> int:
        return len(self.d)

    @property
    def max_depth(self) -> int:
        """Block slots per stage."""
        return len(self.ks) // len(self.d)

    def active_blocks(self) -> list[int]:
        """Indices of the block slots that run, in order."""
        return [s * self.max_depth + i for s, depth in enumerate(self.d) for i in range(depth)]

    def stage_blocks(self) -> list[list[int]]:
        """Active block slots grouped per stage."""
        return [[s * self.max_depth + i for i in range(depth)] for s, depth in enumerate(self.d)]

    def canonical(self) -> "ArchConfig":
        """The same network with skipped slots set to the first active value of their stage (or of
        the previous stage), so that equal networks compare equal."""
        ks, e = list(self.ks), list(self.e)
        for s, depth in enumerate(self.d):
            base = s * self.max_depth
            for i in range(depth, self.max_depth):
                ks[base + i] = ks[base + depth - 1] if depth else ks[base]
                e[base + i] = e[base + depth - 1] if depth else e[base]
        return ArchConfig(ks=ks, e=e, d=self.d, resolution=self.resolution)

    @property
    def id(self) -> str:
        """A short stable name, e.g. ``r160-d22222-1a2b3c4d``: equal networks share it."""
        active = self.active_blocks()
        payload = json.dumps(
            {"ks": [self.ks[i] for i in active], "e": [self.e[i] for i in active], "d": self.d,
             "r": self.resolution},
            separators=(",", ":"),
        )
        digest = hashlib.sha1(payload.encode()).hexdigest()[:8]
        return f"r{self.resolution}-d{''.join(map(str, self.d))}-{digest}"

    # -- serialization -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"ks": list(self.ks), "e": list(self.e), "d": list(self.d), "resolution": self.resolution}

    def to_ofa(self) -> dict[str, Any]:
        """once-for-all's arch dict (``{"wid": None, "ks", "e", "d", "r": [resolution]}``), as its
        ``OFAMobileNetV3.set_active_subnet(**...)`` and its search write it."""
        return {"wid": None, "ks": list(self.ks), "e": list(self.e), "d": list(self.d), "r": [self.resolution]}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "arch") -> "ArchConfig":
        """Build from a mapping; accepts once-for-all's forms as they are written: ``r`` (an int
        or a one-element list) or ``image_size`` for the resolution, and ``wid: null``."""
        if not isinstance(data, dict):
            raise ArchError(f"{source}: expected a JSON object with ks, e, d, resolution")
        data = dict(data)
        if "wid" in data:
            # once-for-all writes the width index of a multi-width supernet; ours have one width
            wid = data.pop("wid")
            if wid is not None:
                raise ArchError(f"{source}: wid = {wid!r}: this supernet has a single width, so once-for-all "
                                "writes wid as null; an arch of a multi-width supernet does not apply")
        if "resolution" not in data and ("r" in data or "image_size" in data):
            r = data.pop("r", data.pop("image_size", None))
            data["resolution"] = r[0] if isinstance(r, (list, tuple)) and len(r) == 1 else r
        data.pop("r", None)
        data.pop("image_size", None)
        unknown = sorted(set(data) - _ARCH_KEYS)
        if unknown:
            raise ArchError(f"{source}: unknown key(s) {', '.join(unknown)}; expected ks, e, d, resolution")
        missing = [k for k in ("ks", "e", "d") if k not in data]
        if missing:
            raise ArchError(f"{source}: missing key(s) {', '.join(missing)}")
        try:
            return cls(ks=data["ks"], e=data["e"], d=data["d"], resolution=data.get("resolution", 224))
        except ArchError as err:
            raise ArchError(f"{source}: {err}") from None

    @classmethod
    def from_json(cls, text_or_path: Union[str, Path]) -> "ArchConfig":
        """Parse a JSON string, or read a ``.json`` file when given a path."""
        source = "arch"
        text = str(text_or_path)
        if isinstance(text_or_path, Path) or not text.lstrip().startswith("{"):
            path = Path(text_or_path)
            source = str(path)
            try:
                text = path.read_text()
            except OSError as err:
                raise ArchError(f"{path}: cannot read arch file ({err.strerror})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ArchError(f"{source}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
        return cls.from_dict(data, source=source)


@dataclass(frozen=True)
class SearchSpace:
    """The choices of the elastic MobileNetV3 space.

    Defaults are the paper's: kernel 3/5/7, expand 3/4/6, depth 2/3/4 in 5 stages, and input
    resolutions 128 to 224 in steps of 4.
    """

    ks_choices: tuple[int, ...] = (3, 5, 7)
    e_choices: tuple[int, ...] = (3, 4, 6)
    d_choices: tuple[int, ...] = (2, 3, 4)
    resolutions: tuple[int, ...] = tuple(range(128, 225, 4))
    n_stages: int = 5

    def __post_init__(self) -> None:
        for name in ("ks_choices", "e_choices", "d_choices", "resolutions"):
            values = tuple(sorted(set(_int_list(getattr(self, name), name))))
            if not values:
                raise ArchError(f"space.{name}: needs at least one value")
            object.__setattr__(self, name, values)
        if any(k % 2 == 0 or k < 1 for k in self.ks_choices):
            raise ArchError(f"space.ks_choices: kernel sizes must be odd, got {list(self.ks_choices)}")
        if min(self.d_choices) < 1:
            raise ArchError("space.d_choices: depths must be >= 1")
        if min(self.e_choices) < 1:
            raise ArchError("space.e_choices: expand ratios must be >= 1")

    # -- shape of the space --------------------------------------------------------------------
    @property
    def max_depth(self) -> int:
        return max(self.d_choices)

    @property
    def n_blocks(self) -> int:
        """Block slots: ``n_stages * max_depth``."""
        return self.n_stages * self.max_depth

    def size(self, with_resolution: bool = True) -> int:
        """Number of distinct networks (skipped slots do not count twice)."""
        per_block = len(self.ks_choices) * len(self.e_choices)
        per_stage = sum(per_block**d for d in self.d_choices)
        n = per_stage**self.n_stages
        return n * len(self.resolutions) if with_resolution else n

    def to_dict(self) -> dict[str, Any]:
        return {
            "ks_choices": list(self.ks_choices),
            "e_choices": list(self.e_choices),
            "d_choices": list(self.d_choices),
            "resolutions": list(self.resolutions),
            "n_stages": self.n_stages,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SearchSpace":
        unknown = sorted(set(data) - set(cls().to_dict()))
        if unknown:
            raise ArchError(f"space: unknown key(s) {', '.join(unknown)}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})

    # -- named members -------------------------------------------------------------------------
    def largest(self, resolution: int | None = None) -> ArchConfig:
        return ArchConfig(
            ks=[max(self.ks_choices)] * self.n_blocks,
            e=[max(self.e_choices)] * self.n_blocks,
            d=[max(self.d_choices)] * self.n_stages,
            resolution=resolution or max(self.resolutions),
        )

    def smallest(self, resolution: int | None = None) -> ArchConfig:
        return ArchConfig(
            ks=[min(self.ks_choices)] * self.n_blocks,
            e=[min(self.e_choices)] * self.n_blocks,
            d=[min(self.d_choices)] * self.n_stages,
            resolution=resolution or min(self.resolutions),
        )

    def middle(self, resolution: int | None = None) -> ArchConfig:
        """Every block at the median kernel and expand choice, every stage at the median depth
        (the upper median of an even count); the benchmarks' middle subnet."""
        mid = lambda choices: sorted(choices)[len(choices) // 2]  # noqa: E731
        ordered = sorted(self.resolutions)
        return ArchConfig(
            ks=[mid(self.ks_choices)] * self.n_blocks,
            e=[mid(self.e_choices)] * self.n_blocks,
            d=[mid(self.d_choices)] * self.n_stages,
            resolution=resolution or ordered[len(ordered) // 2],
        )

    # -- validation ----------------------------------------------------------------------------
    def validate(self, arch: ArchConfig) -> ArchConfig:
        """Return ``arch`` if it lies in the space; raise ``ArchError`` naming the field, the
        index and the allowed values otherwise."""
        if len(arch.d) != self.n_stages:
            raise ArchError(f"arch.d has {len(arch.d)} entries, the space has {self.n_stages} stages")
        if len(arch.ks) != self.n_blocks:
            raise ArchError(
                f"arch.ks has {len(arch.ks)} entries, the space has {self.n_blocks} block slots "
                f"({self.n_stages} stages x {self.max_depth})"
            )
        for name, values, allowed in (
            ("d", arch.d, self.d_choices),
            ("ks", arch.ks, self.ks_choices),
            ("e", arch.e, self.e_choices),
        ):
            active = range(len(values)) if name == "d" else arch.active_blocks()
            for i in active:
                if values[i] not in allowed:
                    raise ArchError(
                        f"arch.{name}[{i}] = {values[i]}: allowed {', '.join(map(str, allowed))}"
                    )
        if arch.resolution not in self.resolutions:
            lo, hi = min(self.resolutions), max(self.resolutions)
            raise ArchError(
                f"arch.resolution = {arch.resolution}: allowed {lo}..{hi} "
                f"({len(self.resolutions)} values: {_short_list(self.resolutions)})"
            )
        return arch

    def contains(self, arch: ArchConfig) -> bool:
        try:
            self.validate(arch)
        except ArchError:
            return False
        return True

    # -- sampling and evolution ----------------------------------------------------------------
    def sample(self, rng: RngLike = None, resolution: int | None = None) -> ArchConfig:
        """One architecture drawn uniformly per choice (as once-for-all samples)."""
        g = _rng(rng)
        return ArchConfig(
            ks=g.choice(self.ks_choices, self.n_blocks).tolist(),
            e=g.choice(self.e_choices, self.n_blocks).tolist(),
            d=g.choice(self.d_choices, self.n_stages).tolist(),
            resolution=int(resolution or g.choice(self.resolutions)),
        ).canonical()

    def sample_many(self, n: int, rng: RngLike = None) -> list[ArchConfig]:
        g = _rng(rng)
        return [self.sample(g) for _ in range(n)]

    def mutate(self, arch: ArchConfig, prob: float = 0.1, rng: RngLike = None,
               mutate_resolution: bool = True) -> ArchConfig:
        """Resample each gene (kernel, expand per slot; depth per stage; resolution) with
        probability ``prob``."""
        g = _rng(rng)
        ks, e, d = list(arch.ks), list(arch.e), list(arch.d)
        for i in range(self.n_blocks):
            if g.random() < prob:
                ks[i] = int(g.choice(self.ks_choices))
            if g.random() < prob:
                e[i] = int(g.choice(self.e_choices))
        for s in range(self.n_stages):
            if g.random() < prob:
                d[s] = int(g.choice(self.d_choices))
        r = arch.resolution
        if mutate_resolution and g.random() < prob:
            r = int(g.choice(self.resolutions))
        return ArchConfig(ks=ks, e=e, d=d, resolution=r).canonical()

    def crossover(self, a: ArchConfig, b: ArchConfig, rng: RngLike = None) -> ArchConfig:
        """Each gene from either parent with equal probability."""
        g = _rng(rng)
        pick = lambda x, y: x if g.random() < 0.5 else y  # noqa: E731
        return ArchConfig(
            ks=[pick(x, y) for x, y in zip(a.ks, b.ks)],
            e=[pick(x, y) for x, y in zip(a.e, b.e)],
            d=[pick(x, y) for x, y in zip(a.d, b.d)],
            resolution=pick(a.resolution, b.resolution),
        ).canonical()

    # -- numeric encoding ----------------------------------------------------------------------
    @property
    def encoding_size(self) -> int:
        return self.n_blocks * (len(self.ks_choices) + len(self.e_choices)) + len(self.resolutions)

    def encode(self, arch: ArchConfig) -> np.ndarray:
        """Fixed-length one-hot vector: kernel and expand per slot (all zero for skipped slots),
        then the resolution, as once-for-all's accuracy predictor encodes archs."""
        return self.encode_batch([arch])[0]

    def encode_batch(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        for arch in archs:
            self.validate(arch)
        return self.encode_arrays(*archs_to_arrays(archs))

    def active_mask(self, d: np.ndarray) -> np.ndarray:
        """``(N, n_blocks)`` booleans from depths ``d (N, n_stages)``: which block slots run (a
        stage of depth ``d`` runs its first ``d`` slots)."""
        d = np.asarray(d)
        return np.tile(np.arange(self.max_depth), self.n_stages)[None, :] < np.repeat(d, self.max_depth, axis=1)

    def encode_arrays(self, ks: np.ndarray, e: np.ndarray, d: np.ndarray, r: np.ndarray) -> np.ndarray:
        """``encode`` for a batch held as integer arrays ``ks (N, n_blocks)``, ``e (N, n_blocks)``,
        ``d (N, n_stages)``, ``r (N,)`` (the form searches work on); values are assumed valid."""
        ks, e, d, r = (np.asarray(a) for a in (ks, e, d, r))
        n, nb = ks.shape
        nk, ne = len(self.ks_choices), len(self.e_choices)
        active = self.active_mask(d)
        k_idx = np.searchsorted(self.ks_choices, ks)
        e_idx = np.searchsorted(self.e_choices, e)
        r_idx = np.searchsorted(self.resolutions, r)
        out = np.zeros((n, self.encoding_size), dtype=np.float32)
        rows, slots = np.nonzero(active)
        out[rows, slots * nk + k_idx[rows, slots]] = 1.0
        out[rows, nb * nk + slots * ne + e_idx[rows, slots]] = 1.0
        out[np.arange(n), nb * (nk + ne) + r_idx] = 1.0
        return out


def archs_to_arrays(archs: Sequence[ArchConfig]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(ks, e, d, resolution)`` int32 arrays of a list of archs (one row each)."""
    if not archs:
        return (np.zeros((0, 0), np.int32),) * 3 + (np.zeros(0, np.int32),)
    return (np.array([a.ks for a in archs], np.int32), np.array([a.e for a in archs], np.int32),
            np.array([a.d for a in archs], np.int32), np.array([a.resolution for a in archs], np.int32))


def arrays_to_archs(ks: np.ndarray, e: np.ndarray, d: np.ndarray, r: np.ndarray) -> list[ArchConfig]:
    """The inverse of ``archs_to_arrays``."""
    return [ArchConfig(ks=k.tolist(), e=x.tolist(), d=y.tolist(), resolution=int(z)) for k, x, y, z in zip(ks, e, d, r)]


def _short_list(values: Sequence[int], n: int = 6) -> str:
    if len(values) <= n:
        return ", ".join(map(str, values))
    return ", ".join(map(str, values[:3])) + ", ..., " + ", ".join(map(str, values[-2:]))
