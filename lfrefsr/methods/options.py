"""Method options, declared once per method as a frozen dataclass (``Method.Options``).

Each field is one option: its name, type (the annotation), default, help and, where the CLI has a dedicated flag for
it, that flag (``--weights``, ``--precision``, ``--lightfield``, ``--psf``, ``--noise``). The CLI builds its flags and
``--option KEY=VALUE`` from these declarations, the pipeline builds methods from them (``Options.build`` refuses an
unknown name or a bad value in one line), and the eval JSON records them (``Options.as_json``).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar

from lfrefsr.errors import LfrefsrError

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def option(default: Any, help: str, *, flag: str | None = None, choices: tuple | None = None,
           camera: bool = False) -> Any:
    """A dataclass field declaring one option. ``flag``: the CLI's dedicated flag for it; ``choices``: the values it
    takes; ``camera``: a parameter of the LR camera (``lfrefsr.capture.CaptureEstimate``), which the pipeline fills
    from the store's estimate unless the user gives it."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, "choices": choices,
                                                        "camera": camera})


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _types(hint: Any) -> tuple[type, ...]:
    """The plain types an annotation admits: ``int | None`` -> (int, NoneType)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(t for arg in typing.get_args(hint) for t in _types(arg))
    return (hint,)


def _convert(value: Any, admitted: tuple[type, ...]) -> Any:
    """``value`` as one of the ``admitted`` types; text (the CLI's KEY=VALUE) is parsed. Raises ValueError."""
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        if type(None) in admitted:
            return None
        raise ValueError("a value is required")
    for kind in (bool, int, float, str):  # bool before int: True is an int
        if kind not in admitted:
            continue
        if isinstance(value, str) and kind is not str:
            try:
                if kind is bool:
                    if value.lower() not in _TRUE + _FALSE:
                        continue
                    return value.lower() in _TRUE
                return kind(value)
            except ValueError:
                continue
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
            return value
        if kind is str and hasattr(value, "__fspath__"):  # a weights path
            return str(value)
    names = " or ".join("None" if t is type(None) else t.__name__ for t in admitted)
    raise ValueError(f"not {names}")


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of every method's options (none)."""

    method: ClassVar[str] = ""

    @classmethod
    def declared(cls) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(cls)

    @classmethod
    def build(cls, method: str, given: Mapping[str, Any] | None = None) -> Options:
        """The options of ``method`` from a mapping (keyword arguments, the pipeline's dict, the CLI's KEY=VALUE),
        each converted to its declared type; an unknown name or a value outside the choices is one line."""
        known = {f.name: f for f in cls.declared()}
        values = {}
        for name, value in (given or {}).items():
            if name not in known:
                takes = ", ".join(known) or "none"
                raise LfrefsrError(f"method {method!r} has no option {name!r} (its options: {takes})")
            try:
                value = _convert(value, _types(_hints(cls)[name]))
            except ValueError as exc:
                raise LfrefsrError(f"method {method!r}: option {name}={value!r}: {exc}") from None
            choices = known[name].metadata["choices"]
            if choices is not None and value not in choices:
                raise LfrefsrError(f"method {method!r}: option {name} is one of {list(choices)}, not {value!r}")
            values[name] = value
        return cls(**values)

    @classmethod
    def with_flag(cls, flag: str) -> str | None:
        """The option the CLI's ``flag`` sets for this method, or None where the method has none."""
        return next((f.name for f in cls.declared() if f.metadata.get("flag") == flag), None)

    @classmethod
    def camera(cls) -> tuple[str, ...]:
        """The LR camera's parameters these options take."""
        return tuple(f.name for f in cls.declared() if f.metadata.get("camera"))

    def as_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in self.declared()}

    @classmethod
    def describe(cls) -> list[tuple[str, str, str, str]]:
        """(name, type, default, help) per option, for ``lfrefsr methods``."""
        rows = []
        for f in cls.declared():
            kind = " | ".join("None" if t is type(None) else t.__name__ for t in _types(_hints(cls)[f.name]))
            choices = f.metadata["choices"]
            help_text = f.metadata["help"] + (f" [{'|'.join(map(str, choices))}]" if choices else "")
            if f.metadata["flag"]:
                help_text += f" (also {f.metadata['flag']})"
            rows.append((f.name, kind, repr(f.default), help_text))
        return rows


@dataclasses.dataclass(frozen=True)
class LearnedOptions(Options):
    """What every method that runs trained networks takes."""

    precision: str = option("fp32", "Arithmetic of the networks; bf16 runs float32 where the CPU has no native "
                                    "bfloat16 (one warning)", flag="--precision", choices=("fp32", "bf16"))


@dataclasses.dataclass(frozen=True)
class CameraOptions(Options):
    """The LR camera as the methods that model it take it (``lfrefsr.capture``)."""

    psf: float = option(0.0, "The LR camera's Gaussian PSF sigma in LR pixels (0: the protocol's camera)",
                        flag="--psf", camera=True)
    noise: float = option(0.0, "The LR camera's noise sigma in 1/255", flag="--noise", camera=True)
