"""PyTorch eager on the GPU for the subnets of a prepare.py folder (same weights): the peer timing.

Needs torch and this repository's tvm_ofa package (pure torch) next to the folder's bench/.
"""
import json
import statistics
import sys
import time
from pathlib import Path

here = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent).resolve()
# the repository around this file (run from bench/cuda_device/ or from a folder under bench/out/)
root = next(p for p in Path(__file__).resolve().parents if (p / "tvm_ofa").is_dir())
sys.path.insert(0, str(root))
sys.path.insert(0, str(root / "bench"))
import numpy as np  # noqa: E402
import torch  # noqa: E402

import bench_runtime as br  # noqa: E402
from tvm_ofa.arch import ArchConfig  # noqa: E402
from tvm_ofa.cli._common import untrained_supernet  # noqa: E402

torch.backends.cudnn.allow_tf32 = False  # fp32, as the TVM library computes
torch.backends.cuda.matmul.allow_tf32 = False
net = untrained_supernet()
br.realistic_init_(net)
for d in sorted((here / "art" / "cuda-sm90").iterdir()):
    meta = json.loads((d / "metadata.json").read_text())
    m = net.extract(ArchConfig.from_dict(meta["arch"])).eval().cuda()
    x = torch.from_numpy(np.load(d / "x.npy")).cuda()
    with torch.no_grad():
        err = float(np.abs(m(x).cpu().numpy() - np.load(d / "ref.npy")).max())
        for _ in range(20):
            m(x)
        torch.cuda.synchronize()
        ts = []
        for _ in range(200):
            t0 = time.perf_counter()
            m(x)
            torch.cuda.synchronize()
            ts.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"artifact": d.name, "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0),
                      "max_abs_diff_vs_cpu_ref": err, "median_ms": round(statistics.median(ts), 4)}),
          flush=True)
