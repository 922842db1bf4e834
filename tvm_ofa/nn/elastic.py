"""Elastic operators of the Once-for-All supernet.

Each operator holds the weights of its largest setting and runs a smaller one by slicing
(channels) or transforming (kernels). Module and parameter names mirror the official
once-for-all implementation (``conv.conv.weight``, ``bn.bn.running_mean``, ``5to3_matrix``...)
so its checkpoints load as plain state dicts.

Settings are passed as call arguments, not stored on the modules: the supernet is a pure function
of (input, architecture).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor`` without going below 90 % of it (MobileNet's rule)."""
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def build_activation(name: str | None) -> nn.Module:
    """Activations of the space, by their once-for-all names."""
    table = {"relu": nn.ReLU, "relu6": nn.ReLU6, "h_swish": nn.Hardswish, "h_sigmoid": nn.Hardsigmoid}
    if name is None:
        return nn.Identity()
    return table[name]()


def sub_filter_start_end(kernel_size: int, sub_kernel_size: int) -> tuple[int, int]:
    center, dev = kernel_size // 2, sub_kernel_size // 2
    return center - dev, center + dev + 1


class DynamicConv2d(nn.Module):
    """A dense convolution whose input and output channels are the leading slices of the largest."""

    def __init__(self, max_in: int, max_out: int, kernel_size: int = 1, stride: int = 1, bias: bool = False):
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.conv = nn.Conv2d(max_in, max_out, kernel_size, stride, kernel_size // 2, bias=bias)

    def active_weight(self, out_channels: int, in_channels: int) -> torch.Tensor:
        return self.conv.weight[:out_channels, :in_channels]

    def forward(self, x: torch.Tensor, out_channels: int | None = None) -> torch.Tensor:
        out_channels = out_channels or self.conv.out_channels
        bias = None if self.conv.bias is None else self.conv.bias[:out_channels]
        weight = self.active_weight(out_channels, x.size(1)).contiguous()
        return F.conv2d(x, weight, bias, self.stride, self.kernel_size // 2)


class DynamicSeparableConv2d(nn.Module):
    """Depthwise convolution with an elastic kernel: a smaller kernel is the centre of the larger
    one passed through a learned ``k^2 x k^2`` transformation (the paper's kernel transformation),
    applied from the largest kernel down (7 -> 5 -> 3)."""

    def __init__(self, max_channels: int, kernel_sizes: Sequence[int], stride: int = 1):
        super().__init__()
        self.kernel_sizes = tuple(sorted(set(kernel_sizes)))
        self.stride = stride
        k = max(self.kernel_sizes)
        self.conv = nn.Conv2d(max_channels, max_channels, k, stride, k // 2, groups=max_channels, bias=False)
        for small, large in zip(self.kernel_sizes[:-1], self.kernel_sizes[1:]):
            # identity init: before training a smaller kernel is exactly the centre crop
            self.register_parameter(f"{large}to{small}_matrix", nn.Parameter(torch.eye(small * small)))

    def active_filter(self, channels: int, kernel_size: int) -> torch.Tensor:
        weight = self.conv.weight[:channels]
        for large, small in zip(self.kernel_sizes[::-1], self.kernel_sizes[-2::-1]):
            if large <= kernel_size:
                break
            start, end = sub_filter_start_end(large, small)
            crop = weight[:, :, start:end, start:end].reshape(-1, small * small)
            matrix = getattr(self, f"{large}to{small}_matrix")
            weight = F.linear(crop, matrix).view(channels, 1, small, small)
        if weight.size(-1) != kernel_size:
            raise ValueError(f"kernel size {kernel_size} is not one of {list(self.kernel_sizes)}")
        return weight

    def forward(self, x: torch.Tensor, kernel_size: int) -> torch.Tensor:
        channels = x.size(1)
        weight = self.active_filter(channels, kernel_size).contiguous()
        return F.conv2d(x, weight, None, self.stride, kernel_size // 2, 1, channels)


class DynamicBatchNorm2d(nn.Module):
    """Batch norm over the leading channels of the largest layer."""

    def __init__(self, max_channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(max_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn, c = self.bn, x.size(1)
        if c == bn.num_features:
            return bn(x)
        # running statistics are slices of the full buffers, so updates land in place
        momentum = 0.0 if bn.momentum is None else bn.momentum
        use_batch_stats = self.training or not bn.track_running_stats
        if self.training and bn.track_running_stats:
            bn.num_batches_tracked.add_(1)
            if bn.momentum is None:
                momentum = 1.0 / float(bn.num_batches_tracked)
        return F.batch_norm(x, bn.running_mean[:c], bn.running_var[:c], bn.weight[:c], bn.bias[:c],
                            use_batch_stats, momentum, bn.eps)


class DynamicSE(nn.Module):
    """Squeeze-and-excite whose channels follow the input and whose hidden width is
    ``make_divisible(channels // reduction)``."""

    def __init__(self, max_channels: int, reduction: int = 4):
        super().__init__()
        self.reduction = reduction
        mid = make_divisible(max_channels // reduction)
        self.fc = nn.Sequential(OrderedDict([
            ("reduce", nn.Conv2d(max_channels, mid, 1, bias=True)),
            ("relu", nn.ReLU(inplace=True)),
            ("expand", nn.Conv2d(mid, max_channels, 1, bias=True)),
            ("h_sigmoid", nn.Hardsigmoid(inplace=True)),
        ]))

    def mid_channels(self, channels: int) -> int:
        return make_divisible(channels // self.reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1)
        mid = self.mid_channels(c)
        reduce, expand = self.fc.reduce, self.fc.expand
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(F.conv2d(y, reduce.weight[:mid, :c].contiguous(), reduce.bias[:mid]))
        y = F.hardsigmoid(F.conv2d(y, expand.weight[:c, :mid].contiguous(), expand.bias[:c]))
        return x * y


class DynamicMBConvLayer(nn.Module):
    """Inverted bottleneck (1x1 expand, kxk depthwise, optional SE, 1x1 project) with elastic
    kernel size and expand ratio."""

    def __init__(self, max_in: int, out_channels: int, kernel_sizes: Sequence[int],
                 expand_ratios: Sequence[int], stride: int = 1, act_func: str = "relu6",
                 use_se: bool = False):
        super().__init__()
        self.max_in, self.out_channels = max_in, out_channels
        self.kernel_sizes, self.expand_ratios = tuple(kernel_sizes), tuple(expand_ratios)
        self.stride, self.act_func, self.use_se = stride, act_func, use_se
        max_mid = make_divisible(round(max_in * max(expand_ratios)))
        if max(expand_ratios) == 1:
            self.inverted_bottleneck = None
        else:
            self.inverted_bottleneck = nn.Sequential(OrderedDict([
                ("conv", DynamicConv2d(max_in, max_mid)),
                ("bn", DynamicBatchNorm2d(max_mid)),
                ("act", build_activation(act_func)),
            ]))
        depth = OrderedDict([
            ("conv", DynamicSeparableConv2d(max_mid, kernel_sizes, stride)),
            ("bn", DynamicBatchNorm2d(max_mid)),
            ("act", build_activation(act_func)),
        ])
        if use_se:
            depth["se"] = DynamicSE(max_mid)
        self.depth_conv = nn.Sequential(depth)
        self.point_linear = nn.Sequential(OrderedDict([
            ("conv", DynamicConv2d(max_mid, out_channels)),
            ("bn", DynamicBatchNorm2d(out_channels)),
        ]))

    def mid_channels(self, in_channels: int, expand_ratio: int) -> int:
        return make_divisible(round(in_channels * expand_ratio))

    def forward(self, x: torch.Tensor, kernel_size: int, expand_ratio: int) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            ib = self.inverted_bottleneck
            x = ib.act(ib.bn(ib.conv(x, self.mid_channels(x.size(1), expand_ratio))))
        dc = self.depth_conv
        x = dc.act(dc.bn(dc.conv(x, kernel_size)))
        if self.use_se:
            x = dc.se(x)
        return self.point_linear.bn(self.point_linear.conv(x, self.out_channels))

    @torch.no_grad()
    def sort_channels(self, expand_stage: int = 0) -> None:
        """Reorder the hidden channels by importance (L1 norm of the projection weights) so that
        the leading slices used by smaller expand ratios keep the most important ones.

        ``expand_stage`` > 0 keeps channels that smaller ratios already use in front (once-for-all's
        progressive width shrinking). The function of the largest network is unchanged."""
        pl = self.point_linear.conv.conv
        importance = pl.weight.abs().sum(dim=(0, 2, 3))
        if expand_stage > 0:
            widths = [self.mid_channels(self.max_in, e) for e in sorted(self.expand_ratios, reverse=True)]
            right, base = len(importance), -len(widths) * 1e5
            for left in widths[: expand_stage + 1]:
                importance[left:right] += base
                base += 1e5
                right = left
        order = torch.argsort(importance, descending=True)
        pl.weight.copy_(pl.weight[:, order])
        _permute_bn(self.depth_conv.bn.bn, order)
        dw = self.depth_conv.conv.conv
        dw.weight.copy_(dw.weight[order])
        if self.use_se:
            reduce, expand = self.depth_conv.se.fc.reduce, self.depth_conv.se.fc.expand
            expand.weight.copy_(expand.weight[order])
            expand.bias.copy_(expand.bias[order])
            reduce.weight.copy_(reduce.weight[:, order])
            se_order = torch.argsort(expand.weight.abs().sum(dim=(0, 2, 3)), descending=True)
            expand.weight.copy_(expand.weight[:, se_order])
            reduce.weight.copy_(reduce.weight[se_order])
            reduce.bias.copy_(reduce.bias[se_order])
        if self.inverted_bottleneck is not None:
            _permute_bn(self.inverted_bottleneck.bn.bn, order)
            ib = self.inverted_bottleneck.conv.conv
            ib.weight.copy_(ib.weight[order])


def _permute_bn(bn: nn.BatchNorm2d, order: torch.Tensor) -> None:
    for tensor in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        tensor.copy_(tensor[order])
