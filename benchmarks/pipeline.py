"""Benchmark: reconstruct an 8x8 (and 16x16) light field of 512x512 views in-process versus on a LocalCluster.

Reports total seconds, views/s, the throughput ratio (cluster / serial), the client's peak RSS and each worker's peak
RSS, and the 16x16 grid's peak worker memory relative to the 8x8 one. Each configuration runs in a fresh child
process so peak RSS figures are its own.

    python benchmarks/pipeline.py --method refsr [--size 512] [--workers 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lfrefsr.data.synthetic import lightfield_store


def child(mode: str, store_path: str, method: str, workers: int, threads: int) -> dict:
    from lfrefsr.bench import peak_rss_gib
    from lfrefsr.io.store import Store
    from lfrefsr.pipeline import plan, run_serial
    from lfrefsr.runtime import keep_freed_memory

    keep_freed_memory()  # as the CLI runs it (the workers take it from run_distributed's plugin)

    store = Store.open(store_path)
    tasks = plan(store)
    worker_rss = []
    if mode == "serial":
        summary = run_serial(tasks, method, overwrite=True, progress=False, threads=threads)
    else:
        from lfrefsr.distributed import open_client, run_distributed

        with open_client(workers=workers, threads_per_worker=threads) as client:
            summary = run_distributed(tasks, method, overwrite=True, progress=False, client=client)
            usage = client.run(peak_rss_gib)
            worker_rss = list(usage.values())
    return {"mode": mode, "views": summary.done, "failed": len(summary.failed), "seconds": summary.seconds,
            "views_per_s": summary.views_per_second,
            "client_peak_rss_gib": peak_rss_gib(),
            "worker_peak_rss_gib": worker_rss}


def run_child(*args) -> dict:
    code = f"import benchmarks.pipeline as b, json; print(json.dumps(b.child{args!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", default="refsr")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-serial", type=int, default=2)
    parser.add_argument("--skip-16", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = {"method": args.method, "size": args.size}
    with tempfile.TemporaryDirectory(prefix="lfrefsr-bench-") as tmp:
        started = time.perf_counter()
        store8 = lightfield_store(Path(tmp) / "lf8.zarr", 8, args.size)
        results["make_8x8_s"] = time.perf_counter() - started
        results["serial_8x8"] = run_child("serial", str(store8.path), args.method, 1, args.threads_serial)
        results["cluster_8x8"] = run_child("cluster", str(store8.path), args.method, args.workers, 1)
        results["throughput_ratio"] = results["cluster_8x8"]["views_per_s"] / results["serial_8x8"]["views_per_s"]
        # the same cores split the other way: one worker process with all threads (how threads per worker is chosen)
        results["cluster_8x8_one_worker"] = run_child("cluster", str(store8.path), args.method, 1, args.workers)
        if not args.skip_16:
            store16 = lightfield_store(Path(tmp) / "lf16.zarr", 16, args.size)
            results["cluster_16x16"] = run_child("cluster", str(store16.path), args.method, args.workers, 1)
            results["worker_memory_ratio_16_vs_8"] = (max(results["cluster_16x16"]["worker_peak_rss_gib"])
                                                      / max(results["cluster_8x8"]["worker_peak_rss_gib"]))
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
