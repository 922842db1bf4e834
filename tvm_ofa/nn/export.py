"""A static subnet written for other runtimes: ONNX (ONNX Runtime, OpenVINO, TensorRT)."""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from tvm_ofa.errors import TvmOfaError


class ExportError(TvmOfaError):
    """A subnet that could not be exported."""


def export_onnx(module: Any, input_shape: tuple[int, ...], path: str | os.PathLike) -> Path:
    """Write ``module`` (a static, eval-mode subnet) as an ONNX model with one input ``x`` of
    ``input_shape`` (float32 NCHW) and one output ``y``, the logits.

    Needs the ``onnx`` and ``onnxscript`` packages (``pip install tvm-ofa[bench]``)."""
    import torch

    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ExportError(f"ONNX export needs the onnx and onnxscript packages ({err.name} is missing): "
                          "pip install 'tvm-ofa[bench]'") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = torch.zeros(tuple(input_shape), dtype=torch.float32)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and progress noise
        torch.onnx.export(module.eval(), (x,), str(path), input_names=["x"], output_names=["y"], verbose=False)
    return path
