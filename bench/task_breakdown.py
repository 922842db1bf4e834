"""Where a tuned subnet's time goes, from the tuning records alone (no build, no timing run).

For one subnet, lists its fused tasks as the tuner sees them (``subnet_workloads``) with the
best time a tuning record measured for each, the arithmetic rate that time means (GFLOP/s), and
the sums per kind of task. Comparing the task sum with an end-to-end measurement of the same
subnet separates what the kernels cost from what running them one after another costs.

    python bench/task_breakdown.py --log-dir tuning_logs/host-cpu/znver4 --arch smallest --resolution 160
    python bench/task_breakdown.py --log-dir tuning_logs/host-cpu/znver4 --arch arch.json --top 10

``--time-kernels TARGET`` also builds the subnet with those records and times each of its fused
kernels alone, now, against its record: a kernel whose schedule runs far slower than its record
stands out from the machine's common factor (a slow phase moves every kernel alike).

    python bench/task_breakdown.py --log-dir tuning_logs/host-cpu/znver4 --arch arch.json --time-kernels host-cpu

"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log-dir", required=True, help="a tuning-log folder, e.g. tuning_logs/host-cpu/znver4")
    p.add_argument("--arch", default="smallest", help="'smallest', 'middle', 'largest', or an arch JSON file")
    p.add_argument("--resolution", type=int, default=160)
    p.add_argument("--n-classes", type=int, default=1000)
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--top", type=int, default=12, help="how many of the slowest tasks to list")
    p.add_argument("--time-kernels", metavar="TARGET", default=None,
                   help="also build the subnet for this target with the records and time each fused "
                        "kernel alone against its record (run it alone on the machine)")
    return p.parse_args(argv)


def _group(w) -> str:
    if w.kind == "conv2d" and w.k == 1:
        return "1x1 conv" if w.h > 1 else "1x1 conv on 1x1 (head/SE)"
    if w.kind == "conv2d":
        return "stem conv"
    if w.kind == "dwconv":
        return f"depthwise {w.k}x{w.k}"
    return w.kind


def main(argv=None) -> int:
    args = parse_args(argv)
    from tvm_ofa.arch import ArchConfig, SearchSpace
    from tvm_ofa.predict.dataset import build_dataset
    from tvm_ofa.predict.workloads import NetConfig, subnet_workloads

    space = SearchSpace(resolutions=(args.resolution,))
    if args.arch in ("smallest", "middle", "largest"):
        arch = getattr(space, args.arch)(args.resolution)
    else:
        arch = ArchConfig.from_json(Path(args.arch))
    net = NetConfig(args.width_mult, args.n_classes, 2)
    best = build_dataset(args.log_dir).by_key()
    rows, missing = [], 0
    for w in subnet_workloads(arch, net):
        s = best.get(w.key)
        if s is None:
            missing += 1
            continue
        rows.append((s * 1e3, w))
    total = sum(ms for ms, _ in rows)
    print(f"{arch.id} at {arch.resolution} px, records from {args.log_dir}")
    print(f"{len(rows)} tasks with a record ({missing} without), task sum {total:.3f} ms")
    groups: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for ms, w in rows:
        g = groups[_group(w)]
        g[0] += ms
        g[1] += 2 * w.macs / 1e6  # MFLOP
        g[2] += 1
    print(f"\n{'kind':28s} {'tasks':>5s} {'ms':>8s} {'share':>6s} {'GFLOP/s':>8s}")
    for name, (ms, mflop, n) in sorted(groups.items(), key=lambda kv: -kv[1][0]):
        print(f"{name:28s} {n:5d} {ms:8.3f} {100 * ms / total:5.1f}% {mflop / ms:8.1f}")
    print(f"\nslowest {args.top} tasks")
    for ms, w in sorted(rows, key=lambda r: -r[0])[: args.top]:
        rate = 2 * w.macs / 1e6 / ms
        print(f"  {ms:7.4f} ms {rate:7.1f} GFLOP/s  {w.kind} {w.epilogue} cin {w.cin} cout {w.cout} "
              f"{w.h}->{w.ho} px k{w.k} s{w.s}")
    if args.time_kernels:
        time_kernels(args, arch, {k: 1e3 * v for k, v in best.items()})
    return 0


def scheduled_kernels(args, arch, cfg):
    """Each distinct fused kernel of the subnet's build for ``cfg`` with the records of
    ``args.log_dir`` applied: ``(name, PrimFunc, workload or None)``."""
    import tvm
    import tvm.tirx

    from tvm_ofa.arch import SearchSpace
    from tvm_ofa.compiler.build import apply_database
    from tvm_ofa.compiler.store import open_database
    from tvm_ofa.compiler.lower import lower_module
    from tvm_ofa.nn.ofa_mbv3 import OFAMobileNetV3
    from tvm_ofa.predict.workloads import workload_from_mod

    supernet = OFAMobileNetV3(n_classes=args.n_classes, width_mult=args.width_mult,
                              space=SearchSpace(resolutions=(arch.resolution,))).eval()
    low = lower_module(supernet.extract(arch), (1, 3, arch.resolution, arch.resolution), lowering=cfg.lowering)
    mod = apply_database(low.mod, cfg.tvm_target(), open_database(args.log_dir).db)
    names = {gv.name_hint for gv in low.mod.get_global_vars()}

    for gv, f in mod.functions_items():
        # a prepacked build calls "<name>_prepacked" (the workload of "<name>" on packed weights);
        # "<name>_weight_prepack" ran once, at build time
        name = gv.name_hint.removesuffix("_prepacked")
        if not isinstance(f, tvm.tirx.PrimFunc) or name.endswith("_weight_prepack") \
                or name not in names:
            continue
        yield gv.name_hint, f, workload_from_mod(
            tvm.IRModule({"main": low.mod[name].with_attr("global_symbol", "main")}))


def time_kernels(args, arch, record_ms: dict) -> None:
    """Each distinct fused kernel of the subnet's build, timed alone (best of 5 x 20 calls on
    random inputs), against its workload's record; the largest excesses first."""
    import numpy as np
    import tvm
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from tvm_ofa.compiler import tir_pipeline
    from tvm_ofa.compiler.measure import set_threads
    from tvm_ofa.targets import load_target

    cfg = load_target(args.time_kernels)
    target = cfg.tvm_target()
    set_threads(cfg.num_threads)  # the records' threads (TVM's own default is one thread here)
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    rows = []
    for name, f, w in scheduled_kernels(args, arch, cfg):
        lib = tvm.compile(tvm.IRModule({"main": f.with_attr("global_symbol", "main")}), target=target,
                          tir_pipeline=tir_pipeline.register()).jit()
        tensors = [tvm.runtime.tensor(rng.standard_normal([int(d) for d in a.shape]).astype(a.dtype), dev)
                   for a in ArgInfo.from_prim_func(f)]
        now = 1e3 * min(lib.time_evaluator("main", dev, number=20, repeat=5)(*tensors).results)
        rows.append((now, record_ms.get(w.key) if w else None, bool((f.attrs or {}).get("tirx.is_scheduled")),
                     w.key if w else name))
    known = [r for r in rows if r[1]]
    if not known:
        print(f"\n{len(rows)} distinct kernels built, none with a record in {args.log_dir}: nothing to compare")
        return
    now_sum, rec_sum = sum(r[0] for r in known), sum(r[1] for r in known)
    print(f"\n{len(rows)} distinct kernels built, {sum(r[2] for r in rows)} with a tuned schedule; "
          f"{len(known)} with a record: {now_sum:.3f} ms timed alone now, {rec_sum:.3f} ms in their "
          f"records ({now_sum / rec_sum:.2f}x)")
    for now, rec, _, key in sorted(known, key=lambda r: -(r[0] - r[1] * now_sum / rec_sum))[: args.top]:
        print(f"  now {now:7.4f} ms  record {rec:7.4f} ms  {now / rec:5.2f}x  {key}")


if __name__ == "__main__":
    sys.exit(main())
