"""``tvm-ofa specialize``: the main job. Best subnet per latency budget, as a measured library."""
from __future__ import annotations

import argparse
import sys
import hashlib
from pathlib import Path

from tvm_ofa.cli._common import LOG_ROOT_HELP
from tvm_ofa.errors import TvmOfaError

REPORTS = True
HELP = "search, tune, build and measure the best subnet for each latency budget on a target"
DESCRIPTION = """For each latency budget: search the subnet with the best predicted accuracy under
it (latency predictor of the target, accuracy predictor of the supernet), tune its missing
workloads (reusing the target's logs), build it, measure it, and retry with a tightened budget
when the measurement misses. Emits artifacts/<target>/<arch-id>/ per winner, prints a summary and
writes a Pareto plot. A rerun resumes: finished budgets are not redone.

examples:
  tvm-ofa specialize --target targets/host-cpu.yaml --latency-ms 2 4 8
  tvm-ofa specialize --target host-cpu --latency-ms 3 --checkpoint my.pt --accuracy-predictor acc.json"""


class SpecializeError(TvmOfaError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="host-cpu", metavar="YAML",
                        help="target config file or shipped name (default: host-cpu)")
    parser.add_argument("--latency-ms", required=True, nargs="+", type=float, metavar="MS", help="latency budget(s), milliseconds")
    parser.add_argument("--checkpoint", metavar="FILE", help="supernet (default: the embedded one)")
    parser.add_argument("--accuracy-predictor", metavar="JSON",
                        help="default: accuracy_predictor.json beside the checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the search (default 0)")
    parser.add_argument("--population", type=int, default=100, help="population size (default 100)")
    parser.add_argument("--generations", type=int, default=500, help="generations (default 500)")
    parser.add_argument("--max-attempts", type=int, default=3, help="searches per budget when measurements miss")
    parser.add_argument("--trials", type=int, metavar="N", help="tuning trials per task (default: the target's)")
    parser.add_argument("--log-root", metavar="DIR", help=LOG_ROOT_HELP)
    parser.add_argument("--out", default="artifacts", metavar="DIR", help="artifact root")
    parser.add_argument("--plot", metavar="PNG", help="default: <out>/<target>/pareto.png")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per measurement")
    parser.add_argument("--calibrate-minutes", type=float, default=5.0, metavar="MIN",
                        help="on a CPU without logs of its own, calibrate from the closest CPU's for up "
                             "to this long first (0: refuse instead; default 5)")


def _accuracy_path(accuracy_predictor: str | None, checkpoint: str) -> Path:
    if accuracy_predictor:
        return Path(accuracy_predictor)
    return Path(checkpoint).with_name("accuracy_predictor.json")


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes() if p.is_file() else str(p).encode())
    return h.hexdigest()[:16]


def run(args: argparse.Namespace) -> int:
    options = {k: v for k, v in vars(args).items() if k not in ("verb", "_run", "target", "latency_ms", "json")}
    results = specialize_and_report(args.target, args.latency_ms, **options)
    from tvm_ofa.cli import EXIT_MISSED
    from tvm_ofa.cli._common import Result

    return Result({"target": args.target, "results": [r.to_dict() for r in results]},
                  EXIT_MISSED if any(r.status == "missed" for r in results) else 0)


