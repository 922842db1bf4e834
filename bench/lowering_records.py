"""Best tuning record of each stride-2 depthwise workload of a subnet, under the plain lowering and
under ``deinterleave`` (``lower.dwconv_s2_deinterleaved``), from one log folder.

The two lowerings give the same workload keys but other functions, so their records are told
apart here by the function itself (MetaSchedule's structural hash), not by key.

    python bench/lowering_records.py --target host-cpu-prepack --subnet largest --resolution 224
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="host-cpu-prepack", help="target whose logs to read")
    p.add_argument("--subnet", default="largest", choices=("smallest", "middle", "largest"))
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--log-root", default="tuning_logs")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import tvm

    from tvm_ofa.cli._common import untrained_supernet
    from tvm_ofa.compiler.database import open_database
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.errors import TvmOfaError
    from tvm_ofa.predict.workloads import workload_from_mod
    from tvm_ofa.targets import load_target

    args = parse_args(argv)
    try:
        cfg = load_target(args.target)
    except TvmOfaError as exc:
        raise SystemExit(f"error: {exc}") from None
    tdb = open_database(cfg.log_dir(args.log_root))
    target = cfg.tvm_target()
    net = untrained_supernet()
    arch = net.space.validate(getattr(net.space, args.subnet)(args.resolution))
    best: dict[str, dict[str, float | None]] = {}
    for name, dei in (("plain", False), ("deinterleaved", True)):
        low = lower_module(net.extract(arch).eval(), (1, 3, args.resolution, args.resolution),
                           prepack=cfg.prepack, deinterleave=dei)
        for _, f in low.mod.functions_items():
            if not isinstance(f, tvm.tirx.PrimFunc):
                continue
            mod = tvm.IRModule({"main": f.with_attr("global_symbol", "main")})
            w = workload_from_mod(mod)
            if w is None or not re.fullmatch(r"dwconv:.*:s2", w.key):
                continue
            secs = tdb.best_seconds(mod, target)
            best.setdefault(w.key, {})[name] = None if secs is None else 1e3 * secs
    print(f"{arch.id}, records in {cfg.log_dir(args.log_root)} (ms; '-' = no record)")
    print(f"{'workload':48s} {'plain':>8s} {'deinterleaved':>14s}")
    for key, v in sorted(best.items()):
        cells = [f"{v[n]:.4f}" if v.get(n) is not None else "-" for n in ("plain", "deinterleaved")]
        print(f"{key:48s} {cells[0]:>8s} {cells[1]:>14s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
