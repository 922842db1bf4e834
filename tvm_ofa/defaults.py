"""The embedded default: the supernet checkpoint shipped with the package and where it lives."""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
# trained by `tvm-ofa train` on the offline default dataset (see docs/TRAINING.md)
DEFAULT_CHECKPOINT = ASSETS / "supernet.pt"
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_checkpoint() -> Path | None:
    """The shipped checkpoint, or None when this checkout has none yet."""
    return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None
