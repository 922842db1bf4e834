"""Static torch module -> fused Relax module with the weights bound as constants.

Batch norm is folded into the preceding convolution in torch (exact in eval mode) before export:
it removes one tuning task per conv and the folded weights are what the artifact checksums.
"""
from __future__ import annotations

import copy
import hashlib
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from tvm_ofa.errors import TvmOfaError


class LoweringError(TvmOfaError):
    """A module that torch.export or TVM's frontend cannot take."""


@dataclass
class LoweredModel:
    """A Relax module ready for tuning and building.

    Attributes
    ----------
    mod : tvm.IRModule
        Fused module; ``main`` takes one input and the weights are bound constants.
    input_shape, output_shape : tuple of int
    input_dtype : str
    weights_sha256 : str
        Checksum of the (BN-folded) weights in export order.
    lowering : Lowering
        The options it was lowered with.
    """

    mod: Any
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_dtype: str
    weights_sha256: str
    lowering: "Lowering" = field(default_factory=lambda: Lowering())


def fold_batchnorm(module: "torch.nn.Module") -> "torch.nn.Module":  # noqa: F821
    """A copy of ``module`` with every Conv2d directly followed by a BatchNorm2d (in registration
    order inside one parent) fused, the BN replaced by Identity."""
    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    module = copy.deepcopy(module).eval()
    for parent in module.modules():
        names = list(parent._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = parent._modules[a], parent._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) \
                    and bn.track_running_stats and conv.out_channels == bn.num_features:
                with torch.no_grad():
                    parent._modules[a] = fuse_conv_bn_eval(conv, bn)
                parent._modules[b] = nn.Identity()
    return module


# the pass pipeline, in order; FuseOps puts BN/act/residual into each conv's epilogue
_PIPELINE = ("DecomposeOpsForInference", "LegalizeOps", "AnnotateTIROpPattern", "FoldConstant",
             "FuseOps", "FuseTIR")


def _static_ints(shape: Any) -> tuple[int, ...] | None:
    try:
        return tuple(int(v) for v in shape)
    except TypeError:  # a symbolic dimension
        return None


# channels per block of the ``nchwc`` layout: every width of the OFA space (16, 24, 40, 80, 112,
# 160, their expansions and SE widths) is a multiple of 8 (16 would not divide 24 or 40), and
# 8 fp32 lanes fill one 256-bit (AVX2) vector
BLOCK = 8
# the widest blocks a target may ask for (``nchwc: 16``): 16 fp32 lanes fill an AVX-512 register,
# and a blocked 1x1 convolution's FMAs are as wide as its output block
NCHWC_BLOCKS = (8, 16)
# LLVM's names of the CPUs whose 512-bit FMAs do twice the work of 256-bit ones (Intel Xeon from
# Skylake-SP on, Rocket Lake, and Zen 5; `bench/fma_width.c` measures it): only there do blocks
# of 16 pay (on znver5 they ran 6 subnets at 0.77-0.99x ONNX Runtime's time where the unblocked
# prepacked lowering took 0.82-1.24x, docs/BENCHMARKS.md). Zen 4 runs AVX-512 on 256-bit units.
FULL_WIDTH_AVX512 = frozenset({"skylake-avx512", "cascadelake", "cooperlake", "icelake-server", "rocketlake",
                               "sapphirerapids", "emeraldrapids", "graniterapids", "graniterapids-d",
                               "diamondrapids", "znver5"})


def nchwc_block(option: bool | int) -> int:
    """The widest channel block of a target's ``nchwc`` option: ``True`` is 8, ``False`` 0."""
    if isinstance(option, bool):
        return BLOCK if option else 0
    if option == 0 or option in NCHWC_BLOCKS:
        return int(option)
    raise ValueError(f"nchwc: expected true, false or one of {', '.join(map(str, NCHWC_BLOCKS))}, "
                     f"got {option!r}")


