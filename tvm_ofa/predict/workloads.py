"""The operators of a subnet as MetaSchedule sees them: one :class:`Workload` per fused TIR task
of the lowering pipeline (``tvm_ofa.compiler.lower``), computed from the ``ArchConfig`` alone.

The same :class:`Workload` (and so the same :attr:`Workload.key`) is parsed back from a real TVM
task's PrimFunc by :func:`workload_from_primfunc`, which is how tuning records (keyed by TVM's
structural hash) are joined to descriptors. Two tasks are one workload for TVM exactly when
they are structurally equal, i.e. same op, same fused epilogue and same shapes: that is what the
key holds, nothing about the role of the layer (an SE reduce and an expand conv with equal shapes
and activation are one workload, as TVM merges them too).

:class:`WorkloadTable` precomputes every workload a search space can produce, so that a batch
of thousands of archs turns into an integer matrix of workload ids with a few numpy gathers.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tvm_ofa.arch import ArchConfig, SearchSpace
from tvm_ofa.errors import ArchError
from tvm_ofa.nn.ofa_mbv3 import (Block, Geometry, Slot, StageLayout, block_slots, conv_size_out, first_block,
                                 slot_block, subnet_geometry)

KINDS = ("conv2d", "dwconv", "mean", "reshape", "matmul")
# fused epilogue name -> the TIR blocks that follow the main op (digits and ``T_`` stripped),
# in the order FuseOps/FuseTIR emit them
EPILOGUES: dict[str, tuple[str, ...]] = {
    "none": (),
    "bias": ("add",),
    "bias_res": ("add", "add"),
    "bias_relu": ("add", "compute"),
    "bias_hswish": ("add", "add", "compute", "compute", "multiply", "divide"),
    "hswish": ("add", "compute", "compute", "multiply", "divide"),
    "bias_hsig_mul": ("add", "add", "compute", "compute", "divide", "multiply"),
}
_EPI_BY_BLOCKS = {blocks: name for name, blocks in EPILOGUES.items()}
_EPI_IDS = {name: i for i, name in enumerate(EPILOGUES)}
_KIND_IDS = {name: i for i, name in enumerate(KINDS)}
_ACT_EPI = {"relu": "bias_relu", "h_swish": "bias_hswish"}
# elementwise ops per output element of each epilogue (for the FLOP and byte features)
_EPI_OPS = {name: len(blocks) for name, blocks in EPILOGUES.items()}

FEATURES = ("kind", "epilogue", "n", "cin", "cout", "h", "ho", "k", "s", "log_macs", "log_bytes",
            "intensity", "log_out", "log_in", "log_weight", "ho_conv")


@dataclass(frozen=True)
class Workload:
    """One fused TIR task.

    Attributes
    ----------
    kind : str
        ``conv2d`` (dense), ``dwconv`` (depthwise), ``mean`` (global average), ``reshape``,
        ``matmul``.
    epilogue : str
        Key of :data:`EPILOGUES`: what FuseOps put after the main op.
    n, cin, cout : int
        Batch, input and output channels (features for ``matmul``).
    h : int
        Input height (= width) of the main op.
    ho : int
        Height of the task's output tensor (for ``bias_hsig_mul`` the gated tensor, not the 1x1
        convolution).
    k, s : int
        Kernel and stride (0 and 1 for non-convolutions).
    """

    kind: str
    epilogue: str
    n: int
    cin: int
    cout: int
    h: int
    ho: int
    k: int = 0
    s: int = 1

    @property
    def key(self) -> str:
        """Stable name of the workload, e.g. ``conv2d:bias_relu:n1:c16:o48:h20:ho20:k1:s1``."""
        return (f"{self.kind}:{self.epilogue}:n{self.n}:c{self.cin}:o{self.cout}:h{self.h}"
                f":ho{self.ho}:k{self.k}:s{self.s}")

    @classmethod
    def from_key(cls, key: str) -> "Workload":
        kind, epi, *rest = key.split(":")
        vals = {re.match(r"[a-z]+", f).group(0): int(re.sub(r"^[a-z]+", "", f)) for f in rest}
        return cls(kind, epi, vals["n"], vals["c"], vals["o"], vals["h"], vals["ho"], vals["k"], vals["s"])

    @property
    def ho_conv(self) -> int:
        """Output height of the main op itself."""
        if self.kind in ("conv2d", "dwconv"):
            return (self.h - 1) // self.s + 1
        return 1

    @property
    def macs(self) -> int:
        if self.kind == "conv2d":
            return self.n * self.cout * self.cin * self.k**2 * self.ho_conv**2
        if self.kind == "dwconv":
            return self.n * self.cout * self.k**2 * self.ho_conv**2
        if self.kind == "matmul":
            return self.n * self.cin * self.cout
        if self.kind == "mean":
            return self.n * self.cin * self.h**2
        return 0

    @property
    def weight_elems(self) -> int:
        if self.kind == "conv2d":
            return self.cout * self.cin * self.k**2
        if self.kind == "dwconv":
            return self.cout * self.k**2
        if self.kind == "matmul":
            return self.cin * self.cout
        return 0

    @property
    def in_elems(self) -> int:
        extra = self.n * self.cout * self.ho**2 if self.epilogue in ("bias_res", "bias_hsig_mul") else 0
        return self.n * self.cin * self.h**2 + extra

    @property
    def out_elems(self) -> int:
        if self.kind == "matmul":
            return self.n * self.cout
        return self.n * self.cout * self.ho**2

    def features(self) -> list[float]:
        """The model's input row, in :data:`FEATURES` order."""
        flops = 2 * self.macs + _EPI_OPS[self.epilogue] * self.out_elems
        nbytes = 4 * (self.in_elems + self.weight_elems + self.out_elems)
        return [_KIND_IDS[self.kind], _EPI_IDS[self.epilogue], self.n, self.cin, self.cout, self.h,
                self.ho, self.k, self.s, np.log1p(flops), np.log1p(nbytes), flops / max(nbytes, 1),
                np.log1p(self.out_elems), np.log1p(self.in_elems), np.log1p(self.weight_elems),
                self.ho_conv]


