"""tvm-ofa: Once-for-All elastic supernets specialized per hardware target with Apache TVM.

Public names are imported lazily so that ``import tvm_ofa`` (and ``tvm-ofa --help``) stays fast:
torch and tvm are only loaded when something that needs them is touched.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "ArchConfig": "tvm_ofa.arch",
    "SearchSpace": "tvm_ofa.arch",
    "OFAMobileNetV3": "tvm_ofa.nn.ofa_mbv3",
    "load_supernet": "tvm_ofa.nn.checkpoint",
    "save_supernet": "tvm_ofa.nn.checkpoint",
    "load_artifact": "tvm_ofa.compiler.artifact",
    "TvmOfaError": "tvm_ofa.errors",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tvm_ofa' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
