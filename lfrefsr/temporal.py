"""Temporal consistency of a video result: how much it flickers beyond what the scene's own motion explains.

``flicker`` of a pair of consecutive frames (t, t+1): the mean absolute difference, on the 0-255 scale and over the
colours, between frame t and frame t+1 warped back to it by the HR frames' flow, on the pixels where that flow is
forward-backward consistent (the round trip within ``CONSISTENT_PX``) and stays inside the frame. The same figure
for the HR frames themselves is the floor: what the flow cannot explain (lighting, blur, its own error); a result's
figure above it is flicker the method added.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lfrefsr.warp import out_of_bounds, warp

CONSISTENT_PX = 1.0  # forward-backward round trip, HR pixels


@dataclass(frozen=True)
class PairFlow:
    """The HR frames' motion between frame t and t+1: flow (2, H, W) with ``hr_t(x) ~ hr_{t+1}(x + flow(x))`` and
    where it can be trusted (H, W)."""

    frame: int
    flow: torch.Tensor
    valid: torch.Tensor


def pair_flow(frame: int, hr_t: torch.Tensor, hr_next: torch.Tensor) -> PairFlow:
    """The HR frames' flow from frame t (3, H, W) to t+1 (3, H, W), floats in [0, 1]: DIS MEDIUM both ways, valid
    where the round trip returns within ``CONSISTENT_PX`` and the flow stays in the frame."""
    from lfrefsr.methods.flowwarp import dis_flow, gray_u8

    gray_t, gray_next = gray_u8(hr_t), gray_u8(hr_next)
    forward = dis_flow(gray_t, gray_next, "medium")[None]  # (1, 2, H, W)
    backward = dis_flow(gray_next, gray_t, "medium")[None]
    round_trip = forward + warp(backward, forward)  # (1, 2, H, W), zero where consistent
    valid = (round_trip.norm(dim=1) < CONSISTENT_PX) & ~out_of_bounds(forward, hr_t.shape[-2:])  # (1, H, W)
    return PairFlow(frame, forward[0], valid[0])


def flicker(pair: PairFlow, frame_t: torch.Tensor, frame_next: torch.Tensor) -> float:
    """Mean |frame_t - frame_next warped back| (0-255 scale) over the pair's valid pixels; frames (3, H, W) in
    [0, 1]. NaN where no pixel is valid."""
    back = warp(frame_next[None].float(), pair.flow[None])[0]  # (3, H, W)
    difference = (frame_t.float() - back).abs().mean(0)  # (H, W)
    if not pair.valid.any():
        return float("nan")
    return float(difference[pair.valid].mean() * 255)


def consecutive_pairs(frames: list[int]) -> list[tuple[int, int]]:
    """The (t, t+1) pairs among the scored ``frames``."""
    present = set(frames)
    return [(t, t + 1) for t in sorted(present) if t + 1 in present]
