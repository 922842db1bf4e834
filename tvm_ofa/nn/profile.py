"""Layer shapes, MACs and parameter counts of a subnet, computed from its ``ArchConfig`` alone
(no module is built), so that searches and predictors can call them at high rates."""
from __future__ import annotations

from dataclasses import dataclass

from tvm_ofa.arch import ArchConfig
from tvm_ofa.nn.elastic import make_divisible
from tvm_ofa.nn.ofa_mbv3 import STAGE_ACTS, STAGE_SE, STAGE_STRIDES, StageLayout


@dataclass(frozen=True)
class Layer:
    """One convolution or linear layer as it runs: ``kind`` is ``conv`` (dense), ``dwconv``
    (depthwise), ``se_reduce``/``se_expand`` (1x1 on a pooled vector) or ``linear``."""

    name: str
    kind: str
    cin: int
    cout: int
    kernel: int
    stride: int
    size_in: int
    act: str | None = None
    bias: bool = False

    @property
    def size_out(self) -> int:
        return (self.size_in - 1) // self.stride + 1

    @property
    def groups(self) -> int:
        return self.cin if self.kind == "dwconv" else 1

    @property
    def macs(self) -> int:
        return self.size_out**2 * self.cout * (self.cin // self.groups) * self.kernel**2

    @property
    def params(self) -> int:
        return self.cout * (self.cin // self.groups) * self.kernel**2 + (self.cout if self.bias else 0)


def subnet_layers(arch: ArchConfig, width_mult: float = 1.0, n_classes: int = 1000,
                  stem_stride: int = 2, se_reduction: int = 4) -> list[Layer]:
    """The convolutions and linear layers of ``arch`` in execution order (BN and activations are
    folded into the layer they follow)."""
    layout = StageLayout.for_width(width_mult)
    size = arch.resolution
    layers = [Layer("stem", "conv", 3, layout.stem, 3, stem_stride, size, "h_swish")]
    size = layers[-1].size_out
    layers.append(Layer("first.depthwise", "dwconv", layout.stem, layout.stem, 3, 1, size, "relu"))
    layers.append(Layer("first.project", "conv", layout.stem, layout.first_block, 1, 1, size))
    cin = layout.first_block
    for stage, idx in enumerate(arch.stage_blocks()):
        act = STAGE_ACTS[stage]
        for j, i in enumerate(idx):
            cout, stride = layout.stages[stage], STAGE_STRIDES[stage] if j == 0 else 1
            mid = make_divisible(round(cin * arch.e[i]))
            name = f"blocks.{i}"
            layers.append(Layer(f"{name}.expand", "conv", cin, mid, 1, 1, size, act))
            layers.append(Layer(f"{name}.depthwise", "dwconv", mid, mid, arch.ks[i], stride, size, act))
            size = layers[-1].size_out
            if STAGE_SE[stage]:
                se_mid = make_divisible(mid // se_reduction)
                layers.append(Layer(f"{name}.se.reduce", "se_reduce", mid, se_mid, 1, 1, 1, "relu", True))
                layers.append(Layer(f"{name}.se.expand", "se_expand", se_mid, mid, 1, 1, 1, "h_sigmoid", True))
            layers.append(Layer(f"{name}.project", "conv", mid, cout, 1, 1, size))
            cin = cout
    layers.append(Layer("final_expand", "conv", cin, layout.final_expand, 1, 1, size, "h_swish"))
    layers.append(Layer("feature_mix", "conv", layout.final_expand, layout.feature_mix, 1, 1, 1, "h_swish"))
    layers.append(Layer("classifier", "linear", layout.feature_mix, n_classes, 1, 1, 1, None, True))
    return layers


def count_macs(arch: ArchConfig, width_mult: float = 1.0, n_classes: int = 1000, stem_stride: int = 2) -> int:
    """Multiply-accumulates of one image through ``arch`` (convolutions and linear layers)."""
    return sum(layer.macs for layer in subnet_layers(arch, width_mult, n_classes, stem_stride))


def count_params(arch: ArchConfig, width_mult: float = 1.0, n_classes: int = 1000, stem_stride: int = 2) -> int:
    """Parameters of the extracted subnet, batch-norm affine parameters included."""
    layers = subnet_layers(arch, width_mult, n_classes, stem_stride)
    bn = sum(2 * layer.cout for layer in layers if layer.kind in ("conv", "dwconv") and layer.name != "feature_mix")
    return sum(layer.params for layer in layers) + bn
