#!/usr/bin/env python
"""Runtime comparison on this CPU: PyTorch eager, ONNX Runtime, OpenVINO and the tuned tvm-ofa
artifact, for the smallest, a middle and the largest subnet at 160 and 224 px, batch 1.

All runtimes get the same thread count; they are timed interleaved (A, B, C, D, A, B, ...) over
several rounds, in each of ``--loads`` fresh loads of every runtime, and the table shows the median
over all rounds of all loads of the per-round medians. The TVM artifact is
built with ``tvm_ofa.compiler.pipeline.emit``, which tunes the workloads the target's database
lacks first (``--trials`` per task; long: ~50 tasks per subnet). Several ``--target`` files give
one TVM column each (say ``host-cpu host-cpu-prepack``: the same CPU with and without weights
prepacked). The table goes into ``docs/BENCHMARKS.md`` between markers, with the command, the CPU
and the trial budget.

    python bench/bench_runtime.py --trials 64            # full run (hours of tuning on 2 cores)
    python bench/bench_runtime.py --trials 16 --target host-cpu host-cpu-prepack
    python bench/bench_runtime.py --no-tune --out /tmp/b.md --resolutions 160 --subnets smallest
    python bench/bench_runtime.py --seed-from znver4 --trials 0   # a new CPU: znver4's schedules, timed here
"""
from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

START, END = "<!-- bench_runtime:start -->", "<!-- bench_runtime:end -->"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", nargs="+", default=["host-cpu"],
                   help="target configs; one TVM column each (they must run on this machine)")
    p.add_argument("--checkpoint", help="supernet checkpoint (default: the embedded one)")
    p.add_argument("--subnets", nargs="+", default=["smallest", "middle", "largest"],
                   choices=["smallest", "middle", "largest"])
    p.add_argument("--resolutions", nargs="+", type=int, default=[160, 224])
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20, help="timed calls per runtime and round")
    p.add_argument("--loads", type=int, default=2, help="times every runtime is loaded afresh (ONNX "
                   "Runtime and OpenVINO sessions, TVM libraries), each load timed over --rounds; one "
                   "slow load of a library then no longer decides its row")
    p.add_argument("--trials", type=int, help="trials per task (default: the target's)")
    p.add_argument("--no-tune", action="store_true", help="build with the records there are")
    p.add_argument("--seed-from", metavar="CPU", help="before tuning, time another CPU's records of "
                   "each target here (its folder beside this machine's) where this one has none")
    p.add_argument("--reseed", action="store_true", help="with --seed-from: every workload, tuned here "
                   "or not, its best records from both folders timed side by side here")
    p.add_argument("--log-root", default="tuning_logs")
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--out", default="docs/BENCHMARKS.md")
    return p.parse_args(argv)


def subnet(space, name: str, resolution: int):
    """``space.smallest``, ``space.middle`` or ``space.largest`` at ``resolution``."""
    return getattr(space, name)(resolution)


ORT = "ONNX Runtime"  # the column the bar compares with


def runners(module, x, artifact_dirs: dict, threads: int, onnx_path: str) -> dict:
    """name -> zero-argument callable running one inference to completion, each runtime loaded
    afresh; ``artifact_dirs`` maps a TVM column's name to its artifact folder, ``onnx_path`` is
    ``module`` exported (:func:`export_onnx`)."""
    import numpy as np
    import onnxruntime as ort
    import openvino as ov
    import torch

    from tvm_ofa import load_artifact

    torch.set_num_threads(threads)
    # an untrained supernet has near-zero activations: denormals made eager PyTorch ~200x slower
    # here (1.3 s vs ~6 ms), which ONNX Runtime and OpenVINO avoid by flushing them
    torch.set_flush_denormal(True)
    xt = torch.from_numpy(x)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    # spinning pool threads would steal the cores from the runtime timed next (interleaved)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    core = ov.Core()
    compiled = core.compile_model(onnx_path, "CPU", {"INFERENCE_NUM_THREADS": threads})
    req = compiled.create_infer_request()
    arts = {name: load_artifact(d, threads=threads) for name, d in artifact_dirs.items()}

    def run_torch():
        torch.set_flush_denormal(True)  # cheap; other runtimes' setup can reset MXCSR
        with torch.no_grad():
            module(xt)

    out = {"PyTorch eager": run_torch,
           ORT: lambda: sess.run(None, {"x": x}),
           "OpenVINO": lambda: req.infer({0: x}),
           **{name: (lambda a=a: a(x)) for name, a in arts.items()}}
    ref = module(xt).detach().numpy()
    for name, f in [(ORT, lambda: sess.run(None, {"x": x})[0])] + [(n, out[n]) for n in arts]:
        err = float(np.abs(f() - ref).max())
        if err > 1e-3:
            raise SystemExit(f"{name} output differs from PyTorch by {err}")
    return out


