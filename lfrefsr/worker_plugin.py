"""The dask worker plugin: the process-wide settings a worker takes once, as the CLI takes them in its own process.

Only ``lfrefsr.distributed`` imports this module (it needs ``distributed``); ``run_distributed`` registers the plugin
with every client it uses, so workers of a LocalCluster and of an existing cluster, present and future, take it.
"""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin


class ProcessSettings(WorkerPlugin):
    """``lfrefsr.runtime.keep_freed_memory`` on each worker process."""

    name = "lfrefsr-process-settings"

    def setup(self, worker) -> None:
        from lfrefsr.runtime import keep_freed_memory

        keep_freed_memory()
