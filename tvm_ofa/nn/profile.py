"""Layer shapes, MACs and parameter counts of a subnet, computed from its ``ArchConfig`` alone
(no module is built), so that searches and predictors can call them at high rates."""
from __future__ import annotations

from dataclasses import dataclass

from tvm_ofa.arch import ArchConfig
from tvm_ofa.nn.ofa_mbv3 import conv_size_out, subnet_geometry


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
        return conv_size_out(self.size_in, self.stride)

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
    geo = subnet_geometry(arch, width_mult, n_classes, stem_stride, se_reduction)
    lay = geo.layout
    layers = [Layer("stem", "conv", 3, lay.stem, 3, stem_stride, arch.resolution, "h_swish")]
    for b in geo.blocks:
        if b.expand:
            layers.append(Layer(f"{b.name}.expand", "conv", b.cin, b.mid, 1, 1, b.size_in, b.act))
        layers.append(Layer(f"{b.name}.depthwise", "dwconv", b.mid, b.mid, b.kernel, b.stride, b.size_in, b.act))
        if b.se_mid is not None:
            layers.append(Layer(f"{b.name}.se.reduce", "se_reduce", b.mid, b.se_mid, 1, 1, 1, "relu", True))
            layers.append(Layer(f"{b.name}.se.expand", "se_expand", b.se_mid, b.mid, 1, 1, 1, "h_sigmoid", True))
        layers.append(Layer(f"{b.name}.project", "conv", b.mid, b.cout, 1, 1, b.size_out))
    layers.append(Layer("final_expand", "conv", lay.stages[-1], lay.final_expand, 1, 1, geo.head_size, "h_swish"))
    layers.append(Layer("feature_mix", "conv", lay.final_expand, lay.feature_mix, 1, 1, 1, "h_swish"))
    layers.append(Layer("classifier", "linear", lay.feature_mix, n_classes, 1, 1, 1, None, True))
    return layers


def count_macs(arch: ArchConfig, width_mult: float = 1.0, n_classes: int = 1000, stem_stride: int = 2) -> int:
    """Multiply-accumulates of one image through ``arch`` (convolutions and linear layers)."""
    return sum(layer.macs for layer in subnet_layers(arch, width_mult, n_classes, stem_stride))


def count_params(arch: ArchConfig, width_mult: float = 1.0, n_classes: int = 1000, stem_stride: int = 2) -> int:
    """Parameters of the extracted subnet, batch-norm affine parameters included."""
    layers = subnet_layers(arch, width_mult, n_classes, stem_stride)
    bn = sum(2 * layer.cout for layer in layers if layer.kind in ("conv", "dwconv") and layer.name != "feature_mix")
    return sum(layer.params for layer in layers) + bn
