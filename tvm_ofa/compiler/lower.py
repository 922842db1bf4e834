"""Static torch module -> fused Relax module with the weights bound as constants.

Batch norm is folded into the preceding convolution in torch (exact in eval mode) before export:
it removes one tuning task per conv and the folded weights are what the artifact checksums.
"""
from __future__ import annotations

import copy
import warnings
import hashlib
from dataclasses import dataclass
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
    prepack : bool
        Lowered with the weights marked layout-free (their tuning records are other workloads).
    deinterleave : bool
        Lowered with stride-2 depthwise convolutions reading a column-deinterleaved input (the
        same caveat).
    split_rows : bool
        Lowered with every fused function marked for row-split parallel loops
        (:mod:`tvm_ofa.compiler.parallel`; the same caveat).
    """

    mod: Any
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_dtype: str
    weights_sha256: str
    prepack: bool = False
    deinterleave: bool = False
    split_rows: bool = False

    @property
    def lowering(self) -> dict[str, bool]:
        """The options it was lowered with (``TargetConfig.lowering`` names a target's)."""
        return {"prepack": self.prepack, "deinterleave": self.deinterleave,
                "split_rows": self.split_rows}


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


def dwconv_s2_deinterleaved(x: Any, w: Any, pad: tuple[int, int]) -> Any:
    """TE compute of a stride-2 depthwise convolution (NCHW, OIHW weights ``(C, 1, kh, kw)``)
    that reads its zero-padded input through a copy split into even and odd columns.

    In the plain form, neighbouring outputs read every other input column, and the LLVM backend
    turns those stride-2 vector loads into one scalar load per lane: such layers ran at 27-48
    GFLOP/s here, against 80-150 for the stride-1 ones. Here output column ``xx`` and tap ``rx``
    read ``q[..., rx % 2, xx + rx // 2]``, contiguous in ``xx``. The copy carries the padding's
    ``if_then_else``, so MetaSchedule does not inline it back into the convolution. Block names
    follow TOPI's (``group_conv2d_nchw``, iterators ``yy``/``xx``), which the workload parser
    (``tvm_ofa.predict.workloads``) reads. Tuned, it was not faster yet (docs/COMPILER.md), so no
    shipped target uses it.
    """
    from tvm import te, tirx

    n, c, h, wd = (int(v) for v in x.shape)
    kh, kw = int(w.shape[2]), int(w.shape[3])
    ph, pw = pad
    hp, wq = h + 2 * ph, (wd + 2 * pw + 1) // 2
    ho, wo = (h + 2 * ph - kh) // 2 + 1, (wd + 2 * pw - kw) // 2 + 1

    def copy(nn, cc, yy, phase, col):
        src = 2 * col + phase - pw
        inside = tirx.all(yy >= ph, yy < h + ph, src >= 0, src < wd)
        return tirx.if_then_else(inside, x[nn, cc, yy - ph, src], tirx.const(0.0, x.dtype))

    q = te.compute((n, c, hp, 2, wq), copy, name="pad_deinterleave")
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    return te.compute(
        (n, c, ho, wo),
        lambda nn, ff, yy, xx: te.sum(
            q[nn, ff, yy * 2 + ry, tirx.floormod(rx, 2), xx + tirx.floordiv(rx, 2)] * w[ff, 0, ry, rx],
            axis=[ry, rx]),
        name="group_conv2d_nchw")


def _static_ints(shape: Any) -> tuple[int, ...] | None:
    try:
        return tuple(int(v) for v in shape)
    except TypeError:  # a symbolic dimension
        return None


def _legalize_conv2d(bb: Any, call: Any) -> Any:
    """``relax.nn.conv2d`` as TOPI legalizes it, except stride-2 depthwise ones
    (:func:`dwconv_s2_deinterleaved`)."""
    import tvm

    a = call.attrs
    xs = _static_ints(call.args[0].ty.shape)
    ws = _static_ints(call.args[1].ty.shape)
    pad = [int(p) for p in a.padding]
    if (xs is not None and ws is not None and str(a.data_layout) == "NCHW"
            and str(a.kernel_layout) == "OIHW" and str(a.out_layout) == "NCHW"
            and int(a.groups) == xs[1] == ws[0] and ws[1] == 1
            and [int(v) for v in a.strides] == [2, 2] and [int(v) for v in a.dilation] == [1, 1]
            and len(pad) == 4 and pad[0] == pad[2] and pad[1] == pad[3]
            and (a.out_dtype == "" or str(a.out_dtype) == "float32")):
        return bb.call_te(dwconv_s2_deinterleaved, call.args[0], call.args[1], pad=(pad[0], pad[1]),
                          primfunc_name_hint="conv2d")
    return tvm.ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")(bb, call)


def _passes(deinterleave: bool) -> list:
    from tvm import relax

    custom = {"relax.nn.conv2d": _legalize_conv2d} if deinterleave else None
    return [relax.transform.LegalizeOps(customize_legalize_map=custom) if name == "LegalizeOps"
            else getattr(relax.transform, name)() for name in _PIPELINE]


def lower_module(module: "torch.nn.Module", input_shape: Sequence[int],  # noqa: F821
                 fold_bn: bool = True, prepack: bool = False, deinterleave: bool = False,
                 split_rows: bool = False) -> LoweredModel:
    """Lower a static, eval-mode torch module to a fused Relax module (NCHW, float32).

    Parameters
    ----------
    module : torch.nn.Module
        A static subnet (e.g. ``OFAMobileNetV3.extract(arch)``).
    input_shape : sequence of int
        ``(batch, 3, H, W)``.
    fold_bn : bool
        Fold BatchNorm2d into the preceding Conv2d first.
    prepack : bool
        Mark the weights of every fused function layout-free, so that a tuned schedule may store
        them in the tiled layout it reads (MetaSchedule's ``RewriteLayout``; :func:`build` packs
        them once, at compile time). The functions then differ from unmarked ones, and so do
        their tuning records (a target's ``prepack`` option).
    deinterleave : bool
        Lower stride-2 depthwise convolutions with :func:`dwconv_s2_deinterleaved` (a target's
        ``deinterleave`` option; again other workloads).
    split_rows : bool
        Mark every fused function so that its parallel loops split rows across threads
        (:mod:`tvm_ofa.compiler.parallel`; a target's ``split_rows`` option; other workloads).
        ``TargetConfig.lowering`` gives these options of a target.

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
    seq = tvm.transform.Sequential(_passes(deinterleave))
    with tvm.transform.PassContext(opt_level=3):
        mod = seq(mod)
        if prepack:
            mod = relax.transform.AttachAttrLayoutFreeBuffers()(mod)
    if split_rows:
        from tvm_ofa.compiler.parallel import ATTR

        for gv, func in list(mod.functions_items()):
            if isinstance(func, tvm.tirx.PrimFunc):
                mod[gv] = func.with_attr(ATTR, True)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return LoweredModel(mod=mod, input_shape=tuple(int(s) for s in input_shape),
                        output_shape=tuple(int(s) for s in out.shape), input_dtype="float32",
                        weights_sha256=digest.hexdigest(), prepack=prepack,
                        deinterleave=deinterleave, split_rows=split_rows)