def export_onnx(module, x, tmp: str) -> str:
    import torch

    path = os.path.join(tmp, "model.onnx")
    torch.onnx.export(module, (torch.from_numpy(x),), path, input_names=["x"], output_names=["y"])
    return path


def realistic_init_(net) -> None:
    """Give an untrained supernet non-degenerate activations (as tests/conftest.py does). Its
    zero-initialized parameters produce denormal floats, which made eager PyTorch ~200x slower
    here than ONNX Runtime (1.3 s for the smallest subnet at 160 px)."""
    import torch

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0, generator=g)
            elif name.endswith("_matrix"):
                t.add_(torch.randn(t.shape, generator=g) * 0.1)
            elif name.endswith(("bn.weight", "bn.bn.weight")):
                t.uniform_(0.5, 1.5, generator=g)
            else:
                t.normal_(0.0, 0.1, generator=g)


SETTLE_S = 0.3  # a pause before each runtime's turn


def interleaved(fns: dict, rounds: int, repeats: int, settle: float = SETTLE_S) -> dict[str, list[float]]:
    """name -> the median ms of each round.

    Each runtime's turn starts after ``settle`` seconds idle: the runtime timed before it may
    leave pool threads busy after its last call (``bench/pool_spin.py`` shows for how long TVM's
    do), which would slow the next runtime's calls, not its own.
    """
    for f in fns.values():  # warm up every runtime before the first timed round
        for _ in range(3):
            f()
    per = {n: [] for n in fns}
    for _ in range(rounds):
        for name, f in fns.items():
            time.sleep(settle)
            f()  # the first call after the pause wakes the runtime's threads; not timed
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                f()
                ts.append((time.perf_counter() - t0) * 1e3)
            per[name].append(statistics.median(ts))
    return per


def pooled_median(loads: list[dict[str, list[float]]]) -> dict[str, float]:
    """name -> the median of the per-round medians of all loads."""
    return {n: statistics.median([v for load in loads for v in load[n]]) for n in loads[0]}


def paired_ratio(loads: list[dict[str, list[float]]], name: str) -> tuple[float, int, int]:
    """``name``'s time over ONNX Runtime's round by round: (median ratio, rounds with a ratio of
    at most 1, rounds).

    The two medians of a round are taken seconds apart, so the machine's slow phases (1.3-1.6x,
    "Slow phases" in docs/BENCHMARKS.md) move both alike; pooled medians can come from
    different phases.
    """
    ratios = [a / b for load in loads for a, b in zip(load[name], load[ORT])]
    return statistics.median(ratios), sum(r <= 1 for r in ratios), len(ratios)


def _bold(r: float) -> str:
    return f"**{r:.2f}**" if r <= 1 else f"{r:.2f}"


def table_rows(rows: list, tvm_columns: list[str], targets: list[str]) -> list[str]:
    """The markdown table of ``rows`` (``(subnet, px, arch id, tuning per target, median ms per
    runtime, paired ratio per TVM column)``, the last from :func:`paired_ratio`): the runtimes'
    times, each target's coverage, its time over ONNX Runtime's (the issue's bar: at most 1, in
    bold) and the same ratio round by round."""
    runtimes = list(rows[0][4]) if rows else []
    lines = ["| subnet | px | " + " | ".join(runtimes) + " | "
             + " | ".join(c.replace("tvm-ofa", "tuned workloads") for c in tvm_columns) + " | "
             + " | ".join(f"{c} / ORT" for c in tvm_columns) + " | "
             + " | ".join(f"{c} / ORT per round (rounds <= 1)" for c in tvm_columns) + " |",
             "| --- | --- | " + " | ".join("---" for _ in runtimes) + " | ---" * 3 * len(tvm_columns) + " |"]
    for name, res, aid, tun, med, paired in rows:
        lines.append(f"| {name} (`{aid}`) | {res} | " + " | ".join(f"{med[r]:.2f} ms" for r in runtimes)
                     + " | " + " | ".join(f"{tun[t]['tuned_workloads']}/{tun[t]['total_workloads']}"
                                          for t in targets) + " | "
                     + " | ".join(_bold(med[c] / med[ORT]) for c in tvm_columns) + " | "
                     + " | ".join(f"{_bold(paired[c][0])} ({paired[c][1]}/{paired[c][2]})"
                                  for c in tvm_columns) + " |")
    return lines


