"""Shared parameter types and options of the ``lfrefsr`` command line, defined once (as rasterio's ``rio`` does):
click types check values (``click.BadParameter``), ``handle_errors`` turns user-facing errors into one line."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from lfrefsr.errors import LfrefsrError
from lfrefsr.modes import Device, Precision, choices

# ---------------------------------------------------------------------------------------------------------------
# Parameter types
# ---------------------------------------------------------------------------------------------------------------


class _IntPair(click.ParamType):
    """Two non-negative integers separated by ``sep`` ("8x8", "0,0")."""

    def __init__(self, sep: str, what: str, minimum: int):
        self.sep, self.name, self.minimum = sep, what, minimum

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = str(value).lower().split(self.sep)
        try:
            pair = tuple(int(p) for p in parts)
        except ValueError:
            pair = ()
        if len(pair) != 2 or min(pair) < self.minimum:
            self.fail(f"{value!r} is not a {self.name} like 2{self.sep}3 (integers >= {self.minimum})", param, ctx)
        return pair


GRID = _IntPair("x", "grid", 1)
POSITION = _IntPair(",", "position U,V", 0)


class _NameList(click.ParamType):
    """Comma-separated names checked against a registry module's ``available()``."""

    def __init__(self, what: str, registry: str):
        self.name, self.what, self.registry = f"{what}s", what, registry

    def convert(self, value, param, ctx):
        import importlib

        available = importlib.import_module(self.registry).available()
        names = value if isinstance(value, list) else [n.strip() for n in str(value).split(",") if n.strip()]
        unknown = [n for n in names if n not in available]
        if unknown or not names:
            self.fail(f"unknown {self.what} {', '.join(unknown) or '(none)'}; available: {', '.join(available)}",
                      param, ctx)
        return names


METHODS = _NameList("method", "lfrefsr.methods")
MATCHERS = _NameList("matcher", "lfrefsr.correspondence.matchers")


class _KeyValue(click.ParamType):
    """``KEY=VALUE`` -> (key, value text); the method's declared type converts the text."""

    name = "key=value"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        key, sep, text = str(value).partition("=")
        if not sep or not key.strip():
            self.fail(f"{value!r} is not KEY=VALUE", param, ctx)
        return key.strip(), text.strip()


def scale_check(ctx, param, value):
    if value is not None and value < 2:
        raise click.BadParameter(f"scale must be >= 2, got {value}")
    return value


def odd_check(ctx, param, value):
    if value is not None and value % 2 == 0:
        raise click.BadParameter(f"must be odd (a window centred on the centre), got {value}")
    return value


def device_check(ctx, param, value):
    return resolve_device(value)


# ---------------------------------------------------------------------------------------------------------------
# Shared options, defined once
# ---------------------------------------------------------------------------------------------------------------


def verbosity(command):
    """-v / -q on every command."""

    def set_level(ctx, param, value):
        if value:
            state = ctx.ensure_object(dict)
            state[param.name] = True
            logging.getLogger("lfrefsr").setLevel(logging.DEBUG if param.name == "verbose" else logging.WARNING)
        return value

    command = click.option("-v", "--verbose", is_flag=True, expose_value=False, callback=set_level,
                           help="Show debugging output and tracebacks.")(command)
    return click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=set_level,
                        help="No progress bars.")(command)


scale_option = click.option("--scale", type=int, default=8, show_default=True, callback=scale_check,
                            help="Scale factor between HR and LR (>= 2).")
grid_option = click.option("--grid", type=GRID, default=None,
                           help="Sub-grid to use, ROWSxCOLS [default: 8x8 or the whole grid if smaller].")
origin_option = click.option("--origin", type=POSITION, default="0,0", show_default=True,
                             help="Grid position U,V where --grid starts.")
ref_option = click.option("--ref", type=POSITION, default="0,0", show_default=True,
                          help="Reference view U,V (0-based).")
