"""``tvm-ofa targets``: list and validate target configs."""
from __future__ import annotations

import argparse

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
    from tvm_ofa.targets import list_targets, load_target

    paths = args.files or list_targets()
    for p in paths:
        cfg = load_target(p)  # raises ConfigError -> one line
        runner = cfg.runner["kind"]
        if runner == "rpc":
            runner += f" {cfg.runner['tracker_host']}:{cfg.runner['tracker_port']}/{cfg.runner['key']}"
        line = f"{cfg.name:<16} {cfg.target.get('kind'):<5} runner {runner:<28} {p}"
        if args.resolve:
            line += f"\n    resolved {cfg.resolved_target()}  logs {cfg.log_dir()}"
        print(line)
    return 0
