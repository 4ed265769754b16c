"""A convolution with its activation, and optionally a tensor added before it, as one oneDNN primitive on CPU.

``conv2d_act`` is what torch.compile's inductor emits for conv + add + ReLU/sigmoid on CPU, without compiling: the
add and the activation are post-ops of the convolution, so the output is written once instead of three times. In
bfloat16 the separate passes cost as much as the convolution (32 -> 32 channels at 512x512: conv + ReLU 3.6 ms
eager against 2.4 ms fused; conv + conv + ReLU 9.4 against 5.5 ms); in float32 the gain is within noise. It is
used where autograd is off (inference); training and other devices run the same maths eagerly.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

FUSE = True  # tests set it False to compare with the eager ops
ACTIVATIONS = ("none", "relu", "sigmoid")


def _fusable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (FUSE and x.device.type == "cpu" and not torch.is_grad_enabled() and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise") and weight.dim() == 4)


def _pair(value) -> list[int]:
    return [value, value] if isinstance(value, int) else list(value)


def conv2d_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *, stride=1, padding=0,
               dilation=1, act: str = "none", other: torch.Tensor | None = None) -> torch.Tensor:
    """``act(conv2d(x, weight, bias) + other)``: x (N, Cin, H, W), weight (Cout, Cin, kh, kw), other None or
    (N, Cout, H', W') -> (N, Cout, H', W'). Under CPU autocast the fused call runs in the autocast dtype, as
    ``F.conv2d`` would (the fused add then happens before rounding to bfloat16)."""
    if act not in ACTIVATIONS:
        raise ValueError(f"act is one of {ACTIVATIONS}, not {act!r}")
    if _fusable(x, weight):
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        if dtype in (torch.float32, torch.bfloat16) and weight.dtype in (torch.float32, torch.bfloat16):
            x, weight = x.to(dtype), weight.to(dtype)
            bias = None if bias is None else bias.to(dtype)
            geometry = (_pair(padding), _pair(stride), _pair(dilation), 1)
            if other is None:
                return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, *geometry, act, [], "")
            last = torch.channels_last
            if (act != "sigmoid" and x.is_contiguous(memory_format=last)
                    and other.is_contiguous(memory_format=last)):
                # add + sigmoid is no oneDNN post-op chain here; and unless channels-last the op falls back to an
                # ATen add_relu that has no bfloat16 kernel
                return torch.ops.mkldnn._convolution_pointwise.binary(x, other.to(dtype), weight, bias, *geometry,
                                                                      "add", None, None if act == "none" else act, [],
                                                                      "")
    out = F.conv2d(x, weight, bias, stride, padding, dilation)
    if other is not None:
        out = out.add_(other.to(out.dtype))
    if act == "relu":
        return F.relu(out, inplace=True)  # a fresh tensor: in place
    return torch.sigmoid(out) if act == "sigmoid" else out


def fold_batch_norm(convs: nn.ModuleList | nn.Sequential, norms: nn.ModuleList | nn.Sequential | None = None) -> None:
    """Inference: fold each eval-mode BatchNorm into the convolution before it (weights and bias rescaled, the
    norm replaced by an Identity), in place. ``norms[i]`` follows ``convs[i]``; with ``norms`` None, the pairs are
    consecutive entries of ``convs``. The same outputs up to rounding (1.5e-5 on SRResNet's LR features), one pass
    fewer per layer, and the convolution's post-ops can then fuse what follows."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    holder, offset = (convs, 1) if norms is None else (norms, 0)  # where convs[i]'s norm is: holder[i + offset]
    for i in range(len(holder) - offset):
        j = i + offset
        conv, norm = convs[i], holder[j]
        if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and not norm.training:
            convs[i] = fuse_conv_bn_eval(conv, norm)
            holder[j] = nn.Identity()
