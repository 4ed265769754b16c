"""CPU inference kernels for the networks' layers, as functions and as drop-in modules.

Each kernel computes what a plain layer computes (``nn.Conv2d``, ``nn.MaxPool2d``, a convolution of a channel
concatenation), rearranged for oneDNN on a CPU; ``lfrefsr.models.inference.prepare_for_inference`` swaps the plain
layers of a loaded network for these modules. Each one falls back to the plain op wherever its rearrangement does
not apply: with autograd on, on another device, in a dtype or layout it does not handle. Measurements of what each
one gains are in benchmarks/README.md, "Model kernels".

``conv2d_act`` is what torch.compile's inductor emits for conv + add + ReLU/sigmoid on CPU, without compiling: the
add and the activation are post-ops of the convolution, so the output is written once instead of three times. The
primitive is private torch API (``torch.ops.mkldnn._convolution_pointwise``): it runs only in the dtypes that
``lfrefsr.capability`` found it working in on this CPU (none on a torch without it; float32 only on an AVX2-only CPU,
where oneDNN refuses bfloat16), and an input it refuses falls back to the eager ops, which are the reference.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from lfrefsr import capability

log = logging.getLogger("lfrefsr")
FUSE = True  # tests set it False to compare with the eager ops
ACTIVATIONS = ("none", "relu", "sigmoid")


def _fused_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype | None:
    """The dtype the fused primitive would run ``x`` in (the autocast dtype under CPU autocast, as ``F.conv2d``),
    or None where the eager ops run."""
    if not (FUSE and x.device.type == "cpu" and not torch.is_grad_enabled() and weight.dim() == 4
            and weight.dtype in (torch.float32, torch.bfloat16)):
        return None
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    return dtype if capability.cpu().fuses(dtype) else None


def _pair(value) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)


def conv2d_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, stride=1, padding=0,
               dilation=1, act: str = "none", other: torch.Tensor | None = None) -> torch.Tensor:
    """``act(conv2d(x, weight, bias) + other)``: x (N, Cin, H, W), weight (Cout, Cin, kh, kw), other None or
    (N, Cout, H', W') -> (N, Cout, H', W'). Under CPU autocast the fused call runs in the autocast dtype, as
    ``F.conv2d`` would (the fused add then happens before rounding to bfloat16)."""
    if act not in ACTIVATIONS:
        raise ValueError(f"act is one of {ACTIVATIONS}, not {act!r}")
    dtype = _fused_dtype(x, weight)
    last = torch.channels_last
    # add + sigmoid is no oneDNN post-op chain here; and unless channels-last the op falls back to an ATen add_relu
    # that has no bfloat16 kernel
    if dtype is not None and (other is None or (act != "sigmoid" and x.is_contiguous(memory_format=last)
                                                and other.is_contiguous(memory_format=last))):
        geometry = (_pair(padding), _pair(stride), _pair(dilation), 1)
        fused_bias = None if bias is None else bias.to(dtype)
        try:
            if other is None:
                return torch.ops.mkldnn._convolution_pointwise(x.to(dtype), weight.to(dtype), fused_bias, *geometry,
                                                               act, [], "")
            return torch.ops.mkldnn._convolution_pointwise.binary(x.to(dtype), other.to(dtype), weight.to(dtype),
                                                                  fused_bias, *geometry, "add", None,
                                                                  None if act == "none" else act, [], "")
        except RuntimeError as exc:  # a shape or layout the primitive refuses: the eager ops below
            log.debug("fused convolution refused %s: %s", tuple(x.shape), str(exc).splitlines()[0])
    out = F.conv2d(x, weight, bias, stride, padding, dilation)
    if other is not None:
        out = out.add_(other.to(out.dtype))
    if act == "relu":
        return F.relu(out, inplace=True)  # a fresh tensor: in place
    return torch.sigmoid(out) if act == "sigmoid" else out


def conv2d_split(parts: Sequence[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                 padding=0, act: str = "none") -> torch.Tensor:
    """``act(conv2d(cat(parts, 1), weight, bias))`` (stride 1) without writing the concatenated input: one
    convolution per part on its slice of the weight's input channels, the others' sum added (with ``act``) as
    post-ops of the first part's convolution (``conv2d_act``). parts [(N, C_i, H, W)], weight (Cout, sum C_i, k, k)
    -> (N, Cout, H', W')."""
    rest, start = None, parts[0].shape[1]
    for part in parts[1:]:
        stop = start + part.shape[1]
        term = F.conv2d(part, weight[:, start:stop], None, padding=padding)
        rest = term if rest is None else rest.add_(term)
        start = stop
    return conv2d_act(parts[0], weight[:, : parts[0].shape[1]], bias, padding=padding, act=act, other=rest)


def conv2d_taps(parts: Sequence[torch.Tensor], weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                padding=0) -> torch.Tensor:
    """``conv2d(cat(parts, 1), weight, bias)`` for a k x k convolution with one output channel (SS-Net's masks),
    stride 1, without writing the concatenated input: parts [(N, C_i, H, W)], weight (1, sum C_i, k, k) ->
    (N, 1, H', W').

    oneDNN runs a one-output convolution far below its usual rate, so a 1x1 product per part gives the k*k taps of
    every pixel (a one-channel part is one broadcast multiply), then each tap is added at its offset. On a GPU,
    bound by kernel launches at these sizes, the concatenation and one convolution run instead."""
    if parts[0].device.type != "cpu":
        return F.conv2d(torch.cat(list(parts), 1), weight, bias, padding=padding)
    k, pad = weight.shape[-1], _pair(padding)[0]
    taps_weight = weight[0].permute(1, 2, 0).reshape(k * k, -1, 1, 1)  # (k*k, C, 1, 1): tap t = k*ky + kx
    taps, start = None, 0
    for part in parts:  # taps (N, k*k, H, W)
        stop = start + part.shape[1]
        part_weight = taps_weight[:, start:stop]
        if part.shape[1] == 1 and taps is not None:
            taps.addcmul_(part, part_weight.to(taps.dtype).view(1, k * k, 1, 1))
        else:
            term = F.conv2d(part, part_weight)
            taps = term if taps is None else taps.add_(term)
        start = stop
    height, width = taps.shape[-2] + 2 * pad - k + 1, taps.shape[-1] + 2 * pad - k + 1
    taps = F.pad(taps, (pad, pad, pad, pad)).contiguous()  # (N, k*k, H+2p, W+2p), planar for the shifted adds
    out = taps[:, :1, :height, :width]  # (N, 1, H', W'), a view: the first sum below writes a new tensor
    out = out.clone() if bias is None else out + bias.to(taps.dtype).view(1, 1, 1, 1)
    for t in range(1, k * k):
        ky, kx = divmod(t, k)
        out += taps[:, t : t + 1, ky : ky + height, kx : kx + width]
    return out


def conv2d_few_outputs(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                       padding=0) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` (stride 1): x (N, Cin, H, W), weight (Cout, Cin, kh, kw) ->
    (N, Cout, H', W'), for a wide kernel with few outputs (SRResNet's 9 x 9 tail to RGB).

    oneDNN vectorises over output channels, so 3 of them leave its float32 kernel mostly idle. Here one 1 x kw
    convolution gives every kernel row's contribution (kh * Cout outputs, 27), and kh shifted adds sum them. CPU
    float32 inference only (in bfloat16 the direct convolution is the faster); autograd and other devices run
    ``F.conv2d``."""
    if not (FUSE and x.device.type == "cpu" and not torch.is_grad_enabled() and x.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")):
        return F.conv2d(x, weight, bias, padding=padding)
    cout, _, kh, kw = weight.shape
    pad_h, pad_w = _pair(padding)
    row_weight = weight.permute(2, 0, 1, 3).reshape(kh * cout, -1, 1, kw)  # (kh*Cout, Cin, 1, kw): row dy major
    rows = F.conv2d(F.pad(x, (0, 0, pad_h, pad_h)), row_weight, padding=(0, pad_w))  # (N, kh*Cout, H+2p, W')
    height = rows.shape[2] - kh + 1
    per_row = rows.permute(0, 2, 3, 1)  # (N, H+2p, W', kh*Cout) view, contiguous when channels-last
    out = per_row[:, :height, :, :cout].clone() if bias is None else per_row[:, :height, :, :cout] + bias
    for dy in range(1, kh):  # output row y gets kernel row dy from padded row y + dy
        out += per_row[:, dy : dy + height, :, dy * cout : (dy + 1) * cout]
    return out.permute(0, 3, 1, 2)  # (N, H', W', Cout) -> (N, Cout, H', W'), channels-last


def max_pool_x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)``: (N, C, H, W) -> (N, C, H // 2, W // 2). At inference, the maximum of the four strided
    quarters, since ATen's pooling kernel is slow on channels-last input; the same values. With autograd on,
    ``F.max_pool2d`` (torch.maximum would split a tie's gradient between both sides)."""
    if torch.is_grad_enabled():
        return F.max_pool2d(x, 2)
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]  # floor, as the pooling
    out = torch.maximum(x[..., 0::2, 0::2], x[..., 1::2, 0::2])
    # into the one output: a second quarter-sized temporary raises the peak memory of large views
    torch.maximum(out, x[..., 0::2, 1::2], out=out)
    return torch.maximum(out, x[..., 1::2, 1::2], out=out)


# ---------------------------------------------------------------------------------------------------------------
# The kernels as modules. Each takes over a plain layer's parameters: the state_dict keys and values stay.
# ---------------------------------------------------------------------------------------------------------------


class _ConvKernel(nn.Conv2d):
    """An ``nn.Conv2d`` computed by one of the kernels above; built from a plain one by ``from_conv``."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, **attributes):
        """A ``cls`` with ``conv``'s geometry and its parameters (the same tensors), plus ``attributes``."""
        module = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                     dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None,
                     padding_mode=conv.padding_mode, device="meta")
        module.weight, module.bias = conv.weight, conv.bias
        for name, value in attributes.items():
            setattr(module, name, value)
        return module.train(conv.training)


class FusedConv2d(_ConvKernel):
    """``act(conv(x) + other)``, the add and the activation as post-ops of the convolution (``conv2d_act``)."""

    act = "none"

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        return conv2d_act(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                          dilation=self.dilation, act=self.act, other=other)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, act={self.act}"


class SplitConv2d(_ConvKernel):
    """``act(conv(cat(parts, 1)))`` without writing the concatenation (``conv2d_split``); stride and dilation 1."""

    act = "none"

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        return conv2d_split(parts, self.weight, self.bias, padding=self.padding, act=self.act)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, act={self.act}"


class TapConv2d(_ConvKernel):
    """``conv(cat(parts, 1))`` with one output channel, as shifted taps (``conv2d_taps``); stride and dilation 1."""

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        return conv2d_taps(parts, self.weight, self.bias, padding=self.padding)


class FewOutputConv2d(_ConvKernel):
    """A wide kernel with few outputs as kernel rows summed at their offsets (``conv2d_few_outputs``); stride 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d_few_outputs(x, self.weight, self.bias, padding=self.padding)


class MaxPoolX2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` as the maximum of four strided quarters at inference (``max_pool_x2``)."""

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_x2(x)


class SkipPostOp(nn.Module):
    """``x + body(x)`` whose last non-identity layer is a ``FusedConv2d``: the skip is that convolution's post-op
    add. ``body`` keeps its name, so the state_dict keys of the block it replaces stay."""

    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body
        self.last = max(i for i, layer in enumerate(body) if not isinstance(layer, nn.Identity))
        if not isinstance(body[self.last], FusedConv2d):
            raise TypeError("the last layer of a SkipPostOp body is a FusedConv2d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for i in range(self.last):
            y = self.body[i](y)
        return self.body[self.last](y, other=x)


class CosineScaleInPlace(nn.Module):
    """CC-Net's ``CosineScale`` (each pixel's feature vector scaled to ``length``), at inference in place on its
    input, the network's fresh output: a new map of a whole reference's features is a large fresh allocation, which
    costs about as much as the multiply itself."""

    def forward(self, features: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(features, dim=1, keepdim=True).clamp_min(1e-12)  # (N, 1, H, W)
        factor = (length / norm).to(features.dtype)
        return features * factor if torch.is_grad_enabled() else features.mul_(factor)