def feature_matrix(workloads: Sequence[Workload]) -> np.ndarray:
    """Rows of :meth:`Workload.features` (float32, shape ``(len(workloads), len(FEATURES))``)."""
    return np.asarray([w.features() for w in workloads], dtype=np.float32).reshape(-1, len(FEATURES))


# -- analytic: ArchConfig -> workloads ------------------------------------------------------------
def _conv(n: int, cin: int, cout: int, h: int, k: int, s: int, epi: str, dw: bool = False) -> Workload:
    return Workload("dwconv" if dw else "conv2d", epi, n, cin, cout, h, conv_size_out(h, s), k, s)


def _block(n: int, b: Block) -> list[Workload]:
    """The tasks of one inverted-residual block, in execution order."""
    act_epi = _ACT_EPI[b.act]
    ops = [_conv(n, b.cin, b.mid, b.size_in, 1, 1, act_epi)] if b.expand else []
    ops.append(_conv(n, b.mid, b.mid, b.size_in, b.kernel, b.stride, act_epi, dw=True))
    if b.se_mid is not None:
        ops += [Workload("mean", "none", n, b.mid, b.mid, b.size_out, 1),
                _conv(n, b.mid, b.se_mid, 1, 1, 1, "bias_relu"),
                Workload("conv2d", "bias_hsig_mul", n, b.se_mid, b.mid, 1, b.size_out, 1, 1)]
    ops.append(_conv(n, b.mid, b.cout, b.size_out, 1, 1, "bias_res" if b.residual else "bias"))
    return ops


@dataclass(frozen=True)
class NetConfig:
    """The supernet settings that change operator shapes (weights do not)."""

    width_mult: float = 1.0
    n_classes: int = 1000
    stem_stride: int = 2
    batch: int = 1
    se_reduction: int = 4

    def to_dict(self) -> dict[str, Any]:
        return {"width_mult": self.width_mult, "n_classes": self.n_classes,
                "stem_stride": self.stem_stride, "batch": self.batch, "se_reduction": self.se_reduction}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NetConfig":
        return cls(**{k: d[k] for k in cls().to_dict() if k in d})

    def geometry(self, arch: ArchConfig) -> Geometry:
        """``arch``'s shapes in this network (:func:`tvm_ofa.nn.ofa_mbv3.subnet_geometry`)."""
        return subnet_geometry(arch, self.width_mult, self.n_classes, self.stem_stride, self.se_reduction)

    def first_block(self, resolution: int) -> Block:
        return first_block(StageLayout.for_width(self.width_mult), resolution, self.stem_stride)

    def slots(self, resolution: int, max_depth: int) -> list[Slot]:
        return block_slots(StageLayout.for_width(self.width_mult), resolution, max_depth, self.stem_stride)


