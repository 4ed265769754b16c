"""Benchmark: CC-Net matching of one view against its reference (issue: <= 2 s for 512x512, search 100), with the
matcher's default aggregation.

Reports seconds for reference features, target features and the search, the feature network's achieved GFLOP/s
(FLOPs counted from the layer shapes) beside torch's own matmul GFLOP/s measured in the same run, and peak RSS for a
2048x2048 view in a child process (noise content, the worst case). Run: python benchmarks/ccnet_match.py [--size 512]
[--precision fp32|bf16] [--content scene|noise]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch


def conv_flops(model, height: int, width: int, grid_stride: int | None = None) -> float:
    """Multiply-adds x 2 of one tower on an image, dense or on the centre grid."""
    tower = model.lr_tower
    total = 0.0
    need = [grid_stride or 1]
    import math

    for dilation in reversed(tower.dilations[1:]):
        need.insert(0, math.gcd(need[0], dilation))
    for conv, out_spacing in zip(tower.convs, need if grid_stride else [1] * len(tower.convs), strict=True):
        pixels = (height / out_spacing) * (width / out_spacing)
        total += 2 * pixels * conv.in_channels * conv.out_channels * 9
    last = need[-1] if grid_stride else 1
    total += 2 * (height / last) * (width / last) * tower.fc.in_channels * tower.fc.out_channels
    return total


def matmul_gflops(dtype=torch.float32, repeats: int = 10) -> float:
    a, b = torch.randn(1024, 256, dtype=dtype), torch.randn(256, 8192, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * 1024 * 256 * 8192 * repeats / (time.perf_counter() - start) / 1e9


def run(size: int, precision: str, search_range: int, weights, content: str = "scene") -> dict:
    """``content``: "scene", a synthetic light-field pair (reference view (0, 0), target (4, 4), 3 px disparity per
    grid step), or "noise", uniform noise: the aggregated search's worst case, where the candidates of neighbouring
    centres never coincide."""
    from lfrefsr import capability, protocol
    from lfrefsr.correspondence.matchers import get_matcher
    from lfrefsr.data.synthetic import LayeredScene
    from lfrefsr.runtime import keep_freed_memory

    keep_freed_memory()  # as the CLI runs it
    torch.manual_seed(0)
    matcher = get_matcher("ccnet", scale=8, search_range=search_range, precision=precision, weights=weights)
    if content == "noise":
        ref, lr = torch.rand(3, size, size), torch.rand(3, size // 8, size // 8)
    else:
        scene = LayeredScene(size, size, seed=0, max_disparity=3.0)
        ref, lr = scene.render(0, 0, 0), protocol.stored_lr(scene.render(0, 4, 4), 8)
    matcher.prepare(ref[:, :64, :64])  # warm-up
    timings = {}
    start = time.perf_counter()
    context = matcher.prepare(ref)
    timings["ref_features_s"] = time.perf_counter() - start
    start = time.perf_counter()
    feats = matcher.target_features(lr)
    timings["target_features_s"] = time.perf_counter() - start
    from lfrefsr.correspondence.engine import match

    start = time.perf_counter()
    match(feats, context, stride=8, search_range=search_range, block=matcher.block, aggregate=matcher.aggregate,
          candidates=matcher.candidates)  # as the matcher searches: aggregated over neighbouring centres
    timings["search_s"] = time.perf_counter() - start
    flops_ref = conv_flops(matcher.model, size, size)
    centres = (size // 8) ** 2
    flops_search = 2 * centres * (2 * search_range + 1) ** 2 * matcher.model.out_channels
    timings.update({
        "size": size, "content": content, "precision": precision, "search_range": search_range,
        "aggregate": matcher.aggregate,
        "threads": torch.get_num_threads(),
        "total_s": timings["ref_features_s"] + timings["target_features_s"] + timings["search_s"],
        "per_view_s_with_shared_reference": timings["target_features_s"] + timings["search_s"],
        "ref_features_gflops": flops_ref / timings["ref_features_s"] / 1e9,
        "search_gflops_useful": flops_search / timings["search_s"] / 1e9,
        "matmul_gflops_fp32": matmul_gflops(torch.float32),
        # torch emulates the bfloat16 product ~70x slower where the CPU has no native bfloat16: not measured there
        "matmul_gflops_bf16": matmul_gflops(torch.bfloat16) if capability.cpu().bf16 else None,
        "precision_run": matcher.precision,
    })
    return timings


def peak_rss_child(size: int, precision: str, search_range: int, weights) -> float:
    code = (f"import sys; sys.argv=['x']; import benchmarks.ccnet_match as b; b.run({size}, {precision!r}, "
            f"{search_range}, {weights!r}, 'noise'); "
            f"from lfrefsr.bench import peak_rss_gib; print(peak_rss_gib())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])  # GiB, VmHWM of the child's own address space


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--search-range", type=int, default=100)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--rss-size", type=int, default=2048)
    parser.add_argument("--content", default="scene", choices=["scene", "noise"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    result = run(args.size, args.precision, args.search_range, args.weights, args.content)
    if args.rss_size:
        result[f"peak_rss_gib_{args.rss_size}"] = peak_rss_child(args.rss_size, args.precision, args.search_range,
                                                                 args.weights)
    for key, value in result.items():
        print(f"{key:36s} {value:.3f}" if isinstance(value, float) else f"{key:36s} {value}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
