"""Enumerated choices shared by the library and the CLI (kept free of heavy imports so ``--help`` is fast)."""

from __future__ import annotations

from enum import Enum


class ReferenceMode(str, Enum):
    """How a video frame chooses its reference (light fields always use the store's reference view)."""

    PREVIOUS = "previous"  # HR frame t-1 (the paper's setting)
    KEYFRAME = "keyframe"  # the latest HR keyframe before t
    KEYFRAMES = "keyframes"  # the latest HR keyframe before t and the first after it, fused (the one before at the end)
    PREVIOUS_SR = "previous-sr"  # frame t-1: its HR where known, else its own SR result (propagation)


class Device(str, Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Precision(str, Enum):
    """Arithmetic of the learned methods' networks: float32, or bfloat16 autocast where the device has it natively
    (``lfrefsr.capability.effective_precision``; elsewhere float32 runs, with a warning)."""

    FP32 = "fp32"
    BF16 = "bf16"


def choices(enum: type[Enum]) -> list[str]:
    return [member.value for member in enum]