def _stem(net: NetConfig, resolution: int) -> Workload:
    return _conv(net.batch, 3, StageLayout.for_width(net.width_mult).stem, resolution, 3, net.stem_stride,
                 "bias_hswish")


def _tail(net: NetConfig, size: int) -> list[Workload]:
    lay = StageLayout.for_width(net.width_mult)
    n = net.batch
    return [_conv(n, lay.stages[-1], lay.final_expand, size, 1, 1, "bias_hswish"),
            Workload("mean", "none", n, lay.final_expand, lay.final_expand, size, 1),
            _conv(n, lay.final_expand, lay.feature_mix, 1, 1, 1, "hswish"),
            Workload("reshape", "none", n, lay.feature_mix, lay.feature_mix, 1, 1),
            Workload("matmul", "bias", n, lay.feature_mix, net.n_classes, 1, 1)]


def subnet_workloads(arch: ArchConfig, net: NetConfig | None = None) -> list[Workload]:
    """The fused tasks of ``arch`` in execution order, one entry per occurrence.

    Parameters
    ----------
    arch : ArchConfig
    net : NetConfig, optional
        Width multiplier, classes, stem stride, batch (defaults: the paper's network, batch 1).

    Returns
    -------
    list of Workload
    """
    net = net or NetConfig()
    geo = net.geometry(arch)
    ops = [_stem(net, arch.resolution)]
    for b in geo.blocks:
        ops += _block(net.batch, b)
    return ops + _tail(net, geo.head_size)


def task_multiset(arch: ArchConfig, net: NetConfig | None = None) -> Counter:
    """``{workload key: weight}``: what ``extract_tasks`` returns for ``arch``, analytically."""
    return Counter(w.key for w in subnet_workloads(arch, net))


# -- TVM task -> workload ---------------------------------------------------------------------
_BUFFER_RE = re.compile(r'T\.Buffer\(\((.*?)\),\s*"(\w+)"\)')
_INT_RE = re.compile(r"T\.int64\((\d+)\)|\b(\d+)\b")
_BLOCK_RE = re.compile(r'T\.sblock\("([^"]+)"\)')
_STRIDE_RE = re.compile(r"v_yy \* T\.int64\((\d+)\)")


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(a or b) for a, b in _INT_RE.findall(text))


# the ``nchwc`` lowering writes clip as maximum/minimum (tvm_ofa.compiler.lower); TOPI's clip
# block is ``compute``, so both lowerings give one epilogue name
_BLOCK_ALIASES = {"maximum": "compute", "minimum": "compute"}


def _block_kind(name: str) -> str:
    name = name[2:] if name.startswith("T_") else name
    name = re.sub(r"\d+$", "", name)
    return "red" if name.endswith("_red") else _BLOCK_ALIASES.get(name, name)


def _unblock(shape: tuple[int, ...]) -> tuple[int, ...]:
    """An ``NCHW<b>c`` activation shape as its NCHW shape (4-D shapes unchanged)."""
    if len(shape) == 5:
        n, c, h, w, b = shape
        return (n, c * b, h, w)
    return shape


def script_parts(script: str) -> tuple[list[tuple[int, ...]], list[str]] | None:
    """The parameter buffers' shapes and the blocks' kinds (names without the module's
    numbering) of a float32 PrimFunc's TVMScript; None for any other."""
    sig = next((line for line in script.splitlines() if line.lstrip().startswith("def main(")), None)
    if sig is None:
        return None
    buffers = _BUFFER_RE.findall(sig)
    if not buffers or any(dtype != "float32" for _, dtype in buffers):
        return None
    return [_shape(s) for s, _ in buffers], [_block_kind(b) for b in _BLOCK_RE.findall(script) if b != "root"]


def workload_from_script(script: str) -> Workload | None:
    """The :class:`Workload` of a PrimFunc's TVMScript, or None when it is not an operator this
    network produces (a foreign workload).

    Parameters
    ----------
    script : str
        ``primfunc.script()`` of the task's ``main``.
    """
    parts = script_parts(script)
    if parts is None:
        return None
    shapes, blocks = parts
    try:
        return _PARSERS[_main_op(blocks)](shapes, blocks, script)
    except (KeyError, IndexError, ValueError):
        return None


def _main_op(blocks: list[str]) -> str:
    for b in blocks:
        if b in _PARSERS:
            return b
    if blocks == ["red", "divide"]:
        return "mean"
    raise KeyError(tuple(blocks))


