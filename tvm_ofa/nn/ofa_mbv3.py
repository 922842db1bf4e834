"""The Once-for-All MobileNetV3 family in one file: the network described once as data (the
stage layout, the block slots, a subnet's :class:`Geometry`), the elastic supernet, and the static
subnet it extracts. The modules here, the MACs (``nn.profile``) and the compiler's workloads
(``predict.workloads``) all derive from that description.

Parameter names of ``OFAMobileNetV3`` equal the official once-for-all ``OFAMobileNetV3`` so its
checkpoints load unchanged; ``MobileNetV3Subnet`` is a plain module (``nn.Conv2d``,
``nn.BatchNorm2d``, ...) that ``torch.export`` and the TVM importer take as is.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tvm_ofa.arch import ArchConfig, SearchSpace
from tvm_ofa.nn.elastic import DynamicMBConvLayer, build_activation, make_divisible

# base widths: stem, first block, 5 elastic stages, final expand, feature mix (the paper's)
BASE_WIDTHS = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
STAGE_STRIDES = (2, 2, 2, 1, 2)
STAGE_ACTS = ("relu", "relu", "h_swish", "h_swish", "h_swish")
STAGE_SE = (False, True, False, True, True)


@dataclass(frozen=True)
class StageLayout:
    """Channel widths and per-stage settings for one width multiplier."""

    stem: int
    first_block: int
    stages: tuple[int, ...]
    final_expand: int
    feature_mix: int

    @classmethod
    def for_width(cls, width_mult: float) -> "StageLayout":
        widths = [make_divisible(w * width_mult) for w in BASE_WIDTHS[:-2]]
        return cls(
            stem=widths[0],
            first_block=widths[1],
            stages=tuple(widths[2:]),
            final_expand=make_divisible(BASE_WIDTHS[-2] * width_mult),
            feature_mix=make_divisible(BASE_WIDTHS[-1] * width_mult),
        )


def conv_size_out(size_in: int, stride: int) -> int:
    """Output size of a convolution with "same" padding (``kernel // 2``)."""
    return (size_in - 1) // stride + 1


@dataclass(frozen=True)
class Slot:
    """What a block slot of the supernet fixes: its stage, widths, stride, input size,
    activation and whether it has a squeeze-excite."""

    stage: int
    cin: int
    cout: int
    stride: int
    size_in: int
    act: str
    se: bool

    @property
    def size_out(self) -> int:
        return conv_size_out(self.size_in, self.stride)

    @property
    def residual(self) -> bool:
        """An identity shortcut: only where the block keeps the shape."""
        return self.stride == 1 and self.cin == self.cout


@dataclass(frozen=True)
class Block:
    """One inverted-residual block as it runs: optional 1x1 expand (``expand``), kxk depthwise,
    squeeze-excite to ``se_mid`` channels where not None, 1x1 project, identity shortcut where
    ``residual``."""

    name: str
    cin: int
    mid: int
    cout: int
    kernel: int
    stride: int
    size_in: int
    act: str
    se_mid: int | None
    residual: bool
    expand: bool = True

    @property
    def size_out(self) -> int:
        return conv_size_out(self.size_in, self.stride)


@dataclass(frozen=True)
class Geometry:
    """A subnet's shapes from its ``ArchConfig`` alone (no module is built): the blocks in
    execution order, the once-for-all ``first`` block included, and the fixed layers around them."""

    layout: StageLayout
    resolution: int
    stem_stride: int
    n_classes: int
    blocks: tuple[Block, ...]

    @property
    def head_size(self) -> int:
        """Input size of the final expand (the last block's output)."""
        return self.blocks[-1].size_out


def first_block(layout: StageLayout, resolution: int, stem_stride: int) -> Block:
    """Once-for-all's fixed first block: depthwise and project, no expand."""
    return Block("first", layout.stem, layout.stem, layout.first_block, 3, 1,
                 conv_size_out(resolution, stem_stride), "relu", None,
                 residual=layout.stem == layout.first_block, expand=False)


def block_slots(layout: StageLayout, resolution: int, max_depth: int, stem_stride: int) -> list[Slot]:
    """The supernet's ``n_stages * max_depth`` block slots: a stage's first slot takes the previous
    stage's width and the stride; sizes are those at ``resolution``."""
    size, cin, out = conv_size_out(resolution, stem_stride), layout.first_block, []
    for stage, (cout, stride, act, se) in enumerate(zip(layout.stages, STAGE_STRIDES, STAGE_ACTS, STAGE_SE)):
        size_out = conv_size_out(size, stride)
        for j in range(max_depth):
            out.append(Slot(stage, cin if j == 0 else cout, cout, stride if j == 0 else 1,
                            size if j == 0 else size_out, act, se))
        size, cin = size_out, cout
    return out


def slot_block(slot: Slot, expand_ratio: float, kernel: int, se_reduction: int = 4,
               name: str = "") -> Block:
    """The block a slot runs with one expand ratio and kernel size."""
    mid = make_divisible(round(slot.cin * expand_ratio))
    se_mid = make_divisible(mid // se_reduction) if slot.se else None
    return Block(name, slot.cin, mid, slot.cout, kernel, slot.stride, slot.size_in, slot.act, se_mid,
                 residual=slot.residual)


def subnet_geometry(arch: ArchConfig, width_mult: float = 1.0, n_classes: int = 1000,
                    stem_stride: int = 2, se_reduction: int = 4) -> Geometry:
    """The shapes of ``arch``'s subnet.

    Parameters
    ----------
    arch : ArchConfig
    width_mult, n_classes, stem_stride, se_reduction
        The supernet's settings that change shapes.

    Returns
    -------
    Geometry
    """
    layout = StageLayout.for_width(width_mult)
    slots = block_slots(layout, arch.resolution, arch.max_depth, stem_stride)
    blocks = [first_block(layout, arch.resolution, stem_stride)]
    blocks += [slot_block(slots[i], arch.e[i], arch.ks[i], se_reduction, f"blocks.{i}") for i in arch.active_blocks()]
    return Geometry(layout, arch.resolution, stem_stride, n_classes, tuple(blocks))


class _Residual(nn.Module):
    """Once-for-all's ``ResidualBlock``: the layer under ``conv``, identity shortcut or none."""

    def __init__(self, conv: nn.Module, residual: bool):
        super().__init__()
        self.conv = conv
        self.residual = residual


def _conv_bn_act(cin: int, cout: int, k: int, stride: int, act: str | None, groups: int = 1,
                 bn: bool = True) -> nn.Sequential:
    layers: "OrderedDict[str, nn.Module]" = OrderedDict()
    layers["conv"] = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
    if bn:
        layers["bn"] = nn.BatchNorm2d(cout)
    if act is not None:
        layers["act"] = build_activation(act)
    return nn.Sequential(layers)


class OFAMobileNetV3(nn.Module):
    """The elastic MobileNetV3 supernet.

    Parameters
    ----------
    n_classes : int
        Classifier outputs.
    width_mult : float
        Channel multiplier (once-for-all ships 1.0 and 1.2).
    space : SearchSpace
        Kernel, expand, depth and resolution choices.
    dropout_rate : float
        Dropout before the classifier (training only).
    stem_stride : int
        2 as in the paper; 1 for small inputs (e.g. 28-64 px data) so the last stage is not 1x1.
    """

    def __init__(self, n_classes: int = 1000, width_mult: float = 1.0, space: SearchSpace | None = None,
                 dropout_rate: float = 0.1, stem_stride: int = 2, bn_momentum: float = 0.1,
                 bn_eps: float = 1e-5):
        super().__init__()
        self.space = space or SearchSpace()
        if self.space.n_stages != len(STAGE_STRIDES):
            raise ValueError(f"the MobileNetV3 space has {len(STAGE_STRIDES)} stages, got {self.space.n_stages}")
        self.n_classes, self.width_mult = int(n_classes), float(width_mult)
        self.dropout_rate, self.stem_stride = float(dropout_rate), int(stem_stride)
        self.layout = layout = StageLayout.for_width(width_mult)

        self.first_conv = _conv_bn_act(3, layout.stem, 3, stem_stride, "h_swish")
        first = nn.Sequential(OrderedDict([
            ("depth_conv", _conv_bn_act(layout.stem, layout.stem, 3, 1, "relu", groups=layout.stem)),
            ("point_linear", _conv_bn_act(layout.stem, layout.first_block, 1, 1, None)),
        ]))
        # sizes do not shape the modules: any resolution of the space gives the same slots
        res = max(self.space.resolutions)
        blocks = [_Residual(first, residual=first_block(layout, res, stem_stride).residual)]
        for slot in block_slots(layout, res, self.space.max_depth, stem_stride):
            layer = DynamicMBConvLayer(slot.cin, slot.cout, self.space.ks_choices, self.space.e_choices,
                                       slot.stride, slot.act, slot.se)
            blocks.append(_Residual(layer, residual=slot.residual))
        self.blocks = nn.ModuleList(blocks)
        # the head is not elastic: its input width is the fixed last-stage width
        self.final_expand_layer = _conv_bn_act(layout.stages[-1], layout.final_expand, 1, 1, "h_swish")
        self.feature_mix_layer = _conv_bn_act(layout.final_expand, layout.feature_mix, 1, 1, "h_swish", bn=False)
        self.classifier = nn.Sequential(OrderedDict([
            ("dropout", nn.Dropout(dropout_rate)), ("linear", nn.Linear(layout.feature_mix, n_classes))]))
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum, m.eps = bn_momentum, bn_eps
        self._init_weights()
        self.active_arch: ArchConfig = self.space.largest()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    # -- configuration -------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild an empty supernet of this shape (stored in checkpoints)."""
        return {"n_classes": self.n_classes, "width_mult": self.width_mult, "stem_stride": self.stem_stride,
                "dropout_rate": self.dropout_rate, "space": self.space.to_dict()}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "OFAMobileNetV3":
        config = dict(config)
        space = SearchSpace.from_dict(config.pop("space"))
        return cls(space=space, **config)

    def set_active_subnet(self, arch: ArchConfig) -> None:
        """Make ``forward(x)`` run ``arch`` (once-for-all's API; ``forward(x, arch)`` is the same
        without the state)."""
        self.active_arch = self.space.validate(arch)

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, arch: ArchConfig | None = None) -> torch.Tensor:
        arch = arch or self.active_arch
        x = self.first_conv(x)
        first = self.blocks[0]
        y = first.conv.point_linear(first.conv.depth_conv(x))
        x = x + y if first.residual else y
        for i in arch.active_blocks():
            block = self.blocks[i + 1]
            y = block.conv(x, arch.ks[i], arch.e[i])
            x = x + y if block.residual else y
        x = self.final_expand_layer(x)
        x = x.mean((2, 3), keepdim=True)
        x = self.feature_mix_layer(x)
        return self.classifier(torch.flatten(x, 1))

    def sort_channels(self, expand_stage: int = 0) -> None:
        """Reorder every block's hidden channels by importance (before elastic-width training)."""
        for block in self.blocks[1:]:
            block.conv.sort_channels(expand_stage)

    # -- extraction ----------------------------------------------------------------------------
    @torch.no_grad()
    def extract(self, arch: ArchConfig | None = None) -> "MobileNetV3Subnet":
        """A static module holding copies of only the weights ``arch`` uses.

        Its outputs equal ``self(x, arch)`` in eval mode; it is independent of the supernet (later
        training of the supernet does not change it)."""
        arch = self.space.validate(arch or self.active_arch)
        return MobileNetV3Subnet.from_supernet(self, arch)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, mid: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.relu(self.reduce(y))))


