"""The malloc setting: applied once per process on glibc, and switched off by LFREFSR_MALLOC=system."""

import subprocess
import sys

import pytest

CODE = "from lfrefsr.runtime import keep_freed_memory as k; print(k(), k())"


def _run(env_value):
    import os

    env = {**os.environ, "LFREFSR_MALLOC": env_value}
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keep_freed_memory_applies_once_and_can_be_switched_off():
    import ctypes.util

    if "musl" in (ctypes.util.find_library("c") or ""):
        pytest.skip("not glibc")
    assert _run("") == ["True", "True"]
    assert _run("system") == ["False", "False"]
