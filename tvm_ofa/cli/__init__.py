"""The ``tvm-ofa`` command. The only place that prints.

Each verb lives in its own module under ``tvm_ofa.cli`` and exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Verb modules import torch/tvm inside ``run``
only, so ``tvm-ofa --help`` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from tvm_ofa.errors import TvmOfaError

# verb -> module; the registry is the one place a verb is added.
VERBS: dict[str, str] = {
    "demo": "tvm_ofa.cli.demo",
    "subnet": "tvm_ofa.cli.subnet",
    "train": "tvm_ofa.cli.train",
    "accuracy": "tvm_ofa.cli.accuracy",
    "targets": "tvm_ofa.cli.targets",
    "tune": "tvm_ofa.cli.tune",
    "compile": "tvm_ofa.cli.compile",
    "run": "tvm_ofa.cli.run",
    "bench": "tvm_ofa.cli.bench",
    "latency": "tvm_ofa.cli.latency",
    "calibrate": "tvm_ofa.cli.calibrate",
    "search": "tvm_ofa.cli.search",
    "specialize": "tvm_ofa.cli.specialize",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tvm-ofa",
        description="Once-for-All supernets specialized per hardware target with Apache TVM.",
        epilog="exit status: 0 done; 1 an error (one line naming the file or value); 2 a usage "
               "error; 3 done, but a result misses what was asked (specialize: a latency budget); "
               "130 interrupted (work written so far is kept)",
    )
    from tvm_ofa import __version__

    parser.add_argument("--version", action="version", version=f"tvm-ofa {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    sub.required = True
    for verb, module_name in VERBS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(verb, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP),
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


# exit status: 0 done; 1 an error, said in one line naming the file or value; 2 a usage error
# (argparse); 3 done, but a result misses what was asked (specialize: a latency budget); 130 interrupted
EXIT_ERROR, EXIT_MISSED = 1, 3


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except TvmOfaError as err:
        print(f"tvm-ofa {args.verb}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"tvm-ofa {args.verb}: interrupted; work written so far is kept and a rerun resumes",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
