"""A convolution with its activation, and optionally a tensor added before it, as one oneDNN primitive on CPU.

``conv2d_act`` is what torch.compile's inductor emits for conv + add + ReLU/sigmoid on CPU, without compiling: the
add and the activation are post-ops of the convolution, so the output is written once instead of three times. In
bfloat16 the separate passes cost as much as the convolution (32 -> 32 channels at 512x512: conv + ReLU 3.6 ms
eager against 2.4 ms fused; conv + conv + ReLU 9.4 against 5.5 ms); in float32 the gain is within noise. It is
used where autograd is off (inference); training and other devices run the same maths eagerly.

The primitive is private torch API (``torch.ops.mkldnn._convolution_pointwise``): it runs only in the dtypes that
``lfrefsr.capability`` found it working in on this CPU (none on a torch without it; float32 only on an AVX2-only CPU,
where oneDNN refuses bfloat16), and an input it refuses falls back to the eager ops, which are the reference.
"""

from __future__ import annotations

import logging

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


def conv2d_few_outputs(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, *,
                       padding=0) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=padding)`` (stride 1): x (N, Cin, H, W), weight (Cout, Cin, kh, kw) ->
    (N, Cout, H', W'), for a wide kernel with few outputs (SRResNet's 9 x 9 tail to RGB).

    oneDNN vectorises over output channels, so 3 of them leave its float32 kernel mostly idle: 16 -> 3 channels,
    9 x 9, at 512 x 512 ran at ~64 GFLOP/s (33 ms) on this 2-core CPU. Here one 1 x kw convolution gives every
    kernel row's contribution (kh * Cout outputs, 27), and kh shifted adds sum them: 16 ms, within 1.3e-5. CPU
    float32 inference only; bfloat16 (direct 6.6 ms, this 17 ms), autograd and other devices run ``F.conv2d``.
    """
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
    quarters, since ATen's pooling kernel is slow on channels-last input: (1, 32, 512, 512) 2.1-2.3 -> 1.5 ms in
    bfloat16, 2.4-2.8 -> 1.8 ms in float32 on this 2-core CPU, the same values. With autograd on, ``F.max_pool2d``
    (torch.maximum would split a tie's gradient between both sides)."""
    if torch.is_grad_enabled():
        return F.max_pool2d(x, 2)
    x = x[..., : x.shape[-2] // 2 * 2, : x.shape[-1] // 2 * 2]  # floor, as the pooling
    out = torch.maximum(x[..., 0::2, 0::2], x[..., 1::2, 0::2])
    # into the one output: a second quarter-sized temporary raised a 4096x4096 view's peak RSS by 0.3 GiB
    torch.maximum(out, x[..., 0::2, 1::2], out=out)
    return torch.maximum(out, x[..., 1::2, 1::2], out=out)


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
