"""``tvm-ofa search``: the most accurate subnet under each latency budget on a target."""
from __future__ import annotations

import argparse
import sys
import json
import warnings
from pathlib import Path
from typing import Any

from tvm_ofa.cli._common import LOG_ROOT_HELP, add_network_args, network_match
from tvm_ofa.errors import TvmOfaError

REPORTS = True
HELP = "find the most accurate subnet under each latency budget on a target (evolution or Pareto)"
DESCRIPTION = """Search the subnet with the best predicted accuracy under each latency budget,
using the target's latency predictor (`tvm-ofa latency fit`) and an accuracy predictor
(`tvm-ofa accuracy fit`; by default the embedded supernet's).

  default   once-for-all's evolutionary search, all budgets in one run
  --pareto  NSGA-II: the whole accuracy/latency Pareto front, each budget's pick read off it

examples:
  tvm-ofa search --latency-ms 1 2 3        # the embedded supernet, its accuracy predictor, host-cpu
  tvm-ofa search --target targets/host-cpu.yaml --latency-ms 2 4 8 --accuracy-predictor acc.json
  tvm-ofa search --target host-cpu --latency-ms 3 --pareto --plot pareto.png --accuracy-predictor acc.json
  tvm-ofa search --target host-cpu --latency-ms 3 --accuracy-proxy macs   # no accuracy predictor yet"""


