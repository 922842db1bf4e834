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
    """

    mod: Any
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_dtype: str
    weights_sha256: str
    prepack: bool = False


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


def lower_module(module: "torch.nn.Module", input_shape: Sequence[int],  # noqa: F821
                 fold_bn: bool = True, prepack: bool = False) -> LoweredModel:
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
    seq = tvm.transform.Sequential([getattr(relax.transform, name)() for name in _PIPELINE])
    with tvm.transform.PassContext(opt_level=3):
        mod = seq(mod)
        if prepack:
            mod = relax.transform.AttachAttrLayoutFreeBuffers()(mod)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return LoweredModel(mod=mod, input_shape=tuple(int(s) for s in input_shape),
                        output_shape=tuple(int(s) for s in out.shape), input_dtype="float32",
                        weights_sha256=digest.hexdigest(), prepack=prepack)