def _parse_conv(shapes, blocks, script) -> Workload | None:
    main = _main_op(blocks)
    epi = _EPI_BY_BLOCKS.get(tuple(blocks[blocks.index(main) + 1:]))
    x, w, out = shapes[0], shapes[1], shapes[-1]
    if main.endswith("_nchwc"):  # NCHW<i>c in, OIHW<o>o weights (O/o, I, kh, kw, o), NCHW<o>c out
        if len(x) != 5 or len(w) != 5 or len(out) != 5 or w[4] != out[4]:
            return None
        x, w, out = _unblock(x), (w[0] * w[4], *w[1:4]), _unblock(out)
    if epi is None or len(x) != 4 or len(w) != 4 or len(out) != 4 or x[2] != x[3] or w[2] != w[3]:
        return None
    dw = main in ("group_conv2d_nchw", "depthwise_conv2d_nchwc")
    if dw and (w[1] != 1 or w[0] != x[1]):
        return None
    m = _STRIDE_RE.search(script)
    stride = int(m.group(1)) if m else 1
    return Workload("dwconv" if dw else "conv2d", epi, x[0], x[1], w[0], x[2], out[2], w[2], stride)


def _parse_mean(shapes, blocks, script) -> Workload | None:
    x, out = (_unblock(s) for s in (shapes[0], shapes[-1]))
    if len(shapes) != 2 or len(x) != 4 or out != (x[0], x[1], 1, 1) or x[2] != x[3]:
        return None
    return Workload("mean", "none", x[0], x[1], x[1], x[2], 1)


def _parse_reshape(shapes, blocks, script) -> Workload | None:
    x, out = shapes[0], shapes[-1]
    if len(shapes) != 2 or len(x) != 4 or x[2:] != (1, 1) or out != x[:2] or blocks != ["reshape"]:
        return None
    return Workload("reshape", "none", x[0], x[1], x[1], 1, 1)


def _parse_matmul(shapes, blocks, script) -> Workload | None:
    x, w, out = shapes[0], shapes[1], shapes[-1]
    if blocks != ["matmul", "add"] or len(x) != 2 or len(w) != 2 or x[1] != w[0] or out != (x[0], w[1]):
        return None
    return Workload("matmul", "bias", x[0], x[1], w[1], 1, 1)


# main TIR block -> parser of the task around it
_PARSERS = {
    "conv2d_nchw": _parse_conv,
    "group_conv2d_nchw": _parse_conv,
    "conv2d_nchwc": _parse_conv,
    "depthwise_conv2d_nchwc": _parse_conv,
    "mean": _parse_mean,
    "reshape": _parse_reshape,
    "matmul": _parse_matmul,
}


def workload_from_mod(mod: Any) -> Workload | None:
    """:func:`workload_from_script` of an IRModule's (or PrimFunc's) ``main``."""
    func = mod["main"] if hasattr(mod, "functions") else mod
    return workload_from_script(func.script())


def tvm_task_multiset(tasks: Sequence[Any]) -> Counter:
    """``{workload key: weight}`` of MetaSchedule's ``extract_tasks`` output (a foreign task is
    keyed ``foreign:<task_name>``)."""
    out: Counter = Counter()
    for t in tasks:
        wl = workload_from_mod(t.dispatched[0])
        out[wl.key if wl else f"foreign:{t.task_name}"] += int(t.weight)
    return out


