"""``lfrefsr bench``: seconds, FLOPs and achieved GFLOP/s of every refsr stage on one view, beside torch's own matmul
GFLOP/s measured in the same run, end-to-end views/s on an 8x8 light field, and peak RSS.

FLOPs are counted from the operators' shapes (``torch.utils.flop_counter``: convolutions and matrix products).
Networks are the shipped ones. ``--precision bf16`` and the bfloat16 matmul reference run only where the device has
native bfloat16 (``lfrefsr.capability``): elsewhere torch emulates it, many times slower than float32
(benchmarks/README.md, "Kernels and engine"), so the report says "bf16: not native on this CPU", the stages run in
float32, and the JSON records the precision that ran.
"""

from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path

import torch

from lfrefsr import capability

NOT_NATIVE = "not native on this {}"
# the stages each kind of view adds up (their names as the report prints them)
SYNTHESIS_STAGES = ("refsr: sisr LR features", "refsr: ss-net, whole image", "refsr: final back-projection")
VIDEO_STAGES = ("refsr, video: reference features (DIS image, CC-Net; once per reference)",
                "refsr, video: alignment (DIS at 3 patch sides, MEDIUM, CC-Net candidates)",
                "refsr, video: re-alignment pass (DIS HR against HR, selection, SS-Net, back-projection)",
                "refsr, video: flow refinement through the LR camera (final pass)")
LIGHTFIELD_STAGES = ("refsr, light field: DIS flow, warp, trust, back-projection",
                     "refsr, light field: per-view flows + selection")
LIGHTFIELD_ONCE = "refsr, light field: disparity from {} LR views (once)"


def _network(name: str, device: str):
    """The shipped network ``name`` (ccnet, sisr, ssnet, ssnet_paper), loaded for inference."""
    from lfrefsr.weights import load_network

    return load_network("ssnet" if name.startswith("ssnet") else name, device=device, shipped=name)[0]