@dataclass(frozen=True)
class Lowering:
    """The options of :func:`lower_module` that change its workloads, and so its tuning records:
    records fit only a lowering with the same options. A target's ``prepack`` and ``nchwc`` keys
    (``TargetConfig.lowering``); an artifact's metadata records them.

    Attributes
    ----------
    prepack : bool
        Weights marked layout-free, so that a tuned schedule may store them in the tiled layout it
        reads (MetaSchedule's ``RewriteLayout``; :func:`build` packs them once, at compile time).
    nchwc : int
        0 (NCHW), or the widest channel block of the blocked layout the convolutions, and the
        elementwise ops and SE blocks between them, are lowered in (:func:`nchwc_passes`): 8 for
        ``NCHW8c``, 16 for ``NCHW16c`` where a tensor's channels allow it and ``NCHW8c`` elsewhere.
        ``True`` is read as 8. The input and output stay NCHW.
    """

    prepack: bool = False
    nchwc: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "nchwc", nchwc_block(self.nchwc))

    def to_dict(self) -> dict[str, bool | int]:
        return {"prepack": self.prepack, "nchwc": self.nchwc}

    def suits(self, cpu: str | None) -> bool:
        """Whether this lowering can pay off on ``cpu`` (LLVM's name): blocks of 16 channels need
        full-width 512-bit FMAs (:data:`FULL_WIDTH_AVX512`), the other options suit any CPU."""
        return self.nchwc != 16 or cpu in FULL_WIDTH_AVX512


def channel_block(channels: int, widest: int) -> int | None:
    """Channels per block of a ``channels``-wide tensor under blocks up to ``widest``: the widest
    that divides it, or None (such a tensor, e.g. the RGB input, stays NCHW)."""
    return next((b for b in sorted(NCHWC_BLOCKS, reverse=True)
                 if b <= widest and channels % b == 0), None)


def _pad_nchwc(x: Any, kh: int, kw: int, stride: tuple[int, int], pad: tuple[int, int, int, int]
               ) -> tuple[Any, int, int]:
    """``(x zero-padded in H and W, output height, output width)`` of a blocked convolution."""
    from tvm import topi

    _, _, h, wd, _ = (int(v) for v in x.shape)
    (sh, sw), (pt, pl, pb, pr) = stride, pad
    if pt or pl or pb or pr:
        x = topi.nn.pad(x, (0, 0, pt, pl, 0), (0, 0, pb, pr, 0), name="pad_temp")
    return x, (h + pt + pb - kh) // sh + 1, (wd + pl + pr - kw) // sw + 1


