"""Registering only the tensor intrinsics a target can use.

``import tvm.s_tir.tensor_intrin`` registers the CUDA, ROCm, Hexagon, Arm, RISC-V and x86
intrinsics at once and takes ~48 s on the project's machines; MetaSchedule's ``TuneContext``
imports it for every tune. :func:`register_light` pre-seeds that package with only the submodules
the target's architecture needs, so the later blanket import is a no-op.
"""
from __future__ import annotations

import importlib
import sys
import types

# target family -> intrinsic submodules it can tensorize with
_FAMILIES: dict[str, tuple[str, ...]] = {
    "x86": ("dot_product_common", "x86"),
    "aarch64": ("dot_product_common", "arm_cpu"),
    "cuda": ("cuda",),
}


def family(target: dict) -> str:
    """``x86``, ``aarch64`` or ``cuda`` for a resolved target dict."""
    if target.get("kind") == "cuda":
        return "cuda"
    triple = str(target.get("mtriple", ""))
    return "aarch64" if triple.startswith(("aarch64", "arm64")) else "x86"


def register_light(fam: str = "x86") -> None:
    """Import only the intrinsic modules of ``fam``; harmless if the full package is loaded."""
    name = "tvm.s_tir.tensor_intrin"
    pkg = sys.modules.get(name)
    if pkg is None:
        import tvm.s_tir

        pkg = types.ModuleType(name)
        pkg.__path__ = [tvm.s_tir.__path__[0] + "/tensor_intrin"]  # type: ignore[attr-defined]
        pkg.__package__ = name
        pkg._tvm_ofa_light = set()  # type: ignore[attr-defined]
        sys.modules[name] = pkg
    loaded = getattr(pkg, "_tvm_ofa_light", None)
    if loaded is None:  # the real package: everything is registered already
        return
    for sub in _FAMILIES.get(fam, ()):
        if sub not in loaded:
            importlib.import_module(f"{name}.{sub}")
            loaded.add(sub)
