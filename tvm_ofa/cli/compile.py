"""``tvm-ofa compile``: tune what is missing, build, export the artifact folder."""
from __future__ import annotations

import argparse

from tvm_ofa.cli._compile_common import add_compile_arguments, tqdm_progress

REPORTS = True
HELP = "build a subnet into artifacts/<target>/<arch-id>/ (tunes missing workloads first)"
DESCRIPTION = """Tune the workloads the target's database lacks (unless --no-tune), build with
the tuned schedules, export model.so + metadata.json and measure it when possible.

examples:
  tvm-ofa compile --target targets/host-cpu.yaml --arch arch.json
  tvm-ofa compile --target targets/arm-cortex-a72.yaml --arch smallest --no-tune"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_compile_arguments(parser)
    parser.add_argument("--no-tune", action="store_true", help="build with the records there are")
    parser.add_argument("--out", default="artifacts", metavar="DIR", help="artifact root")
    parser.add_argument("--no-measure", action="store_true", help="do not time the library after building it")


def run(args: argparse.Namespace) -> int:
    from tvm_ofa.cli._common import chosen_target, load_model, resolve_arch, supernet_match
    from tvm_ofa.compiler.pipeline import emit
    from tvm_ofa.train.evaluate import subnet_extractor
    from tvm_ofa.compiler.artifact import read_metadata
    from tvm_ofa.targets import load_target

    cfg = load_target(args.target)
    net, source = load_model(args)
    cfg = chosen_target(cfg, supernet_match(net), args.log_root)
    arch = resolve_arch(args.arch, net.space, args.resolution)
    update, close = tqdm_progress()
    try:
        # batch norm recalibrated on the checkpoint's training data when its metadata names it
        module = subnet_extractor(net, source)(arch)
        out = emit(cfg, arch, module, batch=args.batch, log_root=args.log_root,
                           out_root=args.out, tune_first=not args.no_tune,
                           trials_per_task=args.trials, trials_per_round=args.trials_per_round,
                           progress=update, measure=not args.no_measure, seed_from=args.seed_from,
                           reseed=args.reseed)
    finally:
        close()
    meta = read_metadata(out)
    t = meta["tuning"]
    print(f"artifact    {out}")
    print(f"tuning      {t['tuned_workloads']}/{t['total_workloads']} workloads tuned"
          + (f" ({t['note']})" if t.get("note") else ""))
    lat = meta.get("latency")
    if lat:
        loads = lat.get("loads_ms") or ()
        print(f"latency     {lat.get('latency_ms') or lat['median_ms']:.3f} ms (fastest window; median "
              f"{lat['median_ms']:.3f} ms, p90 {lat['p90_ms']:.3f} ms, {lat['threads']} threads"
              + (f", {len(loads)} loads: {', '.join(f'{v:.3f}' for v in loads)} ms" if loads else "") + ")")
    else:
        print(f"latency     {meta.get('latency_note')}")
    from tvm_ofa.cli._common import Result

    return Result({"artifact": str(out), "metadata": meta})
