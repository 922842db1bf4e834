"""``tvm-ofa bench``: time an artifact (median and p90)."""
from __future__ import annotations

import argparse

REPORTS = True
HELP = "time an emitted artifact locally (as compile does: fresh loads, several windows) or on an RPC device"
DESCRIPTION = """examples:
  tvm-ofa bench artifacts/host-cpu/r160-d22222-1a2b3c4d --repeats 100
  tvm-ofa bench artifacts/arm-cortex-a72/r160-... --rpc 127.0.0.1:9190/rasp4"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", help="artifact folder")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    parser.add_argument("--repeats", type=int, default=50,
                        help="timed calls at least (default 50); more, up to 20x, to span --min-seconds")
    parser.add_argument("--min-seconds", type=float, default=1.0,
                        help="spread the timed calls over at least this long (default 1 s): on a shared "
                             "machine a short window catches one burst of other load and moves the median")
    parser.add_argument("--threads", type=int, help="runtime threads (default: as measured)")
    parser.add_argument("--rpc", metavar="HOST:PORT/KEY", help="measure through an RPC tracker")


def run(args: argparse.Namespace) -> int:
    from tvm_ofa.errors import ConfigError

    if args.rpc:
        from tvm_ofa.compiler.rpc import measure_rpc

        try:
            hostport, key = args.rpc.split("/", 1)
            host, port = hostport.rsplit(":", 1)
            spec = {"tracker_host": host, "tracker_port": int(port), "key": key}
        except ValueError:
            raise ConfigError(f"--rpc {args.rpc}: expected HOST:PORT/KEY") from None
        lat = measure_rpc(args.artifact, spec, args.warmup, args.repeats, args.min_seconds)
    else:
        from tvm_ofa.compiler.artifact import time_artifact

        lat = time_artifact(args.artifact, threads=args.threads, warmup=args.warmup, repeats=args.repeats,
                            min_seconds=args.min_seconds)
    from tvm_ofa.cli._common import Result

    loads = f", fastest window per load {', '.join(f'{v:.3f}' for v in lat.loads_ms)} ms" if lat.loads_ms else ""
    print(f"latency {lat.latency_ms or lat.median_ms:.3f} ms (fastest window)   median {lat.median_ms:.3f} ms   "
          f"p90 {lat.p90_ms:.3f} ms   ({lat.repeats} repeats after {lat.warmup} warmup, threads "
          f"{lat.threads or 'default'}{loads})")
    return Result({"artifact": str(args.artifact), "rpc": args.rpc, **lat.to_dict()})
