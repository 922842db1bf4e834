"""``tvm-ofa demo``: the README's first command, the main job on the embedded default."""
from __future__ import annotations

import argparse

HELP = "run the main job on the embedded default (shipped checkpoint, tuning logs, predictors)"
DESCRIPTION = """Specialize the embedded supernet for this machine: three latency budgets spread
over the host's feasible range, each searched, tuned (reusing the shipped logs), built and
measured; then each emitted library classifies Fashion-MNIST's 10,000 test images through the TVM
runtime, so the measured accuracy stands beside the predicted one for every budget.

Parts that this checkout does not ship yet (a trained checkpoint, this CPU's latency predictor,
the accuracy predictor) are named with the command that creates them, and the demo does what it
can without them: it builds the smallest subnet with the logs there are and runs it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default="host-cpu", help="target config (default: host-cpu)")
    parser.add_argument("--trials", type=int, default=16,
                        help="tuning trials per task for workloads the shipped logs lack (default 16)")
    parser.add_argument("--out", default="artifacts", help="artifact root (default: artifacts)")
    parser.add_argument("--images", type=int, default=8, help="test images whose labels are shown (default 8)")
    parser.add_argument("--calibrate-minutes", type=float, default=4.0, metavar="MIN",
                        help="on a CPU the shipped logs never saw, calibrate for up to this long first "
                             "(default 4)")


def _test_split(dataset_name: str):
    """Fashion-MNIST's 10,000 test images, or None (with the reason printed) where it is missing."""
    from tvm_ofa.data import DatasetError, load_fashion_mnist

    if dataset_name != "fashion-mnist":
        print(f"  (the supernet was trained on {dataset_name}; using Fashion-MNIST inputs anyway)")
    try:
        return load_fashion_mnist("test")
    except DatasetError as err:
        print(f"  test images skipped: {err}")
        return None


def _classify(art, arch, test, n: int) -> None:
    """Show the library's answer for the first ``n`` test images."""
    import numpy as np

    from tvm_ofa.data import elastic_batches

    x, y, _ = next(elastic_batches(test.subset(np.arange(min(n, len(test)))), n, [arch.resolution], seed=0, augment=False,
                                   shuffle=False, drop_last=False))
    for i in range(len(y)):
        pred, label = int(art(x[i:i + 1].numpy())[0].argmax()), int(y[i])
        mark = "ok" if pred == label else f"(is {test.classes[label]})"
        print(f"  image {i:>2}: {test.classes[pred]:<12} {mark}")


