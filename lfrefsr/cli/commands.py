"""The ``lfrefsr`` commands: a thin layer over the library.

Commands only parse, call one library function and print; shared options and parameter types live in
``lfrefsr.cli.options``, the options each method takes in its own declaration (``Method.Options``). User-facing errors
(``LfrefsrError``) become one line on stderr and a non-zero exit; ``-v`` shows the traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from lfrefsr import __version__
from lfrefsr.cli.method_options import cli_method_options, methods_command
from lfrefsr.cli.options import (
    MATCHERS,
    METHODS,
    POSITION,
    DegradationSpec,
    Index,
    apply_options,
    degrade_option,
    device_check,
    device_option,
    grid_option,
    handle_errors,
    json_option,
    lightfield_option,
    odd_check,
    option_option,
    origin_option,
    overwrite_option,
    pattern_options,
    precision_option,
    progress,
    ref_option,
    resolve_device,
    scale_option,
    variant_option,
    verbosity,
    weights_option,
)
from lfrefsr.modes import Device, ReferenceMode, choices

log = logging.getLogger("lfrefsr")
# the reference modes of a hybrid video's HR keyframes (``eval video --keyframe-every``)
KEYFRAME_MODES = [ReferenceMode.KEYFRAME.value, ReferenceMode.KEYFRAMES.value]

# ---------------------------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------------------------


class _StderrHandler(logging.StreamHandler):
    """Log lines to whatever ``sys.stderr`` is when they are written (click's test runner swaps it per call)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # the stream is always the current sys.stderr
        pass


_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2 (a UsageError)


class _OneLineUsageErrors(click.Group):
    """Usage errors (a bad option value, a missing argument) as one line on stderr and exit 2, like every other
    error; ``--help`` still shows the usage."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _NO_ARGS_IS_HELP as exc:  # a bare group: its help, as click prints it
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else (prog_name or "lfrefsr")
            click.echo(f"{command}: error: {exc.format_message()} (see {command} --help)", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=_OneLineUsageErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lfrefsr")
@verbosity
def cli():
    """Reference-based super-resolution (RefSR-Net) for light fields and hybrid video."""
    from lfrefsr.runtime import keep_freed_memory

    keep_freed_memory()
    if not log.handlers:  # our own logger only: libraries (dask, ...) keep their own settings
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        if log.level == logging.NOTSET:
            log.setLevel(logging.INFO)


@cli.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("lfrefsr-demo"),
              show_default=True, help="Folder for the demo's inputs, stores and outputs.")
@device_option
@verbosity
@handle_errors
def demo(out, device):
    """Run the main job on an embedded synthetic light field and clip, print PSNR against bicubic."""
    from lfrefsr.demo import run_demo

    run_demo(out, device=device, progress=progress(), echo=click.echo)


@cli.group()
def ingest():
    """Folders, videos and captures -> stores."""


@ingest.command("lf")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("store", type=click.Path(path_type=Path))
@apply_options(grid_option, origin_option, scale_option, ref_option, *pattern_options)
@click.option("--lr-dir", type=click.Path(path_type=Path), default=None,
              help="Real LR views (hybrid capture); HR is then kept only for the reference.")
@overwrite_option
@verbosity
@handle_errors
def ingest_lf_command(src, store, grid, origin, scale, ref, pattern, index_base, lr_dir, overwrite):
    """Light-field folder (or folder of captures: light-field video) SRC -> STORE (.zarr or .h5)."""
    from lfrefsr.io.ingest import ingest_lf

    result = ingest_lf(src, store, grid=grid, origin=origin, scale=scale, ref=ref, lr_dir=lr_dir, pattern=pattern,
                       index_base=index_base, overwrite=overwrite, progress=progress())
    click.echo(f"{result.path}: {result.kind.value} {'x'.join(map(str, result.view_shape))} views of "
               f"{result.shape_hr[0]}x{result.shape_hr[1]}, x{result.scale}")


@ingest.command("video")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("store", type=click.Path(path_type=Path))
@scale_option
@click.option("--keyframe-every", type=click.IntRange(min=1), default=None,
              help="Keep HR only on every K-th frame (a hybrid camera).")
@click.option("--max-frames", type=click.IntRange(min=2), default=None, help="Ingest at most N frames.")
@click.option("--lr", "lr_src", type=click.Path(path_type=Path), default=None,
              help="The LR camera's stream of the same frames at 1/scale (video file or frame folder): a hybrid "
                   "video from two streams; its frames replace the protocol's LR frames.")
@overwrite_option
@verbosity
@handle_errors
def ingest_video_command(src, store, scale, keyframe_every, max_frames, lr_src, overwrite):
    """Video file or frame folder SRC -> STORE (.zarr or .h5)."""
    from lfrefsr.io.ingest import ingest_video

    result = ingest_video(src, store, scale=scale, keyframe_every=keyframe_every, max_frames=max_frames,
                          lr=lr_src, overwrite=overwrite, progress=progress())
    click.echo(f"{result.path}: video of {result.view_shape[0]} frames of {result.shape_hr[0]}x{result.shape_hr[1]}, "
               f"x{result.scale}")




@cli.command()
@click.argument("stores", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--method", type=METHODS, default="flowwarp", show_default=True, help="Method name (one).")
@click.option("--ref", type=POSITION, default=None, help="Reference view U,V [default: the store's].")
@click.option("--reference", type=click.Choice(choices(ReferenceMode)), default="previous", show_default=True,
              help="Video: which frame is a frame's reference.")
@click.option("--views", type=Index(), multiple=True, help="Only these views/frames (repeatable).")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="LocalCluster worker processes [default: one per core]; 0 runs in this process.")
@click.option("--threads-per-worker", type=click.IntRange(min=1), default=1, show_default=True,
              help="Torch threads in each worker.")
@click.option("--scheduler", default=None, help="Submit to an existing dask scheduler, e.g. tcp://HOST:8786.")
@click.option("--device", type=click.Choice(choices(Device)), default="auto", show_default=True,
              help="Where models run; cuda tasks ask workers for resources={'GPU': 1}.")
@weights_option
@precision_option
@variant_option
@lightfield_option
@click.option("--psf", type=DegradationSpec("psf"), default=None,
              help="The LR camera's lens: a Gaussian PSF of sigma F LR pixels (gauss:F) [default: the store's "
                   "estimate where its LR views come from a camera, else none].")
@click.option("--noise", type=click.FloatRange(0, 64), default=None,
              help="The LR camera's noise sigma in 1/255 [default: the store's estimate, as --psf].")
@option_option
@click.option("--save-confidence", is_flag=True,
              help="Also store the method's per-pixel confidences (confidence/<method>, one chunk per view).")
@overwrite_option
@verbosity
@handle_errors
def reconstruct(stores, method, ref, reference, views, workers, threads_per_worker, scheduler, device, weights,
                precision, variant, lightfield, psf, noise, extra, save_confidence, overwrite):
    """Super-resolve every non-reference view or frame of STORES, written into each store; reruns resume."""
    from lfrefsr.io.store import Store
    from lfrefsr.methods import method_class
    from lfrefsr.pipeline import check_method, plan, run_serial

    if len(method) != 1:
        raise click.BadParameter("give one method", param_hint="--method")
    device = resolve_device(device, remote=scheduler is not None)
    opened = [Store.open(path) for path in stores]
    tasks = [task for store in opened
             for task in plan(store, reference_mode=ReferenceMode(reference), ref=ref, views=views or None)]
    flags = {"--weights": weights, "--precision": precision, "--lightfield": lightfield, "--psf": psf,
             "--noise": noise}
    options = cli_method_options(method, flags, variant, extra)[method[0]]
    for scale in {store.scale for store in opened}:  # fail fast, before any cluster or store change
        check_method(method[0], scale, options)
    if save_confidence and not method_class(method[0], options).confidence:
        raise click.BadParameter(f"method {method[0]!r} gives no confidence", param_hint="--save-confidence")
    if workers == 0 and scheduler is None:
        summary = run_serial(tasks, method[0], device=device, overwrite=overwrite, progress=progress(),
                             method_options=options, threads=threads_per_worker, confidence=save_confidence)
    else:
        from lfrefsr.distributed import run_distributed

        summary = run_distributed(tasks, method[0], scheduler=scheduler, workers=workers,
                                  threads_per_worker=threads_per_worker, device=device, overwrite=overwrite,
                                  progress=progress(), method_options=options, confidence=save_confidence)
    click.echo(summary.line())
    for label, reason in summary.failed:
        click.echo(f"lfrefsr: failed: {label}: {reason}", err=True)
    if summary.failed:
        sys.exit(1)








@cli.command()
@click.argument("store", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--what", type=click.Choice(["views", "grid", "sweep", "clip"]), default="views", show_default=True,
              help="Per-view PNGs, a grid mosaic, a view sweep over the grid, or the clip.")
@click.option("--method", default=None, help="Which result (sr/<method>), or hr / lr [default: the best one].")
@click.option("--view", type=POSITION, default=None, help="Light-field video clip: the view U,V over time.")
@click.option("--t", "time_step", type=click.IntRange(min=0), default=None, help="Light-field video: one time step.")
@click.option("--codec", type=click.Choice(["h264", "ffv1", "png"]), default="h264", show_default=True,
              help="H.264 (yuv420p) for viewing, FFV1 (lossless) for archiving, or a PNG sequence.")
@click.option("--crf", type=click.IntRange(0, 51), default=18, show_default=True, help="H.264 quality.")
@click.option("--fps", type=click.FloatRange(min=0.1), default=10.0, show_default=True)
@overwrite_option
@verbosity
@handle_errors
def encode(store, out, what, method, view, time_step, codec, crf, fps, overwrite):
    """Re-encode the results of STORE into OUT with PyAV."""
    from lfrefsr.encode import encode as run_encode

    written = run_encode(store, out, what=what, method=method, view=view, t=time_step, codec=codec, crf=crf,
                         fps=fps, overwrite=overwrite)
    click.echo(str(written))


@cli.group(name="eval")
def eval_group():
    """The x8 protocol: PSNR/SSIM of each method (SPEC eval JSON)."""


methods_option = click.option("--methods", type=METHODS, default="bicubic,flowwarp", show_default=True,
                              help="Comma-separated method names.")


@eval_group.command("lf")
@click.argument("src", type=click.Path(path_type=Path))
@json_option
@apply_options(grid_option, origin_option, scale_option, ref_option, methods_option, *pattern_options, device_option,
          weights_option, precision_option, variant_option, lightfield_option, option_option, degrade_option)
@verbosity
@handle_errors
def eval_lf(src, json_path, grid, origin, scale, ref, methods, pattern, index_base, device, weights, precision,
            variant, lightfield, extra, degrade):
    """Every non-reference view of the light field SRC, super-resolved from the reference view."""
    from lfrefsr.evaluate import evaluate_lf, table, write_json

    result = evaluate_lf(src, methods, grid=grid, origin=origin, scale=scale, ref=ref, pattern=pattern,
                         index_base=index_base, device=device, progress=progress(), degradation=degrade,
                         method_options=cli_method_options(methods, {"--weights": weights, "--precision": precision,
                                                                     "--lightfield": lightfield}, variant, extra))
    write_json(result, json_path)
    click.echo(table(result))


@eval_group.command("video")
@click.argument("src", type=click.Path(path_type=Path))
@json_option
@apply_options(scale_option, methods_option, device_option, weights_option, precision_option, variant_option,
               option_option, degrade_option)
@click.option("--max-frames", type=click.IntRange(min=2), default=None, help="Use at most N frames.")
@click.option("--keyframe-every", type=click.IntRange(min=2), default=None, metavar="K",
              help="A hybrid camera's HR keyframes: frames 0, K, 2K, ... are the references, and every other frame "
                   "is super-resolved from them (scored on the in-between frames).")
@click.option("--reference", type=click.Choice(KEYFRAME_MODES), default=ReferenceMode.KEYFRAME.value,
              show_default=True, help="With --keyframe-every: the latest keyframe before each frame, or the keyframes "
                                      "before and after it.")
@verbosity
@handle_errors
def eval_video(src, json_path, scale, methods, device, weights, precision, variant, extra, degrade, max_frames,
               keyframe_every, reference):
    """Each frame t >= 1 of SRC super-resolved with HR frame t-1 as reference (or its HR keyframes)."""
    from lfrefsr.evaluate import evaluate_video, table, write_json

    if keyframe_every is None and click.get_current_context().get_parameter_source("reference").name != "DEFAULT":
        raise click.BadParameter("needs --keyframe-every: without it every frame is HR and its reference is the "
                                 "frame before", param_hint="--reference")
    result = evaluate_video(src, methods, scale=scale, max_frames=max_frames, device=device, progress=progress(),
                            degradation=degrade, keyframe_every=keyframe_every, reference_mode=ReferenceMode(reference),
                            method_options=cli_method_options(methods, {"--weights": weights, "--precision": precision},
                                                              variant, extra))
    write_json(result, json_path)
    click.echo(table(result))


@eval_group.command("match")
@click.argument("pair_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@json_option
@scale_option
@click.option("--search-range", type=click.IntRange(min=1), default=100, show_default=True,
              help="Search +-R HR pixels around each centre.")
@click.option("--methods", type=MATCHERS, default="ccnet,zncc,zncc_blurry,gradient", show_default=True,
              help="Comma-separated matchers.")
@click.option("--aggregate", type=click.IntRange(min=1), default=None, callback=odd_check,
              help="CC-Net: average scores over KxK neighbouring centres per displacement (odd; 1 = the paper's "
                   "per-centre argmax)  [default: 7]", metavar="K")
@weights_option
@device_option
@precision_option
@verbosity
@handle_errors
def eval_match(pair_dirs, json_path, scale, search_range, methods, aggregate, weights, device, precision):
    """Cross-scale matching accuracy on PAIR_DIRS (pair folders, or folders of them), pooled and per pair."""
    from lfrefsr.correspondence.evaluate import evaluate_match, table
    from lfrefsr.evaluate import write_json

    result = evaluate_match(pair_dirs, methods, scale=scale, search_range=search_range, weights=weights,
                            device=device, precision=precision, aggregate=aggregate, progress=progress())
    write_json(result, json_path)
    click.echo(table(result))


@cli.command()
@click.argument("network", type=click.Choice(["ccnet", "sisr", "ssnet"]))
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Training config (pipelines/*.yaml).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder [default: runs/<config name>].")
@click.option("--resume", is_flag=True, help="Continue from the run folder's last checkpoint.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, help="Stop after this many more steps.")
@device_option
@verbosity
@handle_errors
def train(network, config_path, out, resume, max_steps, device):
    """Train NETWORK from a config; checkpoints every few minutes, --resume continues (on any device)."""
    from lfrefsr.training.common import load_config

    config = load_config(config_path)
    out = out or Path("runs") / config_path.stem
    from lfrefsr.training import trainer

    trainer(network)(config, out, resume=resume, progress=progress(), max_steps=max_steps, device=device)
    click.echo(f"run folder: {out}")


@cli.command()
@click.option("--size", type=click.IntRange(min=64), default=512, show_default=True, help="View side in pixels.")
@click.option("--device", type=click.Choice(choices(Device)), default="auto", show_default=True,
              callback=device_check, help="Where models run.")
@precision_option
@click.option("--end-to-end/--stages-only", default=True, show_default=True,
              help="Also reconstruct a synthetic GRID x GRID light field with refsr.")
@click.option("--grid", type=click.IntRange(min=2), default=8, show_default=True,
              help="Views per side of the end-to-end light field.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the results as JSON.")
@verbosity
@handle_errors
def bench(size, device, precision, end_to_end, grid, json_path):
    """Seconds, FLOPs and GFLOP/s of each refsr stage on one view, beside torch's matmul GFLOP/s."""
    from lfrefsr.bench import run_bench
    from lfrefsr.evaluate import write_json

    results = run_bench(size=size, device=device, precision=precision, end_to_end=end_to_end, grid=grid,
                        echo=click.echo)
    if json_path is not None:
        write_json(results, json_path)


@cli.command()
@click.argument("store", type=click.Path(path_type=Path))
@verbosity
@handle_errors
def info(store):
    """Describe a store: kind, axes, sizes, results and how many views each has done."""
    from lfrefsr.io.store import Store

    opened = Store.open(store)
    click.echo(f"{opened.path}  ({opened.kind.value}, layout {opened.attrs['lfrefsr_layout']})")
    click.echo(f"  axes {opened.axes}  views {opened.view_shape}  HR {opened.shape_hr}  LR {opened.shape_lr}  "
               f"x{opened.scale}  {opened.dtype}  ref {opened.ref}")
    click.echo(f"  HR known for {int(opened.hr_known.sum())} of {opened.hr_known.size}; "
               f"source {opened.attrs['source']}")
    if "capture" in opened.attrs:  # LR from a camera: its degradation as estimated at ingest
        from lfrefsr.capture import CaptureEstimate

        found = opened.attrs["capture"]
        click.echo("  LR camera (estimated): " + (CaptureEstimate.from_json(found).line(opened.scale) if found else
                                                   "not estimated (no view has both an HR and an LR image)"))
    for method in opened.methods():
        settings = "".join(f", {key} {value}" for key, value in opened.result_attrs(method).items())
        channels = opened.confidence_channels(method)
        saved = f"; confidence/{method}: {', '.join(channels)}" if channels else ""
        click.echo(f"  sr/{method}: {int(opened.done(method).sum())} views done{settings}{saved}")


cli.add_command(methods_command)


def main():
    cli(prog_name="lfrefsr")


if __name__ == "__main__":
    main()
