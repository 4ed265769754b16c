"""Process-wide CPU runtime setting: keep freed memory for reuse instead of handing it back to the OS.

glibc's malloc serves every block above its mmap threshold (at most 32 MiB) with fresh pages from ``mmap`` and
unmaps them again on ``free``. A 512x512 view's SS-Net activations are 32-64 MiB each (32-64 channels, float32), so
every layer's output came from new pages, and the first write to each 4 KiB page is a page fault, which cost more
than the layer itself. This raises the mmap threshold to 66 MiB, so blocks up to that size come from the heap, and
the trim threshold to 512 MiB, so freed heap memory stays mapped for the next view. Larger blocks (a big reference's
feature map) still go back to the OS when freed: higher thresholds were no faster and raised CC-Net's peak memory.
Where glibc refuses that threshold, mmap is turned off for malloc instead (``M_MMAP_MAX = 0``). The figures and the
command that measures them: ``benchmarks/README.md``, "Process runtime settings".

Linux with glibc only; elsewhere, or with ``LFREFSR_MALLOC=system`` in the environment, nothing changes. It is a
process-wide setting, so the entry points apply it, never a library constructor: the CLI (its own process), the dask
worker plugin (``lfrefsr.worker_plugin``, every worker ``run_distributed`` uses) and ``lfrefsr bench``. A Python user
who runs methods in-process calls ``keep_freed_memory()`` once, as the CLI does.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger("lfrefsr")

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # glibc <malloc.h>
MMAP_THRESHOLD = 66 * 2**20  # bytes: a 512x512 view's activations (32-65 MiB) are below it
TRIM_THRESHOLD = 512 * 2**20  # bytes of free heap kept for the next view instead of handed back

_state: dict = {"applied": None}


def keep_freed_memory() -> bool:
    """Apply the malloc setting once per process; True where it is in effect."""
    if _state["applied"] is not None:
        return _state["applied"]
    applied = False
    if os.environ.get("LFREFSR_MALLOC", "").lower() != "system" and sys.platform.startswith("linux"):
        try:
            mallopt = ctypes.CDLL("libc.so.6").mallopt
        except (OSError, AttributeError):  # musl or another libc: leave the allocator alone
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            heap = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 or mallopt(M_MMAP_MAX, 0) == 1
            applied = heap and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not applied:
        log.debug("malloc left as configured (LFREFSR_MALLOC=system, not glibc, or mallopt refused)")
    _state["applied"] = applied
    return applied