def conv2d_nchwc(x: Any, w: Any, stride: tuple[int, int], pad: tuple[int, int, int, int]) -> Any:
    """TE compute of a dense convolution in ``NCHW8c`` with ``OIHW8o`` weights
    ``(O/8, I, kh, kw, 8)``: each output pixel's 8 channels of a block are one vector, and the
    reduction reads 8 channels of input from one cache line (NCHW reads one per channel plane).
    Input and output blocks are read from the shapes, and may differ (``NCHW8c`` in, ``NCHW16c``
    out).
    The block is named ``conv2d_nchwc``, its iterators ``yy``/``xx`` as TOPI's, which the
    workload parser (``tvm_ofa.predict.workloads``) reads."""
    from tvm import te

    n, cb = int(x.shape[0]), int(x.shape[4])
    oc, ic, kh, kw, ob = (int(v) for v in w.shape)
    sh, sw = stride
    x, ho, wo = _pad_nchwc(x, kh, kw, stride, pad)
    rc = te.reduce_axis((0, ic), "rc")
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    return te.compute(
        (n, oc, ho, wo, ob),
        lambda nn, ff, yy, xx, fb: te.sum(
            x[nn, rc // cb, yy * sh + ry, xx * sw + rx, rc % cb] * w[ff, rc, ry, rx, fb],
            axis=[rc, ry, rx]),
        name="conv2d_nchwc")


def dwconv2d_nchwc(x: Any, w: Any, stride: tuple[int, int], pad: tuple[int, int, int, int]) -> Any:
    """TE compute of a depthwise convolution in ``NCHW8c`` with weights ``(C/8, 1, kh, kw, 8)``
    (block ``depthwise_conv2d_nchwc``). TOPI's ``conv2d_NCHWc_OIHWo`` indexes grouped inputs
    wrongly when there is one channel per group."""
    from tvm import te

    n, cc, _, _, cb = (int(v) for v in x.shape)
    kh, kw = int(w.shape[2]), int(w.shape[3])
    sh, sw = stride
    x, ho, wo = _pad_nchwc(x, kh, kw, stride, pad)
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    return te.compute(
        (n, cc, ho, wo, cb),
        lambda nn, ff, yy, xx, fb: te.sum(
            x[nn, ff, yy * sh + ry, xx * sw + rx, fb] * w[ff, 0, ry, rx, fb], axis=[ry, rx]),
        name="depthwise_conv2d_nchwc")


def _blocks(a: Any) -> tuple[int, int] | None:
    """``(input block, output block)`` of a conv2d's attributes in the blocked layouts that
    :func:`conv2d_nchwc` computes (``NCHW<i>c``, ``OIHW<o>o``, ``NCHW<o>c``), else None."""
    m = [re.fullmatch(pat, str(v)) for pat, v in (
        (r"NCHW(\d+)c", a.data_layout), (r"OIHW(\d+)o", a.kernel_layout), (r"NCHW(\d+)c", a.out_layout))]
    if not all(m) or m[1].group(1) != m[2].group(1):
        return None
    return int(m[0].group(1)), int(m[2].group(1))


def _legalize_conv2d(bb: Any, call: Any) -> Any:
    """``relax.nn.conv2d`` as TOPI legalizes it, except blocked ones (:func:`conv2d_nchwc`,
    :func:`dwconv2d_nchwc`; TOPI's legalizer leaves blocked layouts unlowered)."""
    import tvm

    a = call.attrs
    xs = _static_ints(call.args[0].ty.shape)
    ws = _static_ints(call.args[1].ty.shape)
    pad = [int(p) for p in a.padding]
    dilated = [int(v) for v in a.dilation] != [1, 1]
    blocks = _blocks(a)
    if blocks is not None and xs is not None and ws is not None and not dilated and len(pad) == 4:
        stride = tuple(int(v) for v in a.strides)
        groups = int(a.groups)
        if groups == 1:
            return bb.call_te(conv2d_nchwc, call.args[0], call.args[1], stride=stride,
                              pad=tuple(pad), primfunc_name_hint="conv2d")
        if groups == xs[1] * xs[4] and ws[1] == 1 and blocks[0] == blocks[1]:
            return bb.call_te(dwconv2d_nchwc, call.args[0], call.args[1], stride=stride,
                              pad=tuple(pad), primfunc_name_hint="conv2d")
    return tvm.ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")(bb, call)


def _clip_to_min_max() -> Any:
    """A pass rewriting ``relax.clip`` as ``maximum``/``minimum`` with constants: ConvertLayout
    has no layout rule for clip and would put every hard-swish back into NCHW and out again."""
    import tvm
    from tvm import relax
    from tvm.relax.expr_functor import PyExprMutator, mutator

    clip = tvm.ir.Op.get("relax.clip")

    @mutator
    class _Rewrite(PyExprMutator):
        def visit_call_(self, call):  # noqa: ANN001, ANN202 (TVM's visitor signature)
            call = super().visit_call_(call)
            if not call.op.same_as(clip):
                return call
            x, lo, hi = call.args
            lo, hi, dtype = float(lo.value), float(hi.value), call.ty.dtype
            if lo != float("-inf"):
                x = relax.op.maximum(x, relax.const(lo, dtype))
            if hi != float("inf"):
                x = relax.op.minimum(x, relax.const(hi, dtype))
            return x

    @tvm.transform.module_pass(opt_level=0, name="tvm_ofa.ClipToMinMax")
    def rewrite(mod: Any, _ctx: Any) -> Any:
        m = _Rewrite(mod)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                m.builder_.update_func(gv, m.visit_expr(func))
        return m.builder_.get()

    return rewrite


def _block_layouts(widest: int) -> Any:
    """ConvertLayout's per-call callback for blocks up to ``widest``: every tensor gets the block
    :func:`channel_block` gives its channel count, so a convolution may read ``NCHW8c`` and write
    ``NCHW16c`` (24 -> 144) or the reverse, and the ops between convolutions see one layout per
    tensor. A convolution with a tensor no block divides (the RGB stem, a 4-channel SE) is asked
    for ``NCHW<widest>c`` as a whole, which ConvertLayout refuses for such shapes: it stays NCHW.
    (Returning no layout for it would make ConvertLayout fail on a blocked input.)"""
    import tvm

    conv2d = tvm.ir.Op.get("relax.nn.conv2d")
    whole = {"relax.nn.conv2d": [f"NCHW{widest}c", f"OIHW{widest}o"]}

    def layouts(call: Any) -> dict:
        if not call.op.same_as(conv2d):
            return {}
        xs, ws = _static_ints(call.args[0].ty.shape), _static_ints(call.args[1].ty.shape)
        if xs is None or ws is None or len(xs) != 4 or len(ws) != 4:
            return whole
        bi, bo = channel_block(xs[1], widest), channel_block(ws[0], widest)
        if bi is None or bo is None:
            return whole
        return {"relax.nn.conv2d": [f"NCHW{bi}c", f"OIHW{bo}o", f"NCHW{bo}c"]}

    return layouts


def nchwc_passes(widest: int = BLOCK) -> list:
    """The passes that put convolutions into blocked layouts, ahead of the pipeline: clip
    rewritten (:func:`_clip_to_min_max`), ConvertLayout (elementwise ops, SE means and residual
    adds follow the blocked layout; a convolution whose channels are not multiples of 8, such as
    the stem's RGB input, stays NCHW), then one layout transform per tensor
    (EliminateCommonSubexpr: the stem's output feeds a convolution and a residual add).

    ``widest`` 8 puts every convolution into ``NCHW8c``; 16 gives each tensor 16 channels per
    block where its channel count allows, else 8 (:func:`_block_layouts`)."""
    from tvm import relax

    return [_clip_to_min_max(),
            relax.transform.ConvertLayout({}, layout_cb=_block_layouts(widest)),
            relax.transform.EliminateCommonSubexpr()]


def _passes(nchwc: int = 0) -> list:
    from tvm import relax

    custom = {"relax.nn.conv2d": _legalize_conv2d} if nchwc else None
    passes = [relax.transform.LegalizeOps(customize_legalize_map=custom) if name == "LegalizeOps"
              else getattr(relax.transform, name)() for name in _PIPELINE]
    return (nchwc_passes(nchwc) if nchwc else []) + passes


def lower_module(module: "torch.nn.Module", input_shape: Sequence[int],  # noqa: F821
                 fold_bn: bool = True, lowering: Lowering = Lowering()) -> LoweredModel:
    """Lower a static, eval-mode torch module to a fused Relax module (NCHW, float32).

    Parameters
    ----------
    module : torch.nn.Module
        A static subnet (e.g. ``OFAMobileNetV3.extract(arch)``).
    input_shape : sequence of int
        ``(batch, 3, H, W)``.
    fold_bn : bool
        Fold BatchNorm2d into the preceding Conv2d first.
    lowering : Lowering
        Weight prepacking and blocked layouts (a target's ``TargetConfig.lowering``).

    Returns
    -------
    LoweredModel
    """
    import torch
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    module = fold_batchnorm(module) if fold_bn else copy.deepcopy(module).eval()
    x = torch.zeros(tuple(input_shape), dtype=torch.float32)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # torch 2.13 deprecation noise from its own pytree code, not ours to fix
            warnings.simplefilter("ignore", FutureWarning)
            out = module(x)
            ep = torch.export.export(module, (x,))
            mod = from_exported_program(ep, keep_params_as_input=True, unwrap_unit_return_tuple=True)
    except Exception as exc:
        raise LoweringError(f"cannot lower {type(module).__name__}: "
                            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") from None
    mod, params = relax.frontend.detach_params(mod)
    weights = params.get("main", [])
    digest = hashlib.sha256()
    for w in weights:
        digest.update(np.ascontiguousarray(w.numpy()).tobytes())
    # bind as constants: the artifact links its weights in (one file, one checksum)
    mod = relax.transform.BindParams("main", {p: w for p, w in
                                              zip(mod["main"].params[1:], weights)})(mod)
    seq = tvm.transform.Sequential(_passes(lowering.nchwc))
    with tvm.transform.PassContext(opt_level=3):
        mod = seq(mod)
        if lowering.prepack:
            mod = relax.transform.AttachAttrLayoutFreeBuffers()(mod)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return LoweredModel(mod=mod, input_shape=tuple(int(s) for s in input_shape),
                        output_shape=tuple(int(s) for s in out.shape), input_dtype="float32",
                        weights_sha256=digest.hexdigest(), lowering=lowering)