# -- vectorized: many archs -> workload ids ---------------------------------------------------
class WorkloadTable:
    """Every workload a search space can produce, and a gather table from arch genes to them.

    Parameters
    ----------
    space : SearchSpace
    net : NetConfig, optional

    Attributes
    ----------
    workloads : list of Workload
        Unique workloads; ids index this list.
    index : dict
        Workload key -> id.
    """

    _MAX_BLOCK_OPS = 6  # expand, depthwise, SE mean/reduce/expand, project

    def __init__(self, space: SearchSpace, net: NetConfig | None = None):
        self.space, self.net = space, net or NetConfig()
        self.workloads: list[Workload] = []
        self.index: dict[str, int] = {}
        res, ks, es = space.resolutions, space.ks_choices, space.e_choices
        nb = space.n_blocks
        self.block_ids = np.full((len(res), nb, len(es), len(ks), self._MAX_BLOCK_OPS), -1, np.int32)
        fixed = []
        for r_i, r in enumerate(res):
            slots = self.net.slots(r, space.max_depth)
            fixed_ops = [_stem(self.net, r), *_block(self.net.batch, self.net.first_block(r)),
                         *_tail(self.net, slots[-1].size_out)]
            fixed.append([self._id(w) for w in fixed_ops])
            for slot_i, slot in enumerate(slots):
                for e_i, e in enumerate(es):
                    for k_i, k in enumerate(ks):
                        ops = _block(self.net.batch, slot_block(slot, e, k, self.net.se_reduction))
                        self.block_ids[r_i, slot_i, e_i, k_i, :len(ops)] = [self._id(w) for w in ops]
        self.fixed_ids = np.asarray(fixed, dtype=np.int32)
        # value -> choice index lookups (-1 outside the space)
        self._res_lut = self._lut(res)
        self._k_lut, self._e_lut, self._d_lut = self._lut(ks), self._lut(es), self._lut(space.d_choices)

    def _id(self, w: Workload) -> int:
        key = w.key
        if key not in self.index:
            self.index[key] = len(self.workloads)
            self.workloads.append(w)
        return self.index[key]

    @staticmethod
    def _lut(values: Sequence[int]) -> np.ndarray:
        lut = np.full(max(values) + 2, -1, np.int32)
        lut[list(values)] = np.arange(len(values))
        return lut

    def __len__(self) -> int:
        return len(self.workloads)

    def features(self) -> np.ndarray:
        return feature_matrix(self.workloads)

    @staticmethod
    def arrays(archs: Sequence[ArchConfig]) -> tuple[np.ndarray, ...]:
        """``(ks, e, d, resolution)`` integer arrays of a list of archs."""
        ks = np.array([a.ks for a in archs], dtype=np.int32)
        e = np.array([a.e for a in archs], dtype=np.int32)
        d = np.array([a.d for a in archs], dtype=np.int32)
        r = np.array([a.resolution for a in archs], dtype=np.int32)
        return ks, e, d, r

    def _lookup(self, lut: np.ndarray, values: np.ndarray) -> np.ndarray:
        inside = (values >= 0) & (values < len(lut))
        return np.where(inside, lut[np.clip(values, 0, len(lut) - 1)], -1)

    def ids(self, archs: Sequence[ArchConfig] | None = None, *, arrays: tuple | None = None) -> np.ndarray:
        """Workload ids of each arch, ``-1`` for absent ops: shape ``(n, n_fixed + 6 * n_blocks)``.

        Raises
        ------
        ArchError
            For the first arch outside the space (naming the field).
        """
        sp = self.space
        if arrays is None:
            try:
                arrays = self.arrays(archs or [])
            except ValueError:  # ragged: some arch has another number of slots or stages
                for a in archs or []:
                    sp.validate(a)
                raise
        ks, e, d, r = arrays
        if ks.ndim != 2 or ks.shape[1] != sp.n_blocks or e.shape != ks.shape or d.shape[1:] != (sp.n_stages,):
            self._raise_first_invalid(archs, ks, e, d, r)
        r_i, d_i = self._lookup(self._res_lut, r), self._lookup(self._d_lut, d)
        k_i, e_i = self._lookup(self._k_lut, ks), self._lookup(self._e_lut, e)
        active = sp.active_mask(d)
        bad = (r_i < 0) | (d_i < 0).any(1) | (active & ((k_i < 0) | (e_i < 0))).any(1)
        if bad.any():
            self._raise_first_invalid(archs, ks, e, d, r, int(np.flatnonzero(bad)[0]))
        slots = np.arange(sp.n_blocks)[None, :]
        blk = self.block_ids[r_i[:, None], slots, np.maximum(e_i, 0), np.maximum(k_i, 0)]
        blk[~active] = -1
        return np.concatenate([self.fixed_ids[r_i], blk.reshape(len(r), -1)], axis=1)

    def _raise_first_invalid(self, archs, ks, e, d, r, i: int = 0) -> None:
        arch = archs[i] if archs else ArchConfig(ks[i].tolist(), e[i].tolist(), d[i].tolist(), int(r[i]))
        self.space.validate(arch)
        raise ArchError(f"arch {i}: outside the space")  # validate names the field first

    def counts(self, arch: ArchConfig) -> Counter:
        """``{workload key: weight}`` of one arch through the table (equals :func:`task_multiset`)."""
        ids = self.ids([arch])[0]
        return Counter(self.workloads[i].key for i in ids[ids >= 0])
