"""A tiny artifact for the C++ tests, in the layout of `tvm-ofa compile` (model.so + metadata.json).

Run as a script it stands in for `tvm-ofa compile` (same flags, only --out is used), so the CMake
function can be tested without the full compiler: `python _cpp_artifact.py compile --out DIR ...`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

RESOLUTION = 16
N_CLASSES = 10


def make_tiny_artifact(out_dir: str | Path, seed: int = 0):
    """Compile conv-relu-mean-linear with TVM into out_dir; return the torch module (eval mode)."""
    import torch
    import tvm
    from tvm.relax.frontend.torch import from_exported_program

    torch.manual_seed(seed)

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, N_CLASSES)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))

    model = Tiny().eval()
    shape = (1, 3, RESOLUTION, RESOLUTION)
    ep = torch.export.export(model, (torch.zeros(shape),))
    mod = from_exported_program(ep, keep_params_as_input=False)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # tvm.compile in 0.27 wants a Target object, not the dict
    tvm.compile(mod, target=tvm.target.Target({"kind": "llvm"})).export_library(str(out / "model.so"))
    (out / "metadata.json").write_text(json.dumps({
        "input_shape": list(shape), "input_dtype": "float32",
        "output_shape": [1, N_CLASSES], "entry": "main", "arch_id": "tiny-test",
    }, indent=2))
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="stand-in tvm-ofa")
    parser.add_argument("verb", choices=["compile"])
    parser.add_argument("--target", required=True)
    parser.add_argument("--arch", required=True)
    parser.add_argument("--checkpoint")
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-tune", action="store_true")
    args = parser.parse_args(argv)
    # a target is a YAML file or a shipped target's name, as `tvm-ofa compile` takes it
    target = (args.target,) if args.target.endswith((".yaml", ".yml")) or "/" in args.target else ()
    for f in target + (args.arch,) + ((args.checkpoint,) if args.checkpoint else ()):
        if not Path(f).is_file():
            print(f"stand-in tvm-ofa: {f}: no such file", file=sys.stderr)
            return 2
    # the pipeline's layout: <out>/<target-name>/<arch-id>/
    make_tiny_artifact(Path(args.out) / Path(args.target).stem / "tiny-test")
    return 0


if __name__ == "__main__":
    sys.exit(main())
