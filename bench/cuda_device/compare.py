#!/usr/bin/env python
"""Compare the logits a GPU machine wrote (run.sh's out-dir) with PyTorch's on this CPU.

    python bench/cuda_device/compare.py bench/out/devcheck <out-dir>
"""
import sys
from pathlib import Path

import numpy as np

folder, out = Path(sys.argv[1]), Path(sys.argv[2])
for d in sorted((folder / "art" / "cuda-sm90").iterdir()):
    got = np.fromfile(out / f"logits_{d.name}.bin", dtype=np.float32)
    ref = np.load(d / "ref.npy").reshape(-1)
    print(f"{d.name}: max abs diff {float(np.abs(got - ref).max()):.3g} (logits up to {float(np.abs(ref).max()):.3g})")
