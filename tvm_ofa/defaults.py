"""The embedded default: the supernet checkpoint shipped with the package and where it lives."""
from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
ASSETS = PACKAGE / "assets"
# trained by `tvm-ofa train` on the offline default dataset (see docs/TRAINING.md)
DEFAULT_CHECKPOINT = ASSETS / "supernet.pt"


def shipped(name: str) -> Path:
    """A folder the project ships (``targets``, ``tuning_logs``): the checkout's where the package
    runs from one, else the copy an installed wheel holds inside the package (``_shipped``)."""
    checkout = PACKAGE.parent / name
    return checkout if (PACKAGE.parent / "pyproject.toml").is_file() and checkout.is_dir() \
        else PACKAGE / "_shipped" / name


def default_checkpoint() -> Path | None:
    """The shipped checkpoint, or None when this checkout has none yet."""
    return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None
