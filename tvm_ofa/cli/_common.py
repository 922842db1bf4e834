"""Arguments several verbs share: which supernet, which subnet."""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from typing import Any

ARCH_HELP = ("the subnet: an arch JSON file, an inline JSON object, or one of "
             "'smallest', 'largest', 'random[:SEED]'")


def add_model_arguments(parser: argparse.ArgumentParser, arch_required: bool = True,
                        arch_group: Any = None) -> None:
    """``--arch`` (into ``arch_group``, a required mutually exclusive group, where given),
    ``--checkpoint`` and ``--resolution``."""
    if arch_group is not None:
        arch_group.add_argument("--arch", metavar="ARCH", help=ARCH_HELP)
    else:
        parser.add_argument("--arch", required=arch_required, metavar="ARCH", help=ARCH_HELP)
    parser.add_argument("--checkpoint", metavar="FILE",
                        help="supernet checkpoint (tvm-ofa or official once-for-all format); "
                             "default: the embedded checkpoint")
    parser.add_argument("--resolution", type=int, help="override the arch's input resolution")


LOG_ROOT_HELP = ("root of the per-target tuning logs (default: $TVM_OFA_LOG_ROOT, else tuning_logs in the "
                 "user's data folder, ~/.local/share/tvm-ofa or $TVM_OFA_HOME, which starts as a copy of "
                 "the shipped logs: a run never changes what shipped)")


def load_model(args: argparse.Namespace) -> tuple[Any, str]:
    """The supernet named by ``--checkpoint`` (or the embedded default) and a description of it."""
    from tvm_ofa.defaults import default_checkpoint
    from tvm_ofa.nn.checkpoint import load_supernet

    path = args.checkpoint or default_checkpoint()
    if path is None:
        return untrained_supernet(), "untrained supernet (no checkpoint given or shipped)"
    return load_supernet(path), str(path)


def untrained_supernet() -> Any:
    """The ImageNet-shaped supernet (1000 classes, 128-224 px), seeded: shapes without weights."""
    import torch

    from tvm_ofa.nn.ofa_mbv3 import OFAMobileNetV3

    torch.manual_seed(0)
    return OFAMobileNetV3(n_classes=1000).eval()


def resolve_arch(spec: str, space: Any, resolution: int | None = None) -> Any:
    """Turn an ``--arch`` value into a validated ``ArchConfig`` of ``space``."""
    from tvm_ofa.arch import ArchConfig
    from tvm_ofa.errors import ArchError

    if spec == "smallest":
        arch = space.smallest()
    elif spec == "largest":
        arch = space.largest()
    elif spec.startswith("random"):
        seed = spec.partition(":")[2]
        if seed and not seed.isdigit():
            raise ArchError(f"--arch {spec}: the seed after 'random:' must be an integer")
        arch = space.sample(int(seed) if seed else None)
    else:
        arch = ArchConfig.from_json(spec)
    if resolution is not None:
        arch = ArchConfig(arch.ks, arch.e, arch.d, resolution=resolution)
    return space.validate(arch)


@dataclass
class Result:
    """What a reporting verb returns: its result (printed by ``--json``) and its exit status."""

    data: dict[str, Any] = field(default_factory=dict)
    status: int = 0


def add_network_args(parser: argparse.ArgumentParser, what: str) -> None:
    """``--n-classes`` / ``--resolutions``: which network's latency predictor, when a CPU's folder
    holds several (say the shipped 32-48 px supernet's and the paper's 128-224 px one)."""
    parser.add_argument("--n-classes", type=int, metavar="N", help=f"classifier outputs of {what}")
    parser.add_argument("--resolutions", type=int, nargs="+", metavar="PX", help=f"input resolutions of {what}")


def network_match(args: argparse.Namespace) -> dict[str, Any] | None:
    """The fields of :func:`add_network_args` that were given, for ``find_predictor``."""
    match = {k: v for k, v in (("n_classes", getattr(args, "n_classes", None)),
                               ("resolutions", getattr(args, "resolutions", None))) if v is not None}
    return match or None


def supernet_match(net: Any) -> dict[str, Any]:
    """What identifies a supernet's latency predictor: its space and the settings that change
    operator shapes."""
    return {"space": net.space, "n_classes": net.n_classes, "width_mult": net.width_mult,
            "stem_stride": net.stem_stride}


def chosen_target(cfg: Any, match: dict[str, Any] | None, log_root: str | None) -> Any:
    """:func:`tvm_ofa.predict.calibrate.choose_lowering` for the network ``match`` describes, its reason on
    stderr (the JSON on stdout stays clean)."""
    from tvm_ofa.predict.calibrate import choose_lowering

    chosen, why = choose_lowering(cfg, match, log_root)
    if why:
        print(f"lowering    {why}", file=sys.stderr)
    return chosen