def write_table(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{START}\n{block}\n{END}"
    if START in text and END in text:
        text = text[: text.index(START)] + section + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv=None) -> int:
    import numpy as np
    import tvm

    from tvm_ofa.cli._common import load_model, untrained_supernet
    from tvm_ofa.compiler.artifact import read_metadata
    from tvm_ofa.compiler.measure import set_threads
    from tvm_ofa.compiler.pipeline import emit
    from tvm_ofa.targets import host_provenance, load_target

    args = parse_args(argv)
    # first, before any build starts TVM's thread pool with its x86 default (half the CPUs)
    set_threads(args.threads)
    cfgs = [load_target(t) for t in args.target]
    cfg = cfgs[0]
    # one TVM column per target, named after it: a lone "TVM" column hid which lowering it timed
    column = {c.name: f"tvm-ofa ({c.name})" for c in cfgs}
    net, source = load_model(argparse.Namespace(checkpoint=args.checkpoint))
    outside = [r for r in args.resolutions if r not in net.space.resolutions]
    if outside and args.checkpoint:
        raise SystemExit(f"{args.checkpoint}: its space has no resolution {outside} "
                         f"(it has {list(net.space.resolutions)}); pass --resolutions from those")
    if outside:
        # the embedded checkpoint is a small-image supernet (32-48 px): runtime at the sizes
        # deployment cares about is measured on the ImageNet-shaped space instead (latency does
        # not depend on the weights)
        net, source = untrained_supernet(), "untrained"
    if args.checkpoint is None and str(source).startswith("untrained"):
        realistic_init_(net)
        source = (f"untrained {net.n_classes}-class supernet (space {min(net.space.resolutions)}-"
                  f"{max(net.space.resolutions)} px), parameters re-initialized at random (seed 0) "
                  "for realistic activations")
    prov = host_provenance(cfg)
    rows = []
    for res in args.resolutions:
        for name in args.subnets:
            arch = net.space.validate(subnet(net.space, name, res))
            module = net.extract(arch).eval()
            folders, tuning = {}, {}
            for c in cfgs:
                t0 = time.time()
                folder = emit(c, arch, module, log_root=args.log_root, out_root=args.artifacts,
                              tune_first=not args.no_tune, trials_per_task=args.trials, measure=False,
                              seed_from=args.seed_from, reseed=args.reseed)
                tuning[c.name] = read_metadata(folder)["tuning"]
                folders[column[c.name]] = folder
                print(f"{arch.id} for {c.name}: built in {time.time() - t0:.0f} s, "
                      f"{tuning[c.name]['tuned_workloads']}/{tuning[c.name]['total_workloads']} tuned",
                      flush=True)
            x = np.random.default_rng(0).standard_normal((1, 3, res, res)).astype("float32")
            with tempfile.TemporaryDirectory() as tmp:
                onnx_path = export_onnx(module, x, tmp)
                loads = [interleaved(runners(module, x, folders, args.threads, onnx_path),
                                     args.rounds, args.repeats) for _ in range(args.loads)]
            med = pooled_median(loads)
            rows.append((name, res, arch.id, tuning, med,
                         {c: paired_ratio(loads, c) for c in folders}))
            print("  " + "  ".join(f"{k} {v:.2f} ms" for k, v in med.items()), flush=True)
    trials = cfg.tuning["trials_per_task"] if args.trials is None else args.trials
    tuned = "no new tuning" if args.no_tune else f"{trials} trials per task"
    if args.seed_from and not args.no_tune:
        tuned += (f" after seeding from {args.seed_from}'s records timed here"
                  + (" beside this CPU's own, every workload" if args.reseed else ""))
    lines = [
        "## Runtime comparison (batch 1, fp32)",
        "",
        f"`{' '.join(['python', 'bench/bench_runtime.py'] + [shlex.quote(a) for a in (argv or sys.argv[1:])])}`"
        f" on {prov.get('cpu')} ({os.uname().machine}), {args.threads} threads for every runtime, "
        f"TVM {tvm.__version__}, supernet: {source}; medians of {args.rounds} interleaved rounds of "
        f"{args.repeats} calls (each turn after {SETTLE_S} s idle and one untimed call) in each of {args.loads} fresh loads of every runtime; TVM tuned with {tuned} "
        f"(coverage per row); load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
        "",
    ] + table_rows(rows, [column[c.name] for c in cfgs], [c.name for c in cfgs])
    write_table(Path(args.out), "\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
