"""Import the official once-for-all package as a test oracle, with stand-ins for torchvision (it
imports torchvision's transforms at import time; no CPU build of torchvision exists here)."""
from __future__ import annotations

import sys
import types


def import_official_ofa():
    """Return once-for-all's ``OFAMobileNetV3`` class, or None when the ``ofa`` package is absent."""
    if "torchvision" not in sys.modules:
        try:
            import torchvision  # noqa: F401
        except ImportError:
            _install_torchvision_standin()
    try:
        from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
    except ImportError:
        return None
    return OFAMobileNetV3


def _install_torchvision_standin() -> None:
    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    datasets = types.ModuleType("torchvision.datasets")
    for name in ("RandomResizedCrop", "Compose", "ToTensor", "Normalize", "Resize", "CenterCrop",
                 "RandomHorizontalFlip", "ColorJitter"):
        setattr(transforms, name, type(name, (object,), {}))
    functional.InterpolationMode = type("InterpolationMode", (object,), {"BILINEAR": 2})
    datasets.ImageFolder = object
    transforms.functional, tv.transforms, tv.datasets = functional, transforms, datasets
    sys.modules.update({"torchvision": tv, "torchvision.transforms": transforms,
                        "torchvision.transforms.functional": functional, "torchvision.datasets": datasets})
