"""``tvm-ofa train``: progressive shrinking of the supernet."""
from __future__ import annotations

import argparse

HELP = "train the supernet by progressive shrinking (resumable; torchrun for several processes)"
DESCRIPTION = """Train the elastic supernet by progressive shrinking with knowledge distillation:
the largest network first, then elastic kernel (7 -> 5 -> 3), depth (4 -> 3 -> 2) and expand
ratio (6 -> 4 -> 3). Progress is written to OUT_DIR every few steps; rerun the same command to
resume.

examples:
  tvm-ofa train --config configs/fmnist.yaml
  torchrun --nproc_per_node 2 -m tvm_ofa.cli train --config configs/fmnist.yaml   # data parallel"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="YAML", help="training config (see configs/fmnist.yaml)")
    parser.add_argument("--out-dir", help="override the config's out_dir")
    parser.add_argument("--device", help="cpu, cuda or auto (default from the config)")


def run(args: argparse.Namespace) -> int:
    import os

    from tqdm import tqdm

    from tvm_ofa.train.config import load_train_config
    from tvm_ofa.train.shrink import train_supernet

    cfg = load_train_config(args.config, out_dir=args.out_dir, device=args.device)
    main = int(os.environ.get("RANK", "0")) == 0
    bars: dict[int, tqdm] = {}

    def progress(event: dict) -> None:
        if event["event"] == "step":
            bar = bars.get(event["phase_index"])
            if bar is None:
                for old in bars.values():
                    old.close()
                bar = bars[event["phase_index"]] = tqdm(
                    total=event["total"], initial=event["done"] - 1, unit="step",
                    desc=f"phase {event['phase_index'] + 1}/{event['n_phases']} {event['phase']}")
            bar.update(event["done"] - bar.n)
            bar.set_postfix(loss=f"{event['loss']:.3f}", acc=f"{event['acc']:.3f}", res=event["resolution"])
        else:
            accs = ", ".join(f"{k[8:]} {v:.3f}" for k, v in event.items() if k.startswith("val_acc_"))
            tqdm.write(f"phase {event['phase']} (stage {event['stage']}) done: val accuracy {accs}")

    path = train_supernet(cfg, progress if main else None).path
    for bar in bars.values():
        bar.close()
    if main:
        print(f"supernet written to {path}")
    return 0
