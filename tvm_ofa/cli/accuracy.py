"""``tvm-ofa accuracy``: measure subnets, fit and evaluate the accuracy predictor."""
from __future__ import annotations

import argparse
import time

from tvm_ofa.cli._common import Result

REPORTS = True
HELP = "measure subnet accuracies, fit and evaluate the accuracy predictor"
DESCRIPTION = """Accuracy predictor workflow:
  measure  sample subnets, recalibrate BN, evaluate on the validation split (appends to a JSONL
           file; a rerun skips subnets already measured)
  fit      fit an MLP and an XGBoost model, keep the better on held-out RMSE
  eval     held-out RMSE and Kendall tau of a fitted predictor on measured data

examples:
  tvm-ofa accuracy measure --checkpoint runs/fmnist/supernet.pt --n 1000 --out acc.jsonl
  tvm-ofa accuracy fit --data acc.jsonl --out accuracy_predictor.json
  tvm-ofa accuracy eval --predictor accuracy_predictor.json --data acc_test.jsonl"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="<action>")
    sub.required = True
    m = sub.add_parser("measure", help="measure subnet accuracies into a JSONL file")
    m.add_argument("--checkpoint", help="supernet checkpoint (default: the embedded one)")
    m.add_argument("--config", help="training config naming the dataset (default: the checkpoint's)")
    m.add_argument("--n", type=int, default=1000, help="subnets to sample (default 1000)")
    m.add_argument("--arch", nargs="+", metavar="ARCH",
                   help="measure these subnets instead of sampling (smallest, largest or arch JSON files)")
    m.add_argument("--split", choices=("val", "test"), default="val",
                   help="val: the images held out of the training split (default; what predictors are "
                        "fitted on); test: Fashion-MNIST's 10,000 test images, for final figures only")
    m.add_argument("--seed", type=int, default=0, help="seed of the sampled subnets (default 0)")
    m.add_argument("--out", required=True, help="JSONL file to append to")
    m.add_argument("--calib-batches", type=int, default=16,
                   help="training batches that recalibrate each subnet's batch norm (default 16, as every "
                        "library built from the checkpoint is recalibrated)")
    m.add_argument("--max-val-batches", type=int, help="evaluate on at most this many batches")
    f = sub.add_parser("fit", help="fit the predictor")
    f.add_argument("--data", required=True, nargs="+", help="JSONL file(s) from `measure`")
    f.add_argument("--checkpoint", help="supernet whose space the predictor covers (default: embedded)")
    f.add_argument("--out", required=True, help="predictor JSON to write")
    f.add_argument("--seed", type=int, default=0, help="seed of the folds and the models (default 0)")
    e = sub.add_parser("eval", help="evaluate a predictor on measured subnets")
    e.add_argument("--predictor", required=True, help="predictor JSON from `fit`")
    e.add_argument("--data", required=True, nargs="+", help="JSONL file(s) from `measure` to score it on")


def run(args: argparse.Namespace) -> int:
    return {"measure": _measure, "fit": _fit, "eval": _eval}[args.action](args)


def _records(paths):
    from tvm_ofa.predict.accuracy import read_records

    records, skipped = [], 0
    for p in paths:
        r, s = read_records(p)
        records += r
        skipped += s
    if skipped:
        import sys

        print(f"warning: skipped {skipped} unreadable line(s) in {', '.join(paths)}", file=sys.stderr)
    return records


def _measure(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from tvm_ofa.cli._common import load_model
    from tvm_ofa.predict.accuracy import measure_accuracies
    from tvm_ofa.train.config import load_train_config
    from tvm_ofa.train.shrink import load_datasets

    net, source = load_model(args)
    meta_cfg = {}
    if args.config is None and (args.checkpoint or source).endswith(".pt"):
        from tvm_ofa.nn.checkpoint import read_checkpoint

        meta_cfg = (read_checkpoint(args.checkpoint or source).get("meta") or {}).get("config") or {}
    keep = ("dataset", "image_size", "val_fraction", "seed", "batch_size")
    cfg = load_train_config(args.config, **{k: v for k, v in meta_cfg.items() if k in keep and args.config is None})
    train, val = load_datasets(cfg)
    if args.split == "test":
        from tvm_ofa.data import DatasetError, load_fashion_mnist

        if cfg.dataset != "fashion-mnist":
            raise DatasetError(f"--split test: {cfg.dataset} has no separate test split here")
        val = load_fashion_mnist("test")
    if args.arch:
        from tvm_ofa.cli._common import resolve_arch

        archs = [resolve_arch(a, net.space) for a in args.arch]
    else:
        archs = net.space.sample_many(args.n, args.seed)
    import hashlib

    ckpt_path = args.checkpoint or source
    digest = hashlib.sha256(open(ckpt_path, "rb").read()).hexdigest() if str(ckpt_path).endswith((".pt", ".pth")) \
        else None
    start = time.monotonic()
    with tqdm(total=len(archs), unit="subnet", desc="measuring") as bar:
        before = bar.n
        new = []
        for rec in measure_accuracies(net, archs, train, val, args.out, args.calib_batches,
                                      cfg.batch_size, "cpu", args.max_val_batches, checkpoint=digest):
            new.append(rec)
            bar.update(1)
            bar.set_postfix(last=f"{rec.accuracy:.3f}")
            if args.arch:
                bar.write(f"{rec.arch.id}: {rec.accuracy:.4f}")
        skipped = len(archs) - (bar.n - before)
    used = len(val) if args.max_val_batches is None else min(len(val), args.max_val_batches * cfg.batch_size)
    minutes = (time.monotonic() - start) / 60
    rate = f"; {len(new) / minutes:.1f} subnets/min" if new and minutes > 0 else ""
    print(f"{args.out}: measured {len(new)} subnets on {used} images of {val.name}{rate}; {skipped} already there")
    return Result({"out": args.out, "images": used, "split": val.name, "measured_now": len(new),
                   "subnets_per_minute": len(new) / minutes if new and minutes > 0 else None,
                   "already_there": skipped, "accuracies": {r.arch.id: r.accuracy for r in new}})


def _fit(args: argparse.Namespace) -> int:
    from tvm_ofa.cli._common import load_model
    from tvm_ofa.predict.accuracy import fit_best

    net, _ = load_model(args)
    records = _records(args.data)
    pred, scores = fit_best(records, net.space, seed=args.seed)
    pred.save(args.out, metrics=scores)
    print(f"{'model':<9} {'held-out RMSE (pts)':>20} {'Kendall tau':>12}")
    for kind, m in scores.items():
        mark = "  <- kept" if kind == pred.kind else ""
        print(f"{kind:<9} {m['rmse_pct']:>20.2f} {m['kendall_tau']:>12.3f}{mark}")
    print(f"fitted on {len(records)} subnets; wrote {args.out}")
    return Result({"out": args.out, "kept": pred.kind, "subnets": len(records), "held_out": scores})


def _eval(args: argparse.Namespace) -> int:
    import numpy as np

    from tvm_ofa.predict.accuracy import AccuracyPredictor, metrics

    pred = AccuracyPredictor.load(args.predictor)
    records = [r for r in _records(args.data) if pred.space.contains(r.arch)]
    m = metrics(pred.predict([r.arch for r in records]), np.array([r.accuracy for r in records]))
    print(f"{pred.kind} predictor on {m['n']} subnets: RMSE {m['rmse_pct']:.2f} pts, Kendall tau {m['kendall_tau']:.3f}")
    holdout = pred.info.get("metrics") or {}
    for kind, h in holdout.items():
        print(f"  fit-time held-out {kind}: RMSE {h['rmse_pct']:.2f} pts, tau {h['kendall_tau']:.3f}")
    return Result({"predictor": args.predictor, "kind": pred.kind, **m, "fit_time_held_out": holdout})
