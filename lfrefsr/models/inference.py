"""Inference preparation: a loaded network made ready to run, computing the same function as its plain form.

``prepare_for_inference(model)`` puts the network in eval mode, folds each BatchNorm into the convolution before
it, swaps plain layers for the CPU kernels of ``lfrefsr.models.ops`` (which take over their parameters, so the
state_dict keys stay), and makes the weights channels-last (oneDNN's fast layout on CPU; every convolution then runs
channels-last). ``lfrefsr.weights.load_network`` calls it; networks built for training stay plain.

The swaps, per network:

- CC-Net: each dilated conv + ReLU -> ``FusedConv2d`` (the ReLU a post-op), dense and on the grid; the cosine
  scaling -> ``CosineScaleInPlace``.
- SRResNet + NN: each residual block -> ``SkipPostOp`` (the skip a post-op of its second convolution); the 9x9
  ``tail`` to RGB -> ``FewOutputConv2d``.
- SS-Net: each HR block conv + ReLU -> ``FusedConv2d``, its 2x max-pool -> ``MaxPoolX2``; each fuse convolution
  of a concatenation + its activation -> ``SplitConv2d``; each finer-level mask convolution -> ``TapConv2d``.

Every kernel falls back to the plain op where its CPU path does not apply (``lfrefsr.capability`` decides where the
fused primitive runs), so a prepared network also runs on a GPU, under autocast, and on an AVX2-only CPU.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from lfrefsr.models import ops
from lfrefsr.models.ccnet import CCNet, CosineScale
from lfrefsr.models.srresnet import ResidualBlock, SRResNetNN
from lfrefsr.models.ssnet import ConcatConv2d, SSNet


def fold_batch_norm(convs: nn.ModuleList | nn.Sequential, norms: nn.ModuleList | nn.Sequential | None = None) -> None:
    """Fold each eval-mode BatchNorm into the convolution before it (weights and bias rescaled, the norm replaced by
    an Identity), in place. ``norms[i]`` follows ``convs[i]``; with ``norms`` None, the pairs are consecutive
    entries of ``convs``. The same outputs up to rounding, one pass fewer per layer, and the convolution's post-ops
    can then fuse what follows."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    holder, offset = (convs, 1) if norms is None else (norms, 0)  # where convs[i]'s norm is: holder[i + offset]
    for i in range(len(holder) - offset):
        j = i + offset
        conv, norm = convs[i], holder[j]
        if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and not norm.training:
            convs[i] = fuse_conv_bn_eval(conv, norm)
            holder[j] = nn.Identity()


def _plain(conv: nn.Module, *, stride_one: bool = False) -> bool:
    """``conv`` is a plain convolution (not yet swapped) that the kernels handle: zero padding of a given size, no
    groups; with ``stride_one``, stride and dilation 1 too."""
    if type(conv) not in (nn.Conv2d, ConcatConv2d) or conv.groups != 1 or conv.padding_mode != "zeros":
        return False
    if isinstance(conv.padding, str):
        return False
    return not stride_one or (conv.stride == (1, 1) and conv.dilation == (1, 1))


def _prepare_ccnet(model: CCNet) -> None:
    if type(model.cosine) is CosineScale:
        model.cosine = ops.CosineScaleInPlace()
    for tower in {id(t): t for t in (model.lr_tower, model.ref_tower)}.values():
        fold_batch_norm(tower.convs, tower.norms)
        if isinstance(tower.act, nn.ReLU) and all(isinstance(n, nn.Identity) for n in tower.norms) and all(
                _plain(conv) for conv in tower.convs):
            for i, conv in enumerate(tower.convs):
                tower.convs[i] = ops.FusedConv2d.from_conv(conv, act="relu")
            tower.act = nn.Identity()  # now inside every convolution


def _prepare_srresnet(model: SRResNetNN) -> None:
    for i, block in enumerate(model.body):
        fold_batch_norm(block.body)
        if type(block) is ResidualBlock:
            last = max(j for j, layer in enumerate(block.body) if not isinstance(layer, nn.Identity))
            if _plain(block.body[last]):
                block.body[last] = ops.FusedConv2d.from_conv(block.body[last])
                model.body[i] = ops.SkipPostOp(block.body)
    fold_batch_norm(model.body_tail)
    if _plain(model.tail, stride_one=True) and model.tail.out_channels <= 4:  # few outputs: the tail to RGB
        model.tail = ops.FewOutputConv2d.from_conv(model.tail)


def _prepare_ssnet(model: SSNet) -> None:
    if isinstance(model.hr_act, nn.ReLU) and all(_plain(block) for block in model.hr_blocks):
        for i, block in enumerate(model.hr_blocks):
            model.hr_blocks[i] = ops.FusedConv2d.from_conv(block, act="relu")
        model.hr_act = nn.Identity()  # now inside every HR block's convolution
    if type(model.pool) is nn.MaxPool2d and model.pool.kernel_size == 2 and model.pool.stride == 2:
        model.pool = ops.MaxPoolX2()
    fuses = [model.fuse_coarse, *model.fuses]
    act = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid"}.get(type(model.fuse_act))
    if act is not None and all(type(conv) is ConcatConv2d and _plain(conv, stride_one=True) for conv in fuses):
        model.fuse_coarse = ops.SplitConv2d.from_conv(model.fuse_coarse, act=act)
        for i, conv in enumerate(model.fuses):
            model.fuses[i] = ops.SplitConv2d.from_conv(conv, act=act)
        model.fuse_act = nn.Identity()  # now inside every fuse convolution
    for i, conv in enumerate(model.masks):
        if type(conv) is ConcatConv2d and _plain(conv, stride_one=True) and conv.out_channels == 1:
            model.masks[i] = ops.TapConv2d.from_conv(conv)


RULES = {CCNet: _prepare_ccnet, SRResNetNN: _prepare_srresnet, SSNet: _prepare_ssnet}  # the swaps per network


def prepare_for_inference(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with BatchNorm folded, its layers swapped for the CPU kernels and its weights
    channels-last, in place; returned. A network of another class is only put in eval mode and made channels-last.
    Preparing a prepared network changes nothing."""
    model.eval()
    rule = RULES.get(type(model))
    if rule is not None:
        rule(model)
    return model.to(memory_format=torch.channels_last)
