"""What this machine can run, decided once per process; every speed path asks here.

Two things differ between CPUs and decide which code runs (never what it computes):

- **Native bfloat16.** oneDNN's bfloat16 convolutions and matrix products need AVX512BW/VL/DQ or AVX-NE-CONVERT;
  they are fast only with bfloat16 arithmetic in hardware (AVX512-BF16, AMX-BF16, AVX-NE-CONVERT). Without it
  (an AVX2-only CPU such as AMD Zen 3) torch's fused convolution raises ``RuntimeError: mkldnn_convolution: bf16
  path needs the cpu support ...`` and its bfloat16 matrix product falls back to an emulation ~70x slower than
  float32. ``--precision bf16`` then runs float32, with one warning line (``effective_precision``).
- **oneDNN's fused convolution + post-ops** (``torch.ops.mkldnn._convolution_pointwise``, a private op; see
  ``lfrefsr.models.ops.conv2d_act``): used per dtype only where a probe of it runs and equals the eager ops.

The decision comes from what torch reports (``torch.backends.mkldnn``, the CPU's ISA level and feature flags) and a
probe of the fused primitive on a tiny input that catches its ``RuntimeError``; it is cached per process.

``LFREFSR_CPU_BF16=0`` and ``LFREFSR_FUSED=0`` in the environment force the plain branches (no native bfloat16; eager
convolutions), so a machine with AVX-512 and AMX can run what an AVX2-only one runs; they reach dask workers too.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lfrefsr.modes import Precision

log = logging.getLogger("lfrefsr")

# CPU flags (Linux /proc/cpuinfo names) that give oneDNN bfloat16 arithmetic in hardware
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "avx_ne_convert")
ENV_BF16, ENV_FUSED = "LFREFSR_CPU_BF16", "LFREFSR_FUSED"


@dataclass(frozen=True)
class CpuCapability:
    """``isa``: torch's CPU kernel level ("AVX512", "AVX2", ...); ``bf16``: native bfloat16 (see the module doc),
    with ``bf16_missing`` saying why not; ``fused``: the dtypes oneDNN's fused convolution runs here."""

    isa: str
    bf16: bool
    bf16_missing: str | None
    fused: frozenset[torch.dtype]

    def fuses(self, dtype: torch.dtype) -> bool:
        return dtype in self.fused


def _off(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("0", "off", "false", "no")


def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags as Linux names them, or None where /proc/cpuinfo does not say (other systems)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return None


def _isa() -> str:
    try:
        return torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # torch without the query
        return "unknown"


def _probe_fused(dtype: torch.dtype) -> bool:
    """The fused primitive on a tiny input, plain and with the added tensor, equals the eager ops in ``dtype``."""
    mkldnn = getattr(torch.ops, "mkldnn", None)
    if not torch.backends.mkldnn.is_available() or not hasattr(mkldnn, "_convolution_pointwise"):
        return False
    gen = torch.Generator().manual_seed(0)
    last = torch.channels_last
    x = torch.rand(1, 4, 6, 6, generator=gen).to(dtype).contiguous(memory_format=last)
    weight = torch.rand(4, 4, 3, 3, generator=gen).to(dtype).contiguous(memory_format=last)
    bias, other = torch.rand(4, generator=gen).to(dtype), torch.rand(1, 4, 6, 6, generator=gen).to(dtype)
    other = other.contiguous(memory_format=last)
    geometry = ([1, 1], [1, 1], [1, 1], 1)
    try:
        with torch.inference_mode():
            plain = mkldnn._convolution_pointwise(x, weight, bias, *geometry, "relu", [], "")
            added = mkldnn._convolution_pointwise.binary(x, other, weight, bias, *geometry, "add", None, "relu", [], "")
            eager = torch.nn.functional.conv2d(x.float(), weight.float(), bias.float(), 1, 1)
    except (RuntimeError, NotImplementedError, TypeError) as exc:  # the CPU or this torch refuses it
        log.debug("fused convolution unavailable in %s: %s", dtype, str(exc).splitlines()[0] if str(exc) else exc)
        return False
    tolerance = 1e-4 if dtype == torch.float32 else 0.1
    return bool(torch.allclose(plain.float(), eager.relu(), atol=tolerance, rtol=tolerance)
                and torch.allclose(added.float(), (eager + other.float()).relu(), atol=tolerance, rtol=tolerance))


def _bf16_missing(flags: frozenset[str] | None, fused_bf16_ok: bool) -> str | None:
    """Why this CPU has no native bfloat16, naming the missing feature; None where it has it."""
    if not torch.backends.mkldnn.is_available():
        return "this torch build has no oneDNN (mkldnn)"
    if flags is not None and not any(flag in flags for flag in BF16_FLAGS):
        return f"this CPU has no {', '.join(BF16_FLAGS[:-1])} or {BF16_FLAGS[-1]}"
    if not fused_bf16_ok and hasattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise"):
        return "oneDNN refuses bfloat16 on this CPU (it needs avx512bw, avx512vl and avx512dq, or avx_ne_convert)"
    return None


@functools.cache
def cpu() -> CpuCapability:
    """This process's CPU capability (probed once)."""
    flags = cpu_flags()
    fused_fp32 = not _off(ENV_FUSED) and _probe_fused(torch.float32)
    if _off(ENV_BF16):
        missing = f"native bfloat16 is switched off ({ENV_BF16}=0)"
        fused_bf16 = False
    else:
        fused_bf16 = not _off(ENV_FUSED) and _probe_fused(torch.bfloat16)
        missing = _bf16_missing(flags, fused_bf16)
        fused_bf16 = fused_bf16 and missing is None
    fused = frozenset(dtype for dtype, ok in ((torch.float32, fused_fp32), (torch.bfloat16, fused_bf16)) if ok)
    capability = CpuCapability(isa=_isa(), bf16=missing is None, bf16_missing=missing, fused=fused)
    log.debug("CPU capability: %s", capability)
    return capability


def bf16_missing(device: str | torch.device = "cpu") -> str | None:
    """Why ``device`` cannot run bfloat16 natively, or None where it can."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():  # remote GPU workers: each decides for its own device
            return None
        return None if torch.cuda.is_bf16_supported() else f"{torch.cuda.get_device_name(device)} has no bfloat16"
    if device.type == "cpu":
        return cpu().bf16_missing
    return f"bfloat16 is not supported on {device.type} here"


_WARNED: set[tuple[str, str]] = set()


def effective_precision(requested: str | Precision, device: str | torch.device = "cpu") -> str:
    """The precision that runs: ``requested``, or float32 where bfloat16 is not native on ``device`` (one warning
    line per device kind and reason in this process)."""
    requested = Precision(requested)
    if requested is Precision.FP32:
        return Precision.FP32.value
    reason = bf16_missing(device)
    if reason is None:
        return requested.value
    key = (torch.device(device).type, reason)
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning("lfrefsr: warning: --precision bf16 runs float32 here: %s", reason)
    return Precision.FP32.value


def autocast(device: str | torch.device, precision: str | Precision) -> torch.autocast:
    """bfloat16 autocast on ``device``'s kind where ``precision`` (an ``effective_precision``) is bf16, else a
    disabled one: what every learned network, in training and inference, runs under."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16,
                          enabled=Precision(precision) is Precision.BF16)