def peak_rss_gib() -> float:
    """This process's peak resident memory in GiB: VmHWM of its own address space where Linux has it.

    ``getrusage(...).ru_maxrss`` is not used: Linux carries the parent's high-water mark over fork and exec, so a
    benchmark child started from a parent that had rendered a 4096x4096 scene reported the parent's 11.4 GiB.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024**2  # kB -> GiB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def matmul_gflops(dtype=torch.float32, device="cpu", repeats: int = 10, trials: int = 7) -> float:
    """torch's matrix-product GFLOP/s at the inner size of this package's convolutions (K = 256): the median of
    ``trials`` timings of ``repeats`` products, the typical rate as the stages' timings are typical rates.

    The product's 32 MiB output lands above glibc's default mmap threshold, so without ``keep_freed_memory`` every
    product page-faults a fresh output and the reading drops well below what the stages see (benchmarks/README.md,
    "Kernels and engine"); ``run_bench`` sets it first, as the CLI does."""
    a = torch.randn(1024, 256, dtype=dtype, device=device)
    b = torch.randn(256, 8192, dtype=dtype, device=device)
    for _ in range(3):
        a @ b
    rates = []
    for _ in range(trials):
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        _sync(device)
        rates.append(2 * 1024 * 256 * 8192 * repeats / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


_FUSED_COUNTED = False


def count_fused_convolutions() -> None:
    """Teach ``FlopCounterMode`` oneDNN's fused convolutions (``lfrefsr.models.ops.conv2d_act``): it counts aten's
    convolutions only, so the fused ones would drop out of every stage's FLOPs. Counted as the convolution, as
    aten's are (the fused add and activation, like aten's separate ones, count nothing)."""
    global _FUSED_COUNTED
    if _FUSED_COUNTED or not capability.cpu().fused:  # the fused op never runs here
        return
    from torch.utils.flop_counter import conv_flop_count, register_flop_formula

    try:
        @register_flop_formula(torch.ops.mkldnn._convolution_pointwise)
        def _fused_convolution_flops(x_shape, *args, out_shape=None, **kwargs) -> int:
            weight_shape = args[1] if len(args) > 9 else args[0]  # .binary: (other, W, ...); default: (W, ...)
            return conv_flop_count(x_shape, weight_shape, out_shape)
    except RuntimeError:  # a torch that counts them itself
        pass
    _FUSED_COUNTED = True


def measure(fn, device: str, repeats: int = 2) -> tuple[float, float]:
    """(seconds per call, FLOPs per call) of ``fn``."""
    from torch.utils.flop_counter import FlopCounterMode

    count_fused_convolutions()

    with torch.inference_mode():
        fn()  # warm-up
        with FlopCounterMode(display=False) as counter:
            fn()
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        _sync(device)
    return (time.perf_counter() - start) / repeats, float(counter.get_total_flops())


def run_bench(*, size: int = 512, device: str = "cpu", precision: str = "fp32", end_to_end: bool = True,
              grid: int = 8, echo=print) -> dict:
    from lfrefsr.runtime import keep_freed_memory

    keep_freed_memory()  # the networks below run outside any Method, as under the CLI

    bf16_missing = capability.bf16_missing(device)
    requested, precision = precision, capability.effective_precision(precision, device)
    stages, lf_views = _stages(size, device, precision, grid)
    kind = "GPU" if torch.device(device).type == "cuda" else "CPU"
    results = {"size": size, "device": device, "precision": precision, "precision_requested": requested,
               "threads": torch.get_num_threads(), "isa": capability.cpu().isa,
               "bf16": "native" if bf16_missing is None else NOT_NATIVE.format(kind),
               "matmul_gflops_fp32": matmul_gflops(torch.float32, device),
               "matmul_gflops_bf16": matmul_gflops(torch.bfloat16, device) if bf16_missing is None else None,
               "stages": {}}
    for name, fn in stages:
        seconds, flops = measure(fn, device)
        results["stages"][name] = {"seconds": seconds, "gflop": flops / 1e9,
                                   "gflops_per_s": flops / seconds / 1e9 if seconds else 0.0}
    seconds = {name: results["stages"][name]["seconds"] for name, _ in stages}
    synthesis = sum(seconds[name] for name in SYNTHESIS_STAGES)
    # a video frame in the every-frame protocol prepares its own reference (CC-Net's features), aligns with
    # every candidate, runs the re-alignment pass and refines its flow; a light-field view shares the reference's
    # disparity and runs one DIS beside its flows
    results["refsr_seconds_per_view"] = synthesis + sum(seconds[name] for name in VIDEO_STAGES)
    results["refsr_seconds_per_view_lightfield"] = (synthesis + sum(seconds[name] for name in LIGHTFIELD_STAGES)
                                                    + seconds[LIGHTFIELD_ONCE.format(lf_views)] / lf_views)
    if end_to_end:
        results["end_to_end"] = _end_to_end(grid, size, device, precision)
    results["peak_rss_gib"] = peak_rss_gib()
    echo(table(results))
    return results


def _stages(size: int, device: str, precision: str, grid: int, scale: int = 8):
    """The stages in the report's order as (name, fn), sharing one state: refsr's four on a pair of video frames
    (together a video frame's time), the light field's two (its disparity once, then per view), the paper's six.
    -> (stages, the light field's LR view count)."""
    from lfrefsr import protocol
    from lfrefsr.data.synthetic import make_video
    from lfrefsr.methods.flowwarp import FlowWarp

    nets = {name: _network(name, device) for name in ("ccnet", "sisr", "ssnet", "ssnet_paper")}
    flowwarp = FlowWarp(scale, device)
    torch.manual_seed(0)
    # a real-looking pair (DIS flow's cost depends on the content): two frames of a synthetic layered video
    frames = protocol.to_float(make_video(2, size=(size, size), seed=0)["hr"])  # (2, 3, H, W) float
    ref = frames[0][None].to(device)
    lr = protocol.stored_lr(frames[1], scale)[None].to(device)
    state: dict = {}
    refsr = _refsr_stages(nets, state, ref, lr, device, precision, scale)
    lightfield, lf_views = _lightfield_stages(flowwarp, state, size, device, grid, scale)
    paper = _paper_stages(nets, state, ref, lr, device, precision, scale)
    return [*refsr, *lightfield, *paper], lf_views


def _refsr_stages(nets, state, ref, lr, device, precision, scale):
    """refsr's default variant on the pair: the video alignment (the method's own, CC-Net's candidates included),
    SISR features, SS-Net on the whole image, back-projection, the re-alignment pass (the same SISR features) and
    the refinement of its flow through the LR camera."""
    from lfrefsr.methods import get_method
    from lfrefsr.methods.flowwarp import back_project, refine_flow
    from lfrefsr.methods.refsr import REFINE_STEPS, flow_guide, realigned_flows
    from lfrefsr.synthesis import synthesize_image

    refsr = get_method("refsr", scale=scale, device=device, precision=precision)

    def reference_features():
        state["refsr_context"] = refsr.prepare(ref[0])

    def alignment():  # the first of two passes: its flow is not refined
        state["aligned"] = refsr._align(lr[0], state["refsr_context"], None, final=False)

    def sisr_features():
        with capability.autocast(device, precision):
            state["lr_features"] = nets["sisr"].features(lr)[0]

    def ssnet_image():
        aligned = state["aligned"]
        with capability.autocast(device, precision):
            state["sr"] = synthesize_image(nets["ssnet"], state["lr_features"], flow_guide(aligned),
                                           aligned["result"][0], scale=scale)[0]

    def final_back_projection():
        state["result"] = back_project(state["sr"][None], lr, scale, refsr.back_project_steps)[0]

    def realignment_pass():  # a video frame gets one (refsr's ``realign`` rule)
        context = state["refsr_context"]
        flows = [state["aligned"]["flow"][0], *realigned_flows(state["result"], context)]
        aligned = refsr._align(lr[0], context, None, realigned=flows, final=False)
        state["final_flow"] = aligned["flow"]
        with capability.autocast(device, precision):
            sr = synthesize_image(nets["ssnet"], state["lr_features"], flow_guide(aligned), aligned["result"][0],
                                  scale=scale)[0]
        back_project(sr[None], lr, scale, refsr.back_project_steps)

    def refinement():  # the final pass's chosen flow, before its SS-Net (timed apart from the pass)
        refine_flow(ref, lr, state["final_flow"], scale, REFINE_STEPS)

    return [(VIDEO_STAGES[0], reference_features), (VIDEO_STAGES[1], alignment),
            (SYNTHESIS_STAGES[0], sisr_features), (SYNTHESIS_STAGES[1], ssnet_image),
            (SYNTHESIS_STAGES[2], final_back_projection), (VIDEO_STAGES[2], realignment_pass),
            (VIDEO_STAGES[3], refinement)]


def _lightfield_stages(flowwarp, state, size, device, grid, scale):
    """A light field: the reference's disparity from all its LR views, then each view's flows from it and the
    selection. -> (stages, LR view count)."""
    from lfrefsr import protocol
    from lfrefsr.data.synthetic import LayeredScene
    from lfrefsr.lightfield import disparity_hypotheses, estimate_disparity, view_flow
    from lfrefsr.methods.flowwarp import select_flow

    scene = LayeredScene(size, size, seed=0, max_disparity=1.0)
    lf_ref = scene.render(0, 0, 0).to(device)
    lf_views = [((u, v), protocol.stored_lr(scene.render(0, u, v), scale).to(device))
                for u in range(grid) for v in range(grid) if (u, v) != (0, 0)]
    lf_target, lf_lr = lf_views[-1]
    lf_context = flowwarp.prepare(lf_ref)

    def lf_dis():
        state["lf_dis"] = flowwarp.align(lf_lr, lf_context)["flow"]  # (1, 2, H, W)

    def lf_disparity():
        state["hypotheses"] = disparity_hypotheses(estimate_disparity(lf_ref, lf_views, scale))

    def lf_candidates():
        flows = [view_flow(d, lf_target)[None] for d in state["hypotheses"]]  # each (1, 2, H, W)
        select_flow(lf_ref[None], lf_lr[None], scale, [state["lf_dis"], *flows])

    return [(LIGHTFIELD_STAGES[0], lf_dis), (LIGHTFIELD_ONCE.format(len(lf_views)), lf_disparity),
            (LIGHTFIELD_STAGES[1], lf_candidates)], len(lf_views)


def _paper_stages(nets, state, ref, lr, device, precision, scale):
    """The paper's variant on the pair: CC-Net features and matching (2-D and epipolar), SISR base, SS-Net patches."""
    from lfrefsr.correspondence.engine import match
    from lfrefsr.correspondence.matchers import CCNetMatcher
    from lfrefsr.synthesis import synthesize

    matcher = CCNetMatcher(scale=scale, search_range=100, device=device, precision=precision)
    matcher.model = nets["ccnet"].to(memory_format=torch.channels_last)  # the shipped or stand-in network
    size = f"{matcher.aggregate}x{matcher.aggregate}"

    def ref_features():  # as refsr_paper computes them: channels-last strips with a halo
        state["ref"] = matcher.prepare(ref[0])

    def target_features():
        state["target"] = matcher.target_features(lr[0])

    def matching():  # with the matcher's aggregation, as eval match and refsr_paper run it
        state["matches"] = match(state["target"], state["ref"], stride=scale, search_range=100, block=matcher.block,
                                 aggregate=matcher.aggregate, candidates=matcher.candidates)

    def matching_epipolar():
        match(state["target"], state["ref"], stride=scale, search_range=100, direction=(1.0, 1.0),
              aggregate=matcher.aggregate)

    def sisr_output():
        with capability.autocast(device, precision):
            state["base"] = nets["sisr"](lr)[0].float()

    def ssnet_patches():
        with capability.autocast(device, precision):
            synthesize(nets["ssnet_paper"], state["lr_features"], ref[0], state["matches"].flow, state["base"],
                       scale=scale, stride=8, ref_patches="shift")

    return [("paper: ccnet reference features (once per reference)", ref_features),
            ("paper: ccnet target features (centre grid)", target_features),
            (f"paper: matching, 2-D search +-100, aggregated {size}", matching),
            (f"paper: matching, epipolar +-100, aggregated {size}", matching_epipolar),
            ("paper: sisr x8 output (residual base)", sisr_output),
            ("paper: ss-net patches + blending (stride 8)", ssnet_patches)]


def _end_to_end(grid: int, size: int, device: str, precision: str) -> dict:
    """refsr over every view of a synthetic grid x grid light field, in this process."""
    import tempfile

    from lfrefsr.data.synthetic import lightfield_store
    from lfrefsr.pipeline import plan, run_serial

    with tempfile.TemporaryDirectory(prefix="lfrefsr-bench-") as tmp:
        store = lightfield_store(Path(tmp) / "lf.zarr", grid, size)
        summary = run_serial(plan(store), "refsr", device=device, progress=False,
                             method_options={"precision": precision} if precision != "fp32" else None)
    return {"views": summary.done, "seconds": summary.seconds, "views_per_s": summary.views_per_second}


def table(results: dict) -> str:
    lines = [f"{'stage':55s} {'s':>8s} {'GFLOP':>8s} {'GFLOP/s':>9s} {'% matmul':>9s}"]
    peak = results["matmul_gflops_bf16" if results["precision"] == "bf16" else "matmul_gflops_fp32"]
    for name, row in results["stages"].items():
        lines.append(f"{name:55s} {row['seconds']:8.3f} {row['gflop']:8.2f} {row['gflops_per_s']:9.1f} "
                     f"{100 * row['gflops_per_s'] / peak:8.0f}%")
    bf16 = results["matmul_gflops_bf16"]
    lines.append(f"torch matmul GFLOP/s: fp32 {results['matmul_gflops_fp32']:.1f}, "
                 f"bf16 {results['bf16'] if bf16 is None else f'{bf16:.1f}'}  ({results['threads']} threads, "
                 f"{results['device']}, {results['isa']}; stages in {results['precision']})")
    lines.append(f"refsr per view (sum of its stages): {results['refsr_seconds_per_view']:.3f} s a video frame, "
                 f"{results['refsr_seconds_per_view_lightfield']:.3f} s a light-field view")
    if "end_to_end" in results:
        lines.append(f"end to end: {results['end_to_end']}")
    return "\n".join(lines)
