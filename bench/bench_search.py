#!/usr/bin/env python
"""Predictor evaluations per second of the searches, end to end, on the default space.

Latency: the host-cpu XGBoost predictor if one is fitted in tuning_logs/host-cpu/<cpu>/, else an
XGBoost predictor fitted on synthetic per-workload latencies (same code path and cost; the
script says which). Accuracy: ``--accuracy-predictor JSON`` if given, else once-for-all's MLP
(3 x 400) from tvm_ofa.predict.accuracy with random weights (same cost as a fitted one). Appends
the figures, the command and the CPU to docs/BENCHMARKS.md (``--no-write`` to skip):

    python bench/bench_search.py [--generations 500] [--budgets 2 4 8]
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tvm_ofa.arch import SearchSpace  # noqa: E402
from tvm_ofa.search import best_under, evolution_search, nsga2_search  # noqa: E402


def latency_predictor(space: SearchSpace):
    from tvm_ofa.predict.latency import LatencyPredictorError, fit_predictor, load_predictor
    from tvm_ofa.targets import host_provenance, load_target

    cfg = load_target("host-cpu")
    prov = host_provenance(cfg)
    folder = cfg.log_dir(ROOT / "tuning_logs")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load_predictor(folder, prov), f"fitted XGBoost predictor ({folder})", prov
    except LatencyPredictorError:
        pass
    from tvm_ofa.predict.dataset import WorkloadDataset
    from tvm_ofa.predict.workloads import NetConfig, WorkloadTable

    wls = WorkloadTable(space, NetConfig()).workloads
    data = WorkloadDataset.from_latencies(wls, [1e-6 + 2 * w.macs / 5e9 for w in wls])
    return fit_predictor("xgboost", data, space=space), \
        "SYNTHETIC XGBoost predictor (no host-cpu predictor fitted; same cost, made-up latencies)", prov


def accuracy_fn(space: SearchSpace, path: str | None):
    from tvm_ofa.predict.accuracy import AccuracyPredictor

    if path:
        pred = AccuracyPredictor.load(path, space=space)
        return (lambda g: pred.predict(arrays=g)), f"accuracy predictor {path}"
    pred = AccuracyPredictor(space, "mlp")
    rng = np.random.default_rng(0)
    dims = [space.encoding_size, 400, 400, 400, 1]
    pred.model = {"base": 0.7,
                  "weights": [(rng.standard_normal((o, i)) * 0.02).astype(np.float32) for i, o in zip(dims, dims[1:])],
                  "biases": [np.zeros(o, np.float32) for o in dims[1:-1]] + [None]}
    return (lambda g: pred.predict(arrays=g)), "MLP accuracy predictor (3 x 400, random weights: speed only)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=500)
    ap.add_argument("--budgets", type=float, nargs="+")
    ap.add_argument("--accuracy-predictor")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    space = SearchSpace()
    lat_pred, lat_source, prov = latency_predictor(space)
    acc, acc_source = accuracy_fn(space, args.accuracy_predictor)
    lat = lambda g: lat_pred.predict(arrays=g)  # noqa: E731
    lat_pred.predict([space.smallest()])  # builds the table once, outside the timing
    lo = float(lat_pred.predict([space.smallest()])[0])
    hi = float(lat_pred.predict([space.largest()])[0])
    budgets = args.budgets or [round(lo + f * (hi - lo), 3) for f in (0.15, 0.35, 0.6)]

    rows = []
    res = evolution_search(lat, acc, budgets, space, generations=args.generations, seed=0)
    n = res.n_latency_evals + res.n_accuracy_evals
    rows.append((f"evolution, {len(budgets)} budgets, population 100, {args.generations} generations",
                 res.n_latency_evals, res.n_accuracy_evals, res.seconds, n / res.seconds))
    front = nsga2_search(lat, acc, space, generations=args.generations, max_latency_ms=max(budgets), seed=0)
    n2 = front.n_latency_evals + front.n_accuracy_evals
    rows.append((f"NSGA-II Pareto front, population 100, {args.generations} generations",
                 front.n_latency_evals, front.n_accuracy_evals, front.seconds, n2 / front.seconds))

    cpu = f"{prov.get('cpu')} ({platform.processor() or platform.machine()}), load average " \
          f"{', '.join(f'{x:.1f}' for x in __import__('os').getloadavg())}"
    cmd = "python bench/bench_search.py" + (f" --generations {args.generations}" if args.generations != 500 else "")
    print(f"latency:  {lat_source}")
    print(f"accuracy: {acc_source}")
    print(f"cpu:      {cpu}")
    print(f"budgets:  {', '.join(f'{b:g}' for b in budgets)} ms (floor {res.latency_floor_ms:.3f} ms)")
    for w, fw in zip(res.winners, [best_under(front, b) for b in budgets]):
        print(f"  {w.budget_ms:g} ms: evolution {w.accuracy:.4f} @ {w.latency_ms:.3f} ms, "
              f"Pareto pick {fw.accuracy:.4f} @ {fw.latency_ms:.3f} ms")
    lines = ["| search | latency evals | accuracy evals | seconds | evaluations / s |", "| --- | --- | --- | --- | --- |"]
    for name, nl, na, s, rate in rows:
        line = f"| {name} | {nl} | {na} | {s:.2f} | {rate:,.0f} |"
        lines.append(line)
    print("\n".join(lines))
    if not args.no_write:
        doc = ROOT / "docs" / "BENCHMARKS.md"
        text = doc.read_text() if doc.exists() else "# Benchmarks\n"
        text = text.rstrip("\n") + (
            f"\n\n## Search: predictor evaluations per second\n\n`{cmd}` on {cpu}, "
            f"{time.strftime('%Y-%m-%d')}. Latency: {lat_source}; accuracy: {acc_source}. "
            "An evaluation is one arch passed to one predictor (over-budget candidates included).\n\n"
            + "\n".join(lines) + "\n")
        doc.write_text(text)
        print(f"appended to {doc.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
