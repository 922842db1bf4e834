"""Supernet checkpoints: the project's own format and the official once-for-all one.

The project's format is a dict ``{"format": "tvm-ofa-supernet", "version": 1, "config": {...},
"state_dict": {...}, "meta": {...}}``: the config (classes, width, stem stride, search space)
travels with the weights, so loading needs no flags. An official once-for-all checkpoint
(``ofa_mbv3_d234_e346_k357_w1.0`` / ``w1.2``: a dict holding ``state_dict`` or a bare state dict)
carries no config: width, classes and kernel choices are inferred from the tensor shapes.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from tvm_ofa.arch import SearchSpace
from tvm_ofa.errors import CheckpointError
from tvm_ofa.nn.ofa_mbv3 import BASE_WIDTHS, OFAMobileNetV3
from tvm_ofa.nn.elastic import make_divisible

FORMAT = "tvm-ofa-supernet"
VERSION = 1
# widths once-for-all and common MobileNetV3 variants use; inference checks every tensor shape
_CANDIDATE_WIDTHS = (1.0, 1.2, 0.35, 0.5, 0.75, 1.25, 1.5, 2.0)


def save_supernet(net: OFAMobileNetV3, path: str | Path, meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``net`` in the project's format, atomically (a crash never leaves a torn file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, "config": net.config(),
               "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
               "meta": dict(meta or {})}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` with one-line errors for missing, truncated or foreign files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {reason[:200]}"
        ) from None


def load_supernet(path: str | Path) -> OFAMobileNetV3:
    """Load a supernet from the project's format or an official once-for-all checkpoint.

    Parameters
    ----------
    path : str or Path
        The checkpoint file. Nothing is downloaded.

    Returns
    -------
    OFAMobileNetV3
        In eval mode, with every tensor checked against the network's shapes.
    """
    data = read_checkpoint(path)
    if isinstance(data, dict) and data.get("format") == FORMAT:
        if data.get("version") != VERSION:
            raise CheckpointError(f"{path}: checkpoint format version {data.get('version')}, "
                                  f"this tvm-ofa reads version {VERSION}")
        try:
            net = OFAMobileNetV3.from_config(data["config"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: invalid supernet config: {err}") from None
        state = data.get("state_dict")
    else:
        state = _official_state_dict(data, path)
        net = OFAMobileNetV3(**infer_official_config(state, path))
    load_state_strict(net, state, path)
    return net.eval()


def _official_state_dict(data: Any, path: str | Path) -> dict[str, torch.Tensor]:
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: neither a tvm-ofa checkpoint nor a once-for-all state dict")
    # checkpoints saved from DataParallel/DDP prefix every key with "module."
    return {k[7:] if k.startswith("module.") else k: v for k, v in data.items()}


def infer_official_config(state: Mapping[str, torch.Tensor], path: str | Path = "checkpoint") -> dict[str, Any]:
    """Width, classes, depth and kernel choices of a once-for-all MobileNetV3 state dict."""
    try:
        n_classes, feature_mix = state["classifier.linear.weight"].shape
        stem = state["first_conv.conv.weight"].shape[0]
        max_kernel = state["blocks.1.conv.depth_conv.conv.conv.weight"].shape[-1]
    except KeyError as err:
        raise CheckpointError(f"{path}: not an OFA MobileNetV3 state dict (missing {err.args[0]})") from None
    width = next((w for w in _CANDIDATE_WIDTHS
                  if make_divisible(BASE_WIDTHS[0] * w) == stem
                  and make_divisible(BASE_WIDTHS[-1] * w) == feature_mix), None)
    if width is None:
        raise CheckpointError(f"{path}: stem width {stem} / feature width {feature_mix} match no known "
                              f"width multiplier ({', '.join(map(str, _CANDIDATE_WIDTHS))})")
    n_elastic = len({k.split(".")[1] for k in state if k.startswith("blocks.")}) - 1
    if n_elastic % 5:
        raise CheckpointError(f"{path}: {n_elastic} elastic blocks do not split into 5 stages")
    kernels = [max_kernel]
    while f"blocks.1.conv.depth_conv.conv.{kernels[-1]}to{kernels[-1] - 2}_matrix" in state:
        kernels.append(kernels[-1] - 2)
    max_depth = n_elastic // 5
    mid = state["blocks.1.conv.point_linear.conv.conv.weight"].shape[1]
    cin = state["blocks.0.conv.point_linear.conv.weight"].shape[0]
    max_expand = next((e for e in (6, 4, 3, 8, 2, 1) if make_divisible(round(cin * e)) == mid), 6)
    default = SearchSpace()
    expands = tuple(e for e in default.e_choices if e <= max_expand) or (max_expand,)
    space = SearchSpace(ks_choices=tuple(sorted(kernels)), e_choices=expands,
                        d_choices=tuple(range(min(2, max_depth), max_depth + 1)),
                        resolutions=default.resolutions)
    return {"n_classes": int(n_classes), "width_mult": width, "space": space, "dropout_rate": 0.0}


def load_state_strict(net: torch.nn.Module, state: Any, path: str | Path = "checkpoint") -> None:
    """Load every tensor or fail listing the first few missing, unexpected and mis-shaped keys."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: state_dict is missing or not a mapping")
    expected = net.state_dict()
    # batch counters are bookkeeping that some exporters drop
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
    if problems:
        raise CheckpointError(f"{path}: checkpoint does not fit the supernet: {'; '.join(problems)}")
    net.load_state_dict({k: state[k] for k in expected if k in state}, strict=False)
