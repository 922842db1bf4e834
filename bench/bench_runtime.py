#!/usr/bin/env python
"""Runtime comparison on this CPU: PyTorch eager, ONNX Runtime, OpenVINO and the tvm-ofa
artifact, batch 1, fp32, each runtime **in its own process**.

Rows: the benchmark subnets (smallest, middle and largest at each ``--resolutions``), any
``--arch`` files (say the winners ``tvm-ofa specialize`` picked), and ``--random N`` subnets drawn
from the whole space (every resolution of it), which is what a search hands a user.

Protocol: every runtime is loaded in a worker process of its own (one thread pool per process:
several runtimes' pools in one process slowed ONNX Runtime about 2x and flattered the artifact),
with the same thread count. The parent runs one round at a time: each worker in turn, the order
rotated every round, after ``SETTLE_S`` idle and one untimed call, times ``--repeats`` calls and
reports their median; only one runtime runs at any moment. Every runtime is loaded afresh
``--loads`` times; the table shows the median of all round medians and, per TVM column, its
time over ONNX Runtime's round by round. The TVM artifact is built with
``tvm_ofa.compiler.pipeline.emit``, which first tunes what the target's records lack (``--trials``
per task) unless ``--no-tune``. Every row is built before the first is timed, so the timings run
back to back on an otherwise idle machine. The table goes into ``--out`` between markers, with the command,
the CPU, the date and the trial budget.

    python bench/bench_runtime.py --no-tune --target host-cpu-prepack --random 20 --out docs/BENCHMARKS.md
    python bench/bench_runtime.py --no-tune --subnets smallest --resolutions 160 --out /tmp/b.md
    python bench/bench_runtime.py --arch winner1.json winner2.json --checkpoint tvm_ofa/assets/supernet.pt
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



def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", nargs="+", default=["host-cpu"],
                   help="target configs; one TVM column each (they must run on this machine)")
    p.add_argument("--checkpoint", help="supernet checkpoint (default: the embedded one)")
    p.add_argument("--subnets", nargs="*", default=["smallest", "middle", "largest"],
                   choices=["smallest", "middle", "largest"],
                   help="benchmark rows at each --resolutions (none: only --arch and --random rows)")
    p.add_argument("--resolutions", nargs="+", type=int, default=[160, 224])
    p.add_argument("--arch", nargs="+", default=[], metavar="JSON",
                   help="more rows: subnets from arch files (e.g. the winners `tvm-ofa specialize` wrote)")
    p.add_argument("--random", type=int, default=0, metavar="N",
                   help="more rows: N subnets drawn at random from the whole space, every resolution of it")
    p.add_argument("--seed", type=int, default=0, help="seed of --random")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=20, help="timed calls per runtime and round")
    p.add_argument("--loads", type=int, default=2, help="times every runtime is loaded afresh (ONNX "
                   "Runtime and OpenVINO sessions, TVM libraries), each load timed over --rounds; one "
                   "slow load of a library then no longer decides its row")
    p.add_argument("--trials", type=int, help="trials per task (default: the target's)")
    p.add_argument("--no-tune", action="store_true", help="build with the records there are")
    p.add_argument("--seed-from", nargs="+", metavar="CPU", help="before tuning, time another CPU's "
                   "records of each target here (its folder beside this machine's) where this one has "
                   "none: one CPU for every target, or one per --target in its order ('-': none)")
    p.add_argument("--reseed", action="store_true", help="with --seed-from: every workload, tuned here "
                   "or not, its best records from both folders timed side by side here")
    p.add_argument("--log-root", default="tuning_logs")
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--out", default="docs/BENCHMARKS.md")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one runtime's process
    return p.parse_args(argv)


def subnet(space, name: str, resolution: int):
    """``space.smallest``, ``space.middle`` or ``space.largest`` at ``resolution``."""
    return getattr(space, name)(resolution)


ORT = "ONNX Runtime"  # the column the bar compares with
TORCH, OPENVINO = "PyTorch eager", "OpenVINO"
SETTLE_S = 0.3  # idle before each runtime's turn: the one before may leave pool threads busy


def _load_runtime(spec: dict):
    """In a worker process: load one runtime and return a zero-argument inference callable."""
    import numpy as np

    x = np.load(spec["input"])
    threads = int(spec["threads"])
    kind = spec["runtime"]
    if kind == TORCH:
        import torch

        torch.set_num_threads(threads)
        torch.set_flush_denormal(True)
        from tvm_ofa.arch import ArchConfig

        net, _ = build_net(spec["checkpoint"], spec["resolutions"])
        module = net.extract(ArchConfig.from_dict(spec["arch"])).eval()
        xt = torch.from_numpy(x)

        def run():
            with torch.no_grad():
                return module(xt).numpy()
        return run
    if kind == ORT:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        # spinning pool threads would keep a core busy after the turn, into the next runtime's
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sess = ort.InferenceSession(spec["onnx"], so, providers=["CPUExecutionProvider"])
        return lambda: sess.run(None, {"x": x})[0]
    if kind == OPENVINO:
        import openvino as ov

        # fp32 like the others: on CPUs with AMX or AVX512-BF16 OpenVINO's default precision is bf16
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
        req = ov.Core().compile_model(spec["onnx"], "CPU", config).create_infer_request()
        return lambda: next(iter(req.infer({0: x}).values()))
    from tvm_ofa import load_artifact

    art = load_artifact(spec["artifact"], threads=threads)
    return lambda: art(x)


def worker(spec_path: str) -> int:
    """A worker process: load the runtime its spec names, write one output for the check, then
    time one round per ``round REPEATS`` line on stdin (printing the round's median ms)."""
    import json

    import numpy as np

    spec = json.loads(Path(spec_path).read_text())
    run = _load_runtime(spec)
    for _ in range(3):
        out = run()
    np.save(spec["output"], np.asarray(out))
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] != "round":
            break
        time.sleep(SETTLE_S)
        run()  # the first call after the pause wakes the runtime's threads; not timed
        ts = []
        for _ in range(int(cmd[1])):
            t0 = time.perf_counter()
            run()
            ts.append((time.perf_counter() - t0) * 1e3)
        print(f"{statistics.median(ts):.6f}", flush=True)
    return 0