pattern_options = [
    click.option("--pattern", default=None, help="File name pattern with {u} and {v}, or {index}."),
    click.option("--index-base", type=int, default=None, help="First index of --pattern (default 0)."),
]
device_option = click.option("--device", type=click.Choice(choices(Device)), default="auto",
                             show_default=True, callback=device_check, help="Where models run.")
overwrite_option = click.option("--overwrite", is_flag=True, help="Replace existing output.")
precision_option = click.option("--precision", type=click.Choice(choices(Precision)), default="fp32",
                                show_default=True,
                                help="Learned methods: bf16 autocast where the CPU or GPU has native bfloat16 "
                                     "(elsewhere float32 runs, with a warning).")
# Method options: the flags below set the option a method declares with that flag (``Method.Options``); --option
# KEY=VALUE sets any declared option by name (``lfrefsr methods`` lists them).
variant_option = click.option("--variant", type=click.Choice(["default", "paper"]), default=None,
                              help="refsr: the default method or the paper's configuration (as refsr_paper).")
lightfield_option = click.option(
    "--lightfield/--per-view", "lightfield", default=None,
    help="refsr on light fields: align with the disparity all views share [default], or each view on its own.")
weights_option = click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
                              help="A checkpoint written by `lfrefsr train` instead of the shipped weights.")
option_option = click.option("--option", "-o", "extra", type=_KeyValue(), multiple=True, metavar="KEY=VALUE",
                             help="Any option a method declares, by name (`lfrefsr methods` lists them); "
                                  "repeatable.")
class DegradationSpec(click.ParamType):
    """``--degrade noise=3,jpeg=85``: a ``protocol.Degradation``; with ``key``, the value of that one item
    (``--psf gauss:F`` -> the PSF sigma)."""

    def __init__(self, key: str | None = None):
        self.key, self.name = key, "spec" if key is None else "gauss:F"

    def convert(self, value, param, ctx):
        from lfrefsr.protocol import Degradation

        if not isinstance(value, str):
            return value
        try:
            parsed = Degradation.parse(value if self.key is None else f"{self.key}={value}")
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return parsed if self.key is None else getattr(parsed, self.key)


degrade_option = click.option(
    "--degrade", type=DegradationSpec(), default=None,
    help="Degrade the LR views after the x8 protocol, as a real camera would: comma-separated noise=S (Gaussian, "
         "S/255), jpeg=Q, h264=CRF, psf=gauss:F (Gaussian of sigma F x scale HR px before decimation), gain=R,G,B; "
         "seeded. Scores stay against the clean HR.")
json_option = click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
                           help="Where to write the results (SPEC eval JSON).")


def apply_options(*decorators):
    def apply(command):
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


def progress() -> bool:
    ctx = click.get_current_context()
    return not ctx.ensure_object(dict).get("quiet", False)


def handle_errors(command):
    """One line on stderr for user-facing errors; the traceback only with -v."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (LfrefsrError, OSError) as exc:  # OSError: a full disk, a permission, a vanished file
            if click.get_current_context().ensure_object(dict).get("verbose"):
                raise
            if isinstance(exc, OSError) and not isinstance(exc, LfrefsrError):
                where = f": {exc.filename}" if exc.filename else ""
                message = f"{exc.strerror or type(exc).__name__}{where}"
            else:
                message = str(exc)
            click.echo(f"lfrefsr: error: {message}", err=True)
            sys.exit(1)

    return wrapper



class Index(click.ParamType):
    """A view or frame index: "U,V", "T" or "T,U,V"."""

    name = "index"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            index = tuple(int(p) for p in str(value).split(","))
        except ValueError:
            index = ()
        if not index or min(index) < 0 or len(index) > 3:
            self.fail(f"{value!r} is not a view index like 0,1 (light field), 5 (video) or 2,0,1", param, ctx)
        return index


def resolve_device(device: str, remote: bool = False) -> str:
    """auto -> cuda when this machine has one; cuda without a GPU is refused unless the work runs remotely."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not remote and not torch.cuda.is_available():
        raise click.BadParameter("--device cuda, but torch sees no CUDA GPU on this machine", param_hint="--device")
    return device
