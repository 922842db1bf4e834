"""Single-threaded BLAS for the search loop.

A search multiplies small matrices (an MLP accuracy predictor on a few hundred rows) thousands
of times; numpy's multi-threaded OpenBLAS spends that time handing off to threads, and on a
loaded 2-core machine a 225x400x400 product goes from 1.6 ms (one thread) to ~30 ms.
"""
from __future__ import annotations

import contextlib
import ctypes
import re
from typing import Iterator

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")


def _openblas() -> tuple | None:
    try:
        with open("/proc/self/maps") as f:
            paths = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", f.read())))
    except OSError:  # not Linux: leave BLAS as it is
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTERS:
            getter = name.replace("_set_", "_get_")
            if hasattr(lib, name) and hasattr(lib, getter):
                return getattr(lib, name), getattr(lib, getter)
    return None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with numpy's OpenBLAS on one thread, restoring the count after (a no-op
    where that library is not found)."""
    import numpy  # noqa: F401  (loads OpenBLAS so that it can be found)

    found = _openblas()
    if found is None:
        yield
        return
    set_threads, get_threads = found
    before = int(get_threads())
    set_threads(1)
    try:
        yield
    finally:
        set_threads(before)