class Worker:
    """The parent's handle on one runtime's worker process."""

    def __init__(self, name: str, spec: dict, tmp: str):
        import json
        import subprocess

        self.name = name
        spec_path = os.path.join(tmp, f"spec-{len(os.listdir(tmp))}.json")
        self.output = spec_path.replace(".json", ".npy")
        Path(spec_path).write_text(json.dumps({**spec, "output": self.output}))
        env = {**os.environ, "TVM_NUM_THREADS": str(spec["threads"]), "OMP_NUM_THREADS": str(spec["threads"])}
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", spec_path], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"{name}: its worker failed to load (exit {self.proc.wait()})")

    def round(self, repeats: int) -> float:
        self.proc.stdin.write(f"round {repeats}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def timed_load(specs: dict, rounds: int, repeats: int, tmp: str, reference) -> dict[str, list[float]]:
    """One fresh load of every runtime, each in its own process: name -> each round's median ms.
    The order of the runtimes rotates every round; an output that differs from ``reference`` by
    more than 1e-3 stops the benchmark."""
    import numpy as np

    workers = []
    try:
        for name, spec in specs.items():
            w = Worker(name, spec, tmp)
            workers.append(w)
            err = float(np.abs(np.load(w.output).reshape(reference.shape) - reference).max())
            if err > 1e-3:
                raise SystemExit(f"{name} output differs from PyTorch by {err}")
        per = {w.name: [] for w in workers}
        for r in range(rounds):
            k = r % len(workers)
            for w in workers[k:] + workers[:k]:
                per[w.name].append(w.round(repeats))
        return per
    finally:
        for w in workers:
            w.close()


def build_net(checkpoint: str | None, resolutions: list[int]):
    """The supernet the rows come from, and a description of it: ``checkpoint`` (or the embedded
    one); where that space lacks one of ``resolutions``, the untrained ImageNet-shaped supernet with
    seeded random parameters (latency does not depend on the weights). Deterministic, so that
    every worker process rebuilds the same network."""
    from tvm_ofa.cli._common import load_model, untrained_supernet

    net, source = load_model(argparse.Namespace(checkpoint=checkpoint))
    outside = [r for r in resolutions if r not in net.space.resolutions]
    if outside and checkpoint:
        raise SystemExit(f"{checkpoint}: its space has no resolution {outside} "
                         f"(it has {list(net.space.resolutions)}); pass --resolutions from those")
    if outside:
        # the embedded checkpoint is a small-image supernet (32-48 px): runtime at the sizes
        # deployment cares about is measured on the ImageNet-shaped space instead
        net, source = untrained_supernet(), "untrained"
    if checkpoint is None and str(source).startswith("untrained"):
        realistic_init_(net)
        source = (f"untrained {net.n_classes}-class supernet (space {min(net.space.resolutions)}-"
                  f"{max(net.space.resolutions)} px), parameters re-initialized at random (seed 0) "
                  "for realistic activations")
    return net.eval(), source


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


def write_table(path: Path, block: str, cpu: str) -> None:
    """Put ``block`` between ``cpu``'s markers in ``path`` (replacing that CPU's last table, or
    appended): each CPU keeps its own table."""
    start, end = f"<!-- bench_runtime:{cpu}:start -->", f"<!-- bench_runtime:{cpu}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{start}\n{block}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def rows_to_time(args, space) -> list[tuple[str, object]]:
    """``(row name, arch)``: the benchmark subnets, the ``--arch`` files, then ``--random`` draws."""
    import numpy as np

    from tvm_ofa.arch import ArchConfig

    rows = [(name, space.validate(subnet(space, name, res))) for res in args.resolutions for name in args.subnets]
    rows += [(Path(f).stem, space.validate(ArchConfig.from_json(Path(f).read_text()))) for f in args.arch]
    rng = np.random.default_rng(args.seed)
    rows += [("random", space.sample(rng)) for _ in range(args.random)]
    return rows


def main(argv=None) -> int:
    import datetime

    import numpy as np
    import tvm

    from tvm_ofa.compiler.artifact import read_metadata
    from tvm_ofa.compiler.pipeline import emit
    from tvm_ofa.nn.export import export_onnx
    from tvm_ofa.predict.calibrate import choose_lowering
    from tvm_ofa.targets import host_provenance, load_target

    args = parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.seed_from and len(args.seed_from) not in (1, len(args.target)):
        raise SystemExit(f"--seed-from: {len(args.seed_from)} CPUs for {len(args.target)} targets: give one, "
                         "or one per --target")
    net, source = build_net(args.checkpoint, args.resolutions)
    match = {"space": net.space, "n_classes": net.n_classes, "width_mult": net.width_mult,
             "stem_stride": net.stem_stride}
    # host-cpu builds with the lowering a compile of this network would use
    cfgs = [choose_lowering(load_target(t), match, args.log_root)[0] for t in args.target]
    # the CPU closest to this one differs per lowering (only some CPUs have records of each)
    seeds = args.seed_from or ["-"]
    if len(seeds) == 1:
        seeds = seeds * len(cfgs)
    seed_of = {c.name: None if s == "-" else s for c, s in zip(cfgs, seeds)}
    cfg = cfgs[0]
    # one TVM column per target, named after it: a lone "TVM" column hid which lowering it timed
    column = {c.name: f"tvm-ofa ({c.name})" for c in cfgs}
    prov = host_provenance(cfg)
    # every row is built before any is timed: the timings then run back to back, on a machine
    # that nothing else (a build, a neighbour schedule being timed) keeps busy
    built = []
    for name, arch in rows_to_time(args, net.space):
        module = net.extract(arch).eval()
        folders, tuning = {}, {}
        for c in cfgs:
            t0 = time.time()
            folder = emit(c, arch, module, log_root=args.log_root, out_root=args.artifacts,
                          tune_first=not args.no_tune, trials_per_task=args.trials, measure=False,
                          seed_from=seed_of[c.name], reseed=args.reseed)
            tuning[c.name] = read_metadata(folder)["tuning"]
            folders[column[c.name]] = folder
            print(f"{arch.id} for {c.name}: built in {time.time() - t0:.0f} s, "
                  f"{tuning[c.name]['tuned_workloads']}/{tuning[c.name]['total_workloads']} tuned",
                  file=sys.stderr, flush=True)
        built.append((name, arch, module, folders, tuning))
    print(f"timing {len(built)} rows", file=sys.stderr, flush=True)
    rows = []
    for name, arch, module, folders, tuning in built:
        res = arch.resolution
        x = np.random.default_rng(0).standard_normal((1, 3, res, res)).astype("float32")
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = str(export_onnx(module, x.shape, os.path.join(tmp, "model.onnx")))
            np.save(os.path.join(tmp, "x.npy"), x)
            common = {"input": os.path.join(tmp, "x.npy"), "threads": args.threads, "onnx": onnx_path,
                      "checkpoint": args.checkpoint, "resolutions": args.resolutions, "arch": arch.to_dict()}
            specs = {TORCH: {**common, "runtime": TORCH}, ORT: {**common, "runtime": ORT},
                     OPENVINO: {**common, "runtime": OPENVINO},
                     **{col: {**common, "runtime": "tvm", "artifact": str(d)} for col, d in folders.items()}}
            import torch

            with torch.no_grad():
                reference = module(torch.from_numpy(x)).numpy()
            loads = [timed_load(specs, args.rounds, args.repeats, tmp, reference) for _ in range(args.loads)]
        med = pooled_median(loads)
        rows.append((name, res, arch.id, tuning, med, {c: paired_ratio(loads, c) for c in folders}))
        print(f"{arch.id}: " + "  ".join(f"{k} {v:.2f} ms" for k, v in med.items()), file=sys.stderr, flush=True)
    trials = cfg.tuning["trials_per_task"] if args.trials is None else args.trials
    tuned = "no new tuning" if args.no_tune else f"{trials} trials per task"
    if any(seed_of.values()) and not args.no_tune:
        tuned += (" after seeding from " + ", ".join(f"{v}'s records ({k})" for k, v in seed_of.items() if v)
                  + " timed here"
                  + (" beside this CPU's own, every workload" if args.reseed else ""))
    ratios = {c: [r[4][c] / r[4][ORT] for r in rows] for c in column.values()}
    summary = [f"- {c}: median {statistics.median(v):.2f}x ONNX Runtime's time over {len(v)} rows, "
               f"{min(v):.2f}-{max(v):.2f}x; at most 1.0x on {sum(x <= 1 for x in v)} rows"
               + "".join(f"; {other}: {min(w):.2f}-{max(w):.2f}x (median {statistics.median(w):.2f}x)"
                         for other in (OPENVINO, TORCH)
                         if (w := [r[4][c] / r[4][other] for r in rows]))
               + (f"; random rows: median {statistics.median(rnd):.2f}x ONNX Runtime's"
                  if (rnd := [r[4][c] / r[4][ORT] for r in rows if r[0] == "random"]) else "")
               for c, v in ratios.items() if v]
    lines = [
        f"### Runtime comparison on {prov.get('cpu')} (batch 1, fp32, one process per runtime)",
        "",
        f"`{' '.join(['python', 'bench/bench_runtime.py'] + [shlex.quote(a) for a in (argv or sys.argv[1:])])}`"
        f" on {datetime.date.today()}, {prov.get('cpu')} ({os.uname().machine}), {args.threads} threads for "
        f"every runtime, TVM {tvm.__version__}, supernet: {source}; each runtime in its own process, "
        f"medians of {args.rounds} rounds of {args.repeats} calls (one runtime at a time, order rotated "
        f"every round, each turn after {SETTLE_S} s idle and one untimed call) in each of {args.loads} "
        f"fresh loads; TVM tuned with {tuned} (coverage per row); load average "
        f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}.",
        "",
    ] + table_rows(rows, [column[c.name] for c in cfgs], [c.name for c in cfgs]) + [""] + summary
    write_table(Path(args.out), "\n".join(lines), str(prov.get("cpu")))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
