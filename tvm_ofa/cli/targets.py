"""``tvm-ofa targets``: list and validate target configs."""
from __future__ import annotations

import argparse

REPORTS = True
HELP = "list the target configs (targets/*.yaml) and validate them"
DESCRIPTION = """List the shipped target configs, or validate the files given.

examples:
  tvm-ofa targets
  tvm-ofa targets my-board.yaml"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", metavar="YAML", help="configs to validate")
    parser.add_argument("--resolve", action="store_true",
                        help="also resolve mcpu: native and show the log folder (imports tvm)")


def run(args: argparse.Namespace) -> int:
    from tvm_ofa.targets import list_targets, load_target, lowering_candidates

    from tvm_ofa.cli._common import Result

    paths = args.files or list_targets()
    found = []
    for p in paths:
        cfg = load_target(p)  # raises ConfigError -> one line
        runner = cfg.runner["kind"]
        if runner == "rpc":
            runner += f" {cfg.runner['tracker_host']}:{cfg.runner['tracker_port']}/{cfg.runner['key']}"
        line = f"{cfg.name:<16} {cfg.target.get('kind'):<5} runner {runner:<28} {p}"
        lowerings = [c.name for c in lowering_candidates(cfg)] if args.resolve and cfg.prefer else []
        if args.resolve:
            line += f"\n    resolved {cfg.resolved_target()}  logs {cfg.log_dir()}"
        if lowerings:
            line += (f"\n    lowerings {', '.join(lowerings)} (fastest first on {cfg.host_cpu()}: a network "
                     "uses the first with a latency predictor of it)")
        print(line)
        found.append({"name": cfg.name, "path": str(p), "kind": cfg.target.get("kind"), "runner": runner,
                      **({"resolved": str(cfg.resolved_target()), "log_dir": str(cfg.log_dir())}
                         if args.resolve else {}), **({"lowerings": lowerings} if lowerings else {})})
    return Result({"targets": found})
