"""PyTorch eager on the GPU for the subnets of a prepare.py folder (same weights): the peer timing.

Needs torch and this repository's tvm_ofa package (the parts used here import no TVM).
"""
import json
import sys
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
from tvm_ofa.compiler.measure import time_calls  # noqa: E402 - stdlib and numpy only

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
        lat = time_calls(lambda: (m(x), torch.cuda.synchronize()), warmup=20, repeats=200)
    print(json.dumps({"artifact": d.name, "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0),
                      "max_abs_diff_vs_cpu_ref": err, "median_ms": round(lat.median_ms, 4)}),
          flush=True)