class SearchError(TvmOfaError):
    """A search that cannot start: missing predictor, bad arguments."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="host-cpu", metavar="YAML",
                        help="target config (a path or a shipped name; default: host-cpu)")
    parser.add_argument("--latency-ms", required=True, nargs="+", type=float, metavar="MS",
                        help="latency budget(s), milliseconds")
    add_network_args(parser, "the network to search, when the target's folder has predictors for several")
    parser.add_argument("--pareto", action="store_true", help="NSGA-II Pareto front instead of evolution")
    parser.add_argument("--accuracy-predictor", metavar="JSON",
                        help="predictor from `tvm-ofa accuracy fit` (default: the embedded supernet's, and "
                             "then that network's latency predictor)")
    parser.add_argument("--accuracy-proxy", choices=("macs",),
                        help="rank by MACs instead of predicted accuracy (no predictor needed; not an accuracy)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--population", type=int, default=100, help="population size (default 100)")
    parser.add_argument("--generations", type=int, default=500, help="generations (default 500)")
    parser.add_argument("--log-root", metavar="DIR", help=LOG_ROOT_HELP)
    parser.add_argument("--out", metavar="JSON", help="write winners (and the front) as JSON")
    parser.add_argument("--plot", metavar="PNG", help="plot the front, the winners and the budgets")


def _accuracy(args: argparse.Namespace, pred: Any) -> tuple[Any, str]:
    if args.accuracy_predictor and args.accuracy_proxy:
        raise SearchError("give either --accuracy-predictor or --accuracy-proxy, not both")
    if args.accuracy_predictor:
        from tvm_ofa.predict.accuracy import AccuracyPredictor

        acc = AccuracyPredictor.load(args.accuracy_predictor, space=pred.space)
        return (lambda genes: acc.predict(arrays=genes)), f"accuracy predictor {args.accuracy_predictor}"
    if args.accuracy_proxy == "macs":
        from tvm_ofa.search.proxies import macs_proxy

        return macs_proxy(pred.table), "MACs proxy (MMACs, NOT an accuracy)"
    raise SearchError("no accuracy predictor: create one with `tvm-ofa accuracy fit --data measured.jsonl "
                      "--out accuracy.json` and pass --accuracy-predictor accuracy.json "
                      "(or --accuracy-proxy macs to rank by MACs)")


def run(args: argparse.Namespace) -> int:
    from tvm_ofa.predict.latency import load_predictor
    from tvm_ofa.search import best_under, evolution_search, nsga2_search
    from tvm_ofa.search import population as pop
    from tvm_ofa.targets import host_provenance, load_target

    if args.population < 4 or args.generations < 0:
        raise SearchError("--population must be >= 4 and --generations >= 0")
    cfg = load_target(args.target)
    prov = host_provenance(cfg)
    match = network_match(args)
    if not args.accuracy_predictor and not args.accuracy_proxy:
        # as specialize does: the embedded supernet's accuracy predictor, and its network's latency predictor
        from tvm_ofa.cli._common import supernet_match
        from tvm_ofa.defaults import default_checkpoint
        from tvm_ofa.nn.checkpoint import load_supernet

        ckpt = default_checkpoint()
        if ckpt is not None and ckpt.with_name("accuracy_predictor.json").is_file():
            args.accuracy_predictor = str(ckpt.with_name("accuracy_predictor.json"))
            match = match or supernet_match(load_supernet(ckpt))
    from tvm_ofa.cli._common import chosen_target

    cfg = chosen_target(cfg, match, args.log_root)
    prov = host_provenance(cfg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = load_predictor(cfg.log_dir(args.log_root), prov, match)
    for w in caught:
        print(f"tvm-ofa search: warning: {w.message}", file=sys.stderr)
    acc_fn, acc_source = _accuracy(args, pred)
    lat_fn = lambda genes: pred.predict(arrays=genes)  # noqa: E731
    budgets = list(args.latency_ms)
    front = None
    if args.pareto:
        front = nsga2_search(lat_fn, acc_fn, pred.space, population_size=args.population,
                             generations=args.generations, max_latency_ms=max(budgets), seed=args.seed,
                             target=cfg.name)
        winners = [best_under(front, b, target=cfg.name) for b in budgets]
        stats = front
    else:
        res = evolution_search(lat_fn, acc_fn, budgets, pred.space, population_size=args.population,
                               generations=args.generations, seed=args.seed, target=cfg.name)
        winners, stats = res.winners, res
    evals = stats.n_latency_evals + stats.n_accuracy_evals
    proxy = args.accuracy_proxy is not None
    score = "MMACs (proxy)" if proxy else "pred. acc"

    print(f"target      {cfg.name} ({prov.get('cpu')})")
    print(f"ranked by   {acc_source}")
    print(f"search      {'NSGA-II Pareto front' if args.pareto else 'evolution'}, population "
          f"{args.population}, {args.generations} generations, seed {args.seed}")
    print(f"floor       {stats.latency_floor_ms:.3f} ms (fastest subnet predicted)")
    print(f"\n  {'budget ms':>9} {'pred. ms':>9} {score:>13}  subnet")
    for w in winners:
        value = f"{w.accuracy:.1f}" if proxy else f"{100 * w.accuracy:.2f}%"
        print(f"  {w.budget_ms:>9.3f} {w.latency_ms:>9.3f} {value:>13}  {w.arch.id}")
    print(f"\nevaluated   {evals} predictions in {stats.seconds:.2f} s "
          f"({evals / max(stats.seconds, 1e-9):,.0f} / s)")
    if front is not None:
        print(f"front       {len(front)} non-dominated subnets, {front.latency_ms.min():.3f}.."
              f"{front.latency_ms.max():.3f} ms")
    doc: dict[str, Any] = {
        "target": cfg.name, "cpu": prov.get("cpu"), "mode": "pareto" if args.pareto else "evolution",
        "ranked_by": acc_source, "seed": args.seed, "params": stats.params,
        "latency_floor_ms": stats.latency_floor_ms, "winners": [w.to_dict() for w in winners]}
    if front is not None:
        doc["front"] = [{"arch": a.to_dict(), "predicted_accuracy": float(x), "predicted_latency_ms": float(y)}
                        for a, x, y in zip(pop.to_archs(front.genes), front.accuracy, front.latency_ms)]
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote       {args.out}")
    if args.plot:
        from tvm_ofa.search.plot import plot_front

        plot_front(Path(args.plot), winners, budgets, front, "MMACs (proxy, not accuracy)" if proxy else
              "predicted accuracy")
        print(f"plot        {args.plot}")
    from tvm_ofa.cli._common import Result

    return Result(doc)