def run(args: argparse.Namespace) -> int:

    from tvm_ofa.compiler.artifact import read_metadata
    from tvm_ofa.compiler.pipeline import emit
    from tvm_ofa.defaults import DEFAULT_CHECKPOINT, default_checkpoint
    from tvm_ofa.errors import TvmOfaError
    from tvm_ofa.nn.checkpoint import load_supernet, read_checkpoint
    from tvm_ofa.nn.profile import count_macs
    from tvm_ofa.targets import host_provenance, load_target

    cfg = load_target(args.target)
    prov = host_provenance(cfg)
    print(f"target      {cfg.name}: {prov.get('cpu')}, {prov.get('threads')} threads, TVM {prov.get('tvm_version')}")
    ckpt = default_checkpoint()
    if ckpt is None:
        import torch

        from tvm_ofa.nn.ofa_mbv3 import OFAMobileNetV3

        print(f"supernet    none shipped at {DEFAULT_CHECKPOINT} yet: using an UNTRAINED supernet "
              "(create one with `tvm-ofa train --config configs/fmnist-cpu.yaml`)")
        torch.manual_seed(0)
        net, dataset = OFAMobileNetV3(n_classes=10).eval(), "nothing (untrained)"
    else:
        net = load_supernet(ckpt)
        dataset = ((read_checkpoint(ckpt).get("meta") or {}).get("config") or {}).get("dataset", "?")
        print(f"supernet    {ckpt} (trained on {dataset}; {net.space.size():.1e} subnets)")

    missing = []
    lat = acc = None
    try:
        from tvm_ofa.cli._common import chosen_target, supernet_match
        from tvm_ofa.cli.calibrate import ensure_predictor

        cfg = chosen_target(cfg, supernet_match(net), None)
        lat = ensure_predictor(cfg, None, args.calibrate_minutes, supernet_match(net))
    except TvmOfaError as err:
        missing.append(f"latency predictor: {err}")
    if ckpt is not None:
        from tvm_ofa.predict.accuracy import AccuracyPredictor

        try:
            acc = AccuracyPredictor.load(ckpt.with_name("accuracy_predictor.json"), space=net.space)
        except TvmOfaError as err:
            missing.append(f"accuracy predictor: {err}")
    else:
        missing.append("accuracy predictor: needs a trained checkpoint first")
    if lat is not None and lat.space != net.space:
        missing.append(f"latency predictor: {cfg.log_dir()} covers another search space than the supernet")
        lat = None

    if lat is not None and acc is not None:
        return _specialize(args, cfg, net, lat, acc, ckpt, dataset)

    print("\nnot shipped yet, so no search this time:")
    for m in missing:
        print(f"  - {m}")
    arch = net.space.smallest()
    print(f"\nbuilding the smallest subnet {arch.id} ({count_macs(arch, net.width_mult, net.n_classes, net.stem_stride) / 1e6:.1f} MMACs) "
          f"with the tuning records in {cfg.log_dir()}")
    from tvm_ofa.train.evaluate import subnet_extractor

    module = subnet_extractor(net, str(ckpt) if ckpt else None)(arch)
    folder = emit(cfg, arch, module, out_root=args.out, tune_first=False, repeats=30)
    meta = read_metadata(folder)
    t, lat_m = meta["tuning"], meta.get("latency")
    print(f"artifact    {folder}")
    print(f"tuning      {t['tuned_workloads']}/{t['total_workloads']} workloads tuned"
          + ("" if t["tuned_workloads"] else " (untuned: the library runs TVM's default schedules)"))
    if lat_m:
        print(f"latency     {lat_m.get('latency_ms') or lat_m['median_ms']:.3f} ms (fastest window over "
              f"{len(lat_m.get('loads_ms') or ()) or 1} loads; median {lat_m['median_ms']:.3f} ms, "
              f"{lat_m['threads']} threads)")
    test = _test_split(dataset)
    if test is not None:
        from tvm_ofa import load_artifact
        from tvm_ofa.train.evaluate import library_accuracy

        art = load_artifact(folder)
        print(f"\nclassifying with {folder}/model.so (loaded by the TVM runtime, no PyTorch):")
        _classify(art, arch, test, args.images)
        acc_m = library_accuracy(art, test, arch.resolution)
        print(f"  accuracy of the compiled library on the {len(test):,} test images: {acc_m:.2%}")
    return 0


def _specialize(args, cfg, net, lat, acc, ckpt, dataset) -> int:
    import numpy as np

    from tvm_ofa.arch import ArchConfig, archs_to_arrays
    from tvm_ofa.cli import specialize as spec_cli
    from tvm_ofa.search.budget import latency_floor

    floor, _ = latency_floor(net.space, lambda g: lat.predict(arrays=g), np.random.default_rng(0))
    top = float(lat.predict(arrays=archs_to_arrays([net.space.largest()]))[0])
    # spread over the feasible range, clear of its ends where the predictor has least support
    budgets = [round(floor + (top - floor) * f, 3) for f in (0.15, 0.45, 0.8)]
    print(f"feasible    {floor:.3f} .. {top:.3f} ms predicted; budgets {', '.join(map(str, budgets))} ms\n")
    results = spec_cli.specialize_and_report(args.target, budgets, checkpoint=str(ckpt), trials=args.trials,
                                             out=args.out, generations=200, calibrate_minutes=0)
    test = _test_split(dataset)
    if test is None:
        return 0
    from tvm_ofa import load_artifact
    from tvm_ofa.train.evaluate import library_accuracy

    print(f"\neach compiled library on the {len(test):,} Fashion-MNIST test images (model.so through the "
          "TVM runtime, no PyTorch):")
    print(f"  {'budget':>7} {'meas. ms':>9} {'pred. acc':>9} {'meas. acc':>9}  subnet")
    libraries = []
    for r in sorted((r for r in results if r.artifact), key=lambda r: r.budget_ms):
        arch = ArchConfig.from_dict(r.arch)
        art = load_artifact(r.artifact)
        libraries.append((art, arch))
        meas = "-" if r.measured_latency_ms is None else f"{r.measured_latency_ms:.3f}"
        print(f"  {r.budget_ms:>7g} {meas:>9} {100 * r.predicted_accuracy:>8.2f}% "
              f"{100 * library_accuracy(art, test, arch.resolution):>8.2f}%  {arch.id}")
    art, arch = libraries[-1]
    print(f"\nthe largest budget's library on the first {args.images} test images:")
    _classify(art, arch, test, args.images)
    return 0
