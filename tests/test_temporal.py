"""The flicker measure of ``eval video``: what the HR frames' own motion does not explain."""

import numpy as np
import torch

from lfrefsr import protocol, temporal
from lfrefsr.data.synthetic import make_video


def _clip():
    return protocol.to_float(make_video(frames=3, size=(96, 128), seed=3)["hr"])  # (T, 3, H, W)


def test_a_clip_flickers_no_more_than_its_motion_and_added_noise_shows():
    hr = _clip()
    pair = temporal.pair_flow(0, hr[0], hr[1])
    assert pair.valid.float().mean() > 0.5  # the synthetic motion is mostly consistent both ways
    own = temporal.flicker(pair, hr[0], hr[1])
    generator = torch.Generator().manual_seed(0)
    noisy = [(frame + 4 / 255 * torch.randn(frame.shape, generator=generator)).clamp(0, 1) for frame in hr[:2]]
    added = temporal.flicker(pair, *noisy)
    # independent noise of sigma 4 in each frame (|n1 - n2| alone would average 2 * 4 / sqrt(pi) = 4.5 on the
    # 0-255 scale) on top of what the flow leaves of the synthetic layers' sharp edges
    assert own < 6.0 and added > own + 1.5, (own, added)


def test_a_still_frame_has_no_flicker_and_the_pairs_are_the_consecutive_scored_frames():
    frame = _clip()[0]
    pair = temporal.pair_flow(0, frame, frame)
    assert pair.valid.all() and temporal.flicker(pair, frame, frame) < 1e-3  # grid_sample's rounding
    assert temporal.consecutive_pairs([1, 2, 3, 5, 6, 7, 9]) == [(1, 2), (2, 3), (5, 6), (6, 7)]
    nowhere = temporal.PairFlow(0, pair.flow, torch.zeros_like(pair.valid))
    assert np.isnan(temporal.flicker(nowhere, frame, frame))
