"""``tvm-ofa subnet``: describe a subnet (params, MACs, output shape) and optionally save it."""
from __future__ import annotations

import argparse

from tvm_ofa.cli._common import Result, add_model_arguments, load_model, resolve_arch

REPORTS = True
HELP = "describe a subnet of the supernet: parameters, MACs, output shape"
DESCRIPTION = """Extract a subnet from the supernet and print its size.

examples:
  tvm-ofa subnet --arch smallest
  tvm-ofa subnet --arch arch.json --checkpoint ofa_mbv3_d234_e346_k357_w1.0
  tvm-ofa subnet --arch random:3 --save-arch arch.json --save-module subnet.pt2
  tvm-ofa subnet --arch arch.json --save-onnx model.onnx      # for ONNX Runtime, OpenVINO, TensorRT"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--save-arch", metavar="FILE", help="write the arch JSON here")
    parser.add_argument("--save-module", metavar="FILE",
                        help="write the static subnet as a torch.export program (.pt2)")
    parser.add_argument("--save-onnx", metavar="FILE",
                        help="write the static subnet as an ONNX model (input x: float32 NCHW, output y: logits)")


def run(args: argparse.Namespace) -> int:
    import torch

    from tvm_ofa.nn.profile import count_macs

    net, source = load_model(args)
    arch = resolve_arch(args.arch, net.space, args.resolution)
    sub = net.extract(arch)
    x = torch.zeros(1, 3, arch.resolution, arch.resolution)
    with torch.no_grad():
        out = sub(x)
    info = {
        "arch_id": arch.id,
        "arch": arch.to_dict(),
        "checkpoint": source,
        "params": sum(p.numel() for p in sub.parameters()),
        "macs": count_macs(arch, net.width_mult, net.n_classes, net.stem_stride),
        "input_shape": list(x.shape),
        "output_shape": list(out.shape),
    }
    if args.save_arch:
        with open(args.save_arch, "w") as f:
            f.write(arch.to_json(indent=2) + "\n")
    if args.save_module:
        torch.export.save(torch.export.export(sub, (x,)), args.save_module)
    if args.save_onnx:
        from tvm_ofa.nn.export import export_onnx

        export_onnx(sub, tuple(x.shape), args.save_onnx)
    print(f"subnet      {info['arch_id']}")
    print(f"supernet    {source}")
    print(f"depths      {list(arch.d)}   resolution {arch.resolution}")
    print(f"kernels     {[arch.ks[i] for i in arch.active_blocks()]}")
    print(f"expands     {[arch.e[i] for i in arch.active_blocks()]}")
    print(f"params      {info['params'] / 1e6:.2f} M")
    print(f"MACs        {info['macs'] / 1e6:.1f} M")
    print(f"input       {info['input_shape']}  ->  output {info['output_shape']}")
    for path, what in ((args.save_arch, "arch"), (args.save_module, "exported module"),
                       (args.save_onnx, "ONNX model")):
        if path:
            print(f"wrote {what} to {path}")
    return Result(info)
