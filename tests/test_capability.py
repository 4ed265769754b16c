"""What the CPU can do, decided once, and both branches of every decision: native bfloat16 or float32 with one
warning; oneDNN's fused convolution or the eager ops."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys

import pytest
import torch
from conftest import AVX2_ONLY_MISSING

from lfrefsr import capability
from lfrefsr.models import ops


@pytest.fixture
def fresh_capability():
    """``capability.cpu()`` decided again inside the test, and again after it (for the tests that follow)."""
    capability.cpu.cache_clear()
    yield
    capability.cpu.cache_clear()


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "lfrefsr" and r.levelno >= logging.WARNING]


def test_the_capability_is_decided_once_and_is_consistent():
    cap = capability.cpu()
    assert capability.cpu() is cap
    assert cap.bf16 == (cap.bf16_missing is None)
    assert cap.fused <= {torch.float32, torch.bfloat16}
    assert cap.bf16 or not cap.fuses(torch.bfloat16)  # no fused bfloat16 without native bfloat16


def test_the_environment_forces_the_plain_branches(monkeypatch, fresh_capability):
    monkeypatch.setenv(capability.ENV_BF16, "0")
    monkeypatch.setenv(capability.ENV_FUSED, "off")
    cap = capability.cpu()
    assert not cap.bf16 and capability.ENV_BF16 in cap.bf16_missing and not cap.fused


def test_bf16_falls_back_to_float32_with_one_warning_line(no_native_bf16, caplog):
    with caplog.at_level(logging.WARNING, logger="lfrefsr"):
        assert capability.effective_precision("bf16") == "fp32"
        assert capability.effective_precision("bf16", "cpu") == "fp32"  # once per process, not per call
        assert capability.effective_precision("fp32") == "fp32"
    (line,) = _warnings(caplog)
    assert "\n" not in line and "float32" in line and AVX2_ONLY_MISSING in line


def test_bf16_runs_where_native(native_bf16, caplog):
    with caplog.at_level(logging.WARNING, logger="lfrefsr"):
        assert capability.effective_precision("bf16") == "bf16"
    assert _warnings(caplog) == []


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError):
        capability.effective_precision("fp16")


def test_a_gpu_without_bf16_gets_the_same_fallback(monkeypatch, caplog):
    monkeypatch.setattr(capability, "_WARNED", set())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "Tesla T4")
    with caplog.at_level(logging.WARNING, logger="lfrefsr"):
        assert capability.effective_precision("bf16", "cuda") == "fp32"
    (line,) = _warnings(caplog)
    assert "Tesla T4" in line and "float32" in line


def test_without_native_bf16_the_convolution_runs_the_eager_ops(no_native_bf16):
    torch.manual_seed(0)
    x = torch.randn(1, 5, 9, 9).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(4, 5, 3, 3), torch.randn(4)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert ops._fused_dtype(x, weight) is None
        half = ops.conv2d_act(x, weight, bias, padding=1, act="relu")
        eager = torch.relu(torch.nn.functional.conv2d(x, weight, bias, padding=1))
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half, eager, rtol=0, atol=0)


REFUSAL = """
import logging, torch
from lfrefsr import capability
from lfrefsr.models import ops
capability.cpu = lambda: capability.CpuCapability("AVX2", True, None, frozenset({torch.float32, torch.bfloat16}))
refused = []
handler = logging.Handler()
handler.emit = lambda record: refused.append("refused" in record.getMessage())
log = logging.getLogger("lfrefsr"); log.setLevel(logging.DEBUG); log.addHandler(handler)
x = torch.randn(1, 4, 7, 7).contiguous(memory_format=torch.channels_last)
w, b = torch.randn(4, 4, 3, 3), torch.randn(4)
with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
    fused = ops.conv2d_act(x, w, b, padding=1, act="relu", other=x)
    ops.FUSE = False
    eager = ops.conv2d_act(x, w, b, padding=1, act="relu", other=x)
print(any(refused), torch.equal(fused, eager))
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="oneDNN's x86 ISA limit")
def test_an_input_the_fused_primitive_refuses_runs_the_eager_ops():
    """oneDNN limited to AVX2 (as on an AVX2-only CPU) refuses bfloat16 with a RuntimeError; a capability that
    wrongly claims it must still give the eager ops' result, not a traceback."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run([sys.executable, "-c", REFUSAL], env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="oneDNN's x86 ISA limit")
def test_the_probe_matches_what_onednn_does_when_limited_to_avx2():
    """On an AVX2-limited oneDNN the probe finds no bfloat16, and the fused float32 path still equals eager."""
    code = ("from lfrefsr import capability; import torch; c = capability.cpu(); "
            "print(c.bf16, torch.bfloat16 in c.fused, c.bf16_missing is not None)")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    env.pop(capability.ENV_BF16, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False", "True"]