class InvertedResidual(nn.Module):
    """A static MobileNetV3 block: optional 1x1 expand, kxk depthwise, optional SE, 1x1 project."""

    def __init__(self, cin: int, mid: int, cout: int, kernel_size: int, stride: int, act: str,
                 se_mid: int | None, residual: bool, expand: bool = True):
        super().__init__()
        self.expand = _conv_bn_act(cin, mid, 1, 1, act) if expand else None
        self.depthwise = _conv_bn_act(mid, mid, kernel_size, stride, act, groups=mid)
        self.se = SqueezeExcite(mid, se_mid) if se_mid is not None else None
        self.project = _conv_bn_act(mid, cout, 1, 1, None)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(x if self.expand is None else self.expand(x))
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class MobileNetV3Subnet(nn.Module):
    """A static subnet: what ``OFAMobileNetV3.extract`` returns. ``arch`` and the supernet's
    ``config`` stay attached for naming and provenance."""

    def __init__(self, arch: ArchConfig, geometry: Geometry):
        super().__init__()
        self.arch = arch
        layout = geometry.layout
        self.stem = _conv_bn_act(3, layout.stem, 3, geometry.stem_stride, "h_swish")
        self.first, *blocks = (InvertedResidual(b.cin, b.mid, b.cout, b.kernel, b.stride, b.act, b.se_mid,
                                                b.residual, b.expand) for b in geometry.blocks)
        self.blocks = nn.Sequential(*blocks)
        self.final_expand = _conv_bn_act(layout.stages[-1], layout.final_expand, 1, 1, "h_swish")
        self.feature_mix = _conv_bn_act(layout.final_expand, layout.feature_mix, 1, 1, "h_swish", bn=False)
        self.classifier = nn.Linear(layout.feature_mix, geometry.n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(self.stem(x))
        x = self.blocks(x)
        x = self.final_expand(x).mean((2, 3), keepdim=True)
        x = self.feature_mix(x)
        return self.classifier(torch.flatten(x, 1))

    @classmethod
    @torch.no_grad()
    def from_supernet(cls, net: OFAMobileNetV3, arch: ArchConfig) -> "MobileNetV3Subnet":
        sub = cls(arch, subnet_geometry(arch, net.width_mult, net.n_classes, net.stem_stride))
        _copy_seq(sub.stem, net.first_conv)
        first = net.blocks[0].conv
        _copy_seq(sub.first.depthwise, first.depth_conv)
        _copy_seq(sub.first.project, first.point_linear)
        for block, i in zip(sub.blocks, arch.active_blocks()):
            src: DynamicMBConvLayer = net.blocks[i + 1].conv
            cin, mid = block.expand.conv.in_channels, block.depthwise.conv.out_channels
            if src.inverted_bottleneck is not None:
                ib = src.inverted_bottleneck
                block.expand.conv.weight.copy_(ib.conv.conv.weight[:mid, :cin])
                _copy_bn(block.expand.bn, ib.bn.bn, mid)
            block.depthwise.conv.weight.copy_(src.depth_conv.conv.active_filter(mid, arch.ks[i]))
            _copy_bn(block.depthwise.bn, src.depth_conv.bn.bn, mid)
            if block.se is not None:
                se_mid = block.se.reduce.out_channels
                reduce, expand = src.depth_conv.se.fc.reduce, src.depth_conv.se.fc.expand
                block.se.reduce.weight.copy_(reduce.weight[:se_mid, :mid])
                block.se.reduce.bias.copy_(reduce.bias[:se_mid])
                block.se.expand.weight.copy_(expand.weight[:mid, :se_mid])
                block.se.expand.bias.copy_(expand.bias[:mid])
            cout = block.project.conv.out_channels
            block.project.conv.weight.copy_(src.point_linear.conv.conv.weight[:cout, :mid])
            _copy_bn(block.project.bn, src.point_linear.bn.bn, cout)
        _copy_seq(sub.final_expand, net.final_expand_layer)
        _copy_seq(sub.feature_mix, net.feature_mix_layer)
        sub.classifier.weight.copy_(net.classifier.linear.weight)
        sub.classifier.bias.copy_(net.classifier.linear.bias)
        return sub.eval()


def _copy_seq(dst: nn.Sequential, src: nn.Sequential) -> None:
    dst.conv.weight.copy_(src.conv.weight)
    if hasattr(dst, "bn"):
        _copy_bn(dst.bn, src.bn, dst.bn.num_features)


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, n: int) -> None:
    dst.eps, dst.momentum = src.eps, src.momentum
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[:n])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)
