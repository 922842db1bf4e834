"""``tvm-ofa run``: run an artifact on an input and print the top-5 classes."""
from __future__ import annotations

import argparse

REPORTS = True
HELP = "run an emitted artifact on an input (.npy) and print the top-5 classes"
DESCRIPTION = """examples:
  tvm-ofa run artifacts/host-cpu/r160-d22222-1a2b3c4d
  tvm-ofa run artifacts/host-cpu/r160-d22222-1a2b3c4d --input x.npy"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", help="artifact folder")
    parser.add_argument("--input", metavar="NPY", help="float32 NCHW input (default: random)")
    parser.add_argument("--top", type=int, default=5, help="classes to print (default 5)")
    parser.add_argument("--output", metavar="NPY", help="also write the logits here (.npy)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from tvm_ofa.compiler.artifact import ArtifactError, load_artifact

    art = load_artifact(args.artifact)
    if args.input:
        try:
            x = np.load(args.input)
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{args.input}: cannot read input: {exc}") from None
    else:
        x = np.random.default_rng(0).standard_normal(art.input_shape).astype("float32")
        print(f"input       random {list(art.input_shape)}")
    from tvm_ofa.cli._common import Result

    out = art(x)
    if args.output:
        np.save(args.output, out)
        print(f"wrote       {args.output} {list(out.shape)}")
    logits = out[0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    top = [{"class": int(c), "logit": float(logits[c]), "p": float(p[c])} for c in np.argsort(-logits)[: args.top]]
    for rank, t in enumerate(top, 1):
        print(f"{rank}. class {t['class']:<5} logit {t['logit']:9.4f}  p {t['p']:.4f}")
    return Result({"artifact": str(args.artifact), "output_shape": list(out.shape), "output": args.output,
                   "top": top})