def specialize_and_report(target: str, latency_ms: list[float], *, checkpoint: str | None = None,
                          accuracy_predictor: str | None = None, seed: int = 0, population: int = 100,
                          generations: int = 500, max_attempts: int = 3, trials: int | None = None,
                          log_root: str | None = None, out: str = "artifacts", plot: str | None = None,
                          repeats: int = 50, calibrate_minutes: float = 5.0) -> list:
    """Specialize for each budget of ``latency_ms`` on ``target`` (the options as the CLI's flags),
    print the progress and the summary, return the results."""
    from tvm_ofa.cli._common import chosen_target, load_model, supernet_match
    from tvm_ofa.cli.calibrate import ensure_predictor
    from tvm_ofa.cli._compile_common import tqdm_progress
    from tvm_ofa.defaults import default_checkpoint
    from tvm_ofa.predict.accuracy import AccuracyPredictor
    from tvm_ofa.search import nsga2_search
    from tvm_ofa.search.evolution import Winner
    from tvm_ofa.search.plot import plot_front
    from tvm_ofa.search.specialize import specialize
    from tvm_ofa.targets import host_provenance, load_target
    from tvm_ofa.train.evaluate import subnet_extractor

    cfg = load_target(target)
    checkpoint = checkpoint or default_checkpoint()
    if checkpoint is None:
        raise SpecializeError("no supernet: pass --checkpoint (this checkout ships none yet; "
                              "`tvm-ofa train` makes one)")
    net, source = load_model(argparse.Namespace(checkpoint=str(checkpoint)))
    cfg = chosen_target(cfg, supernet_match(net), log_root)
    prov = host_provenance(cfg)
    log_dir = cfg.log_dir(log_root)
    lat = ensure_predictor(cfg, log_root, calibrate_minutes, supernet_match(net))
    acc_path = _accuracy_path(accuracy_predictor, source)
    acc = AccuracyPredictor.load(acc_path, space=net.space)
    fitted_for = acc.info.get("checkpoint")
    if fitted_for and Path(source).is_file():
        import hashlib

        if hashlib.sha256(Path(source).read_bytes()).hexdigest() != fitted_for:
            print(f"warning     {acc_path} was fitted on another checkpoint's measurements than {source}: its "
                  "accuracies describe that network (`tvm-ofa accuracy measure` and `fit` make one for this)",
                  file=sys.stderr)
    if lat.space != net.space:
        raise SpecializeError(f"{log_dir}: the latency predictor covers another search space than "
                              f"{source}; refit it with `tvm-ofa latency fit --target {cfg.name}`")
    print(f"target      {cfg.name} ({prov.get('cpu')}, {prov.get('threads')} threads)")
    print(f"supernet    {source}")
    print(f"predictors  latency {log_dir}, accuracy {acc_path} ({acc.kind})")
    events = {"search": "searching", "emit": "tuning + building", "resumed": "already done"}

    def progress(e: dict) -> None:
        if e["event"] == "measured":
            m = e["measured_latency_ms"]
            print(f"  {e['budget_ms']:g} ms: {e['arch_id']} predicted {e['predicted_latency_ms']:.3f} ms, "
                  f"measured {'-' if m is None else f'{m:.3f} ms'}")
        else:
            extra = f" (budget for the search {e['search_budget_ms']:.3f} ms, attempt {e['attempt']})" \
                if e["event"] == "search" and e["attempt"] > 1 else ""
            what = e.get("arch_id", "")
            print(f"  {e['budget_ms']:g} ms: {events[e['event']]} {what}{extra}")

    update, close = tqdm_progress()
    from tvm_ofa.predict.latency import find_predictor

    key = _digest([Path(source), acc_path, find_predictor(log_dir, supernet_match(net))]) + f"-s{seed}"
    try:
        results = specialize(cfg, net, lat, acc, latency_ms, out_root=out, log_root=log_root,
                             seed=seed, population_size=population, generations=generations,
                             max_attempts=max_attempts, trials_per_task=trials,
                             repeats=repeats, run_key=key, progress=progress, tune_progress=update,
                             extract=subnet_extractor(net, source))
    finally:
        close()
    print(f"\n  {'budget':>7} {'status':>8} {'pred. ms':>9} {'meas. ms':>9} {'p90 ms':>8} {'pred. acc':>9}  artifact")
    for r in results:
        meas = "-" if r.measured_latency_ms is None else f"{r.measured_latency_ms:.3f}"
        p90 = "-" if r.measured_p90_ms is None else f"{r.measured_p90_ms:.3f}"
        print(f"  {r.budget_ms:>7g} {r.status:>8} {r.predicted_latency_ms:>9.3f} {meas:>9} {p90:>8} "
              f"{100 * r.predicted_accuracy:>8.2f}%  {r.artifact}")
    missed = [r for r in results if r.status == "missed"]
    if missed:
        print(f"\n{len(missed)} budget(s) missed after {max_attempts} attempt(s): the measured "
              "latency is reported as is; more tuning (`--trials`) or a refit predictor may close the gap "
              "(exit status 3)")
    front = nsga2_search(lambda g: lat.predict(arrays=g), lambda g: acc.predict(arrays=g), net.space,
                         population_size=population, generations=min(generations, 150),
                         max_latency_ms=max(latency_ms) * 1.5, seed=seed, target=cfg.name)
    from tvm_ofa.arch import ArchConfig

    winners = [Winner(r.budget_ms, ArchConfig.from_dict(r.arch), r.predicted_accuracy, r.predicted_latency_ms)
               for r in results]
    plot_path = Path(plot or Path(out) / cfg.name / "pareto.png")
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    plot_front(plot_path, winners, list(latency_ms), front, "predicted accuracy",
               measured=[r.measured_latency_ms for r in results])
    print(f"plot        {plot_path}")
    return results
