"""Benchmark: refsr (default variant) on one big view, peak RSS bounded by tiling; tiled equals untiled.

Each size runs in a fresh child process so its peak RSS is its own: the pair (a synthetic layered light-field view
and its reference, rendered at the size so DIS flow sees real content) is rendered here and handed over as .npy files,
because rendering a 4096x4096 scene alone peaks at 11 GiB, more than the method.

    python benchmarks/big_view.py [--sizes 1024 2048 4096] [--tile 64] [--precision fp32] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def pair(size: int):
    from lfrefsr import protocol
    from lfrefsr.data.synthetic import LayeredScene

    scene = LayeredScene(size, size, seed=3, max_disparity=2.0)
    ref = protocol.to_float(protocol.quantize(scene.render(0, 0, 0)))
    hr = protocol.to_float(protocol.quantize(scene.render(0, 2, 3)))
    lr = protocol.stored_lr(hr, 8)
    return lr, ref, hr


def child(folder: str, tile: int | None, precision: str) -> dict:
    import numpy as np
    import torch

    from lfrefsr import metrics
    from lfrefsr.bench import peak_rss_gib
    from lfrefsr.methods import get_method
    from lfrefsr.methods.base import ViewHint
    from lfrefsr.runtime import keep_freed_memory

    keep_freed_memory()  # as the CLI runs it
    torch.set_num_threads(2)
    lr, ref, hr = (torch.from_numpy(np.load(f"{folder}/{name}.npy")) for name in ("lr", "ref", "hr"))
    method = get_method("refsr", scale=8, tile=tile, precision=precision)
    start = time.perf_counter()
    sr = method.super_resolve(lr, method.prepare(ref), ViewHint(grid_offset=(2, 3)))
    seconds = time.perf_counter() - start
    return {"size": int(hr.shape[-1]), "tile": tile, "precision": precision, "seconds": seconds,
            "psnr": metrics.psnr(sr, hr), "peak_rss_gib": peak_rss_gib()}


def equality(size: int, tile: int) -> float:
    """Max abs difference between tiled and one-piece refsr output (float32, before quantisation)."""
    from lfrefsr.methods import get_method

    lr, ref, _ = pair(size)
    outputs = []
    for t in (None, tile):
        method = get_method("refsr", scale=8, tile=t)
        outputs.append(method.super_resolve(lr, method.prepare(ref)))
    return float((outputs[0] - outputs[1]).abs().max())


def run_child(size: int, tile: int | None, precision: str) -> dict:
    import tempfile

    import numpy as np

    with tempfile.TemporaryDirectory(prefix="lfrefsr-big-") as folder:
        for name, image in zip(("lr", "ref", "hr"), pair(size), strict=True):
            np.save(f"{folder}/{name}.npy", image.numpy())
        code = f"import benchmarks.big_view as b, json; print(json.dumps(b.child({folder!r}, {tile!r}, {precision!r})))"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--equality-size", type=int, default=1024)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    results = {"runs": [], "tiled_vs_untiled_max_abs": None}
    for size in args.sizes:
        row = run_child(size, args.tile, args.precision)
        results["runs"].append(row)
        print(f"{size}x{size}: {row['seconds']:.1f} s, peak RSS {row['peak_rss_gib']:.2f} GiB, "
              f"PSNR {row['psnr']:.2f} dB (tile {args.tile} LR px, {args.precision})", flush=True)
    results["tiled_vs_untiled_max_abs"] = equality(args.equality_size, args.tile)
    print(f"tiled vs one piece at {args.equality_size}x{args.equality_size}: max abs difference "
          f"{results['tiled_vs_untiled_max_abs']:.2e}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
