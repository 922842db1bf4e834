"""The ``tvm-ofa`` command. The only place that prints.

Each verb lives in its own module under ``tvm_ofa.cli`` and exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Verb modules import torch/tvm inside ``run``
only, so ``tvm-ofa --help`` stays fast. A verb that reports a result sets ``REPORTS = True`` and
returns a :class:`~tvm_ofa.cli._common.Result`: it then gets ``--json``, which prints that result
as JSON on stdout and sends the text report to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
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


JSON_HELP = 'print the result as JSON on stdout (the text report goes to stderr; a failure prints {"error": ...})'


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
        if getattr(module, "REPORTS", False):
            # on each action of a verb that has actions (`accuracy fit --json`), else on the verb
            actions = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
            for q in actions[0].choices.values() if actions else [p]:
                q.add_argument("--json", action="store_true", help=JSON_HELP)
        p.set_defaults(_run=module.run)
    return parser


# exit status: 0 done; 1 an error, said in one line naming the file or value; 2 a usage error
# (argparse); 3 done, but a result misses what was asked (specialize: a latency budget); 130 interrupted
EXIT_ERROR, EXIT_MISSED = 1, 3


def main(argv: Sequence[str] | None = None) -> int:
    from tvm_ofa.cli._common import Result

    args = build_parser().parse_args(argv)
    as_json = getattr(args, "json", False)
    try:
        # under --json stdout carries the JSON document alone
        with contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
            out = args._run(args)
    except TvmOfaError as err:
        print(f"tvm-ofa {args.verb}: error: {err}", file=sys.stderr)
        if as_json:
            print(json.dumps({"error": str(err)}))
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"tvm-ofa {args.verb}: interrupted; work written so far is kept and a rerun resumes",
              file=sys.stderr)
        return 130
    if isinstance(out, Result):
        if as_json:
            print(json.dumps(out.data, indent=2, default=str))
        return out.status
    return int(out or 0)


if __name__ == "__main__":
    sys.exit(main())
