"""The options each method gets from the command line, read from the methods' own declarations (``Method.Options``):
a flag (``--weights``, ``--precision``, ``--lightfield``, ``--psf``, ``--noise``) sets the option a method declares
with that flag, ``--variant`` picks a method's variant, ``--option KEY=VALUE`` sets any declared option by name."""

from __future__ import annotations

import sys
from typing import Any

import click

from lfrefsr.cli.options import handle_errors, verbosity
from lfrefsr.errors import LfrefsrError

# what a method without the flag's option lacks, for the one-line refusal
FLAG_NOUNS = {"--weights": "weights", "--lightfield": "light-field alignment", "--psf": "LR camera model",
              "--noise": "LR camera model"}
# flags whose default is a value, not "not given": they go to the methods that take them and pass the others by
# (``eval --methods bicubic,refsr --precision bf16``)
OPTIONAL_FOR = ("--precision",)


def _registered(has) -> list[str]:
    """The registered methods whose class ``has`` what is asked."""
    from lfrefsr.methods import available, method_class

    return [name for name in available() if has(method_class(name))]


def _refuse(flag: str, lacking: list[str]) -> None:
    names = ", ".join(repr(m) for m in lacking)
    what = "has" if len(lacking) == 1 else "have"
    takers = _registered(lambda cls: cls.Options.with_flag(flag))
    raise click.BadParameter(f"{flag} applies to {', '.join(takers)}; {names} {what} no {FLAG_NOUNS[flag]}",
                             param_hint=flag)


def cli_method_options(methods: list[str], flags: dict[str, Any], variant: str | None = None,
                       extra: tuple[tuple[str, str], ...] = ()) -> dict[str, dict | None]:
    """Per method, the options the command line gives it (None: its defaults). ``flags``: flag -> value, None where
    not given. A flag or KEY no method among ``methods`` declares is refused in one line, as is a value the
    method's declared type or choices refuse."""
    from lfrefsr.methods import method_class, typed_options

    chosen: dict[str, dict[str, Any]] = {name: {} for name in methods}
    if variant is not None:
        with_variants = [name for name in methods if method_class(name).variants]
        if not with_variants:
            with_any = _registered(lambda cls: cls.variants)
            raise click.BadParameter(f"--variant applies to {', '.join(with_any)}, which is not among the methods",
                                     param_hint="--variant")
        for name in with_variants:
            chosen[name]["variant"] = variant
    for flag, value in flags.items():
        if value is None:
            continue
        fields = {name: method_class(name, chosen[name]).Options.with_flag(flag) for name in methods}
        if flag in OPTIONAL_FOR:
            fields = {name: field for name, field in fields.items() if field and value != _default(name, field)}
        elif not any(fields.values()):
            _refuse(flag, methods)
        for name, field in fields.items():
            if field:
                chosen[name][field] = value
    for key, value in extra:
        takers = [name for name in methods if any(f.name == key for f in method_class(name, chosen[name]).Options
                                                  .declared())]
        if not takers:
            raise click.BadParameter(f"no method among {', '.join(methods)} has an option {key!r} (see `lfrefsr "
                                     "methods`)", param_hint="--option")
        for name in takers:
            chosen[name][key] = value
    for name, options in chosen.items():
        try:
            typed_options(name, options)
        except LfrefsrError as exc:
            raise click.BadParameter(str(exc), param_hint="--option" if extra else "--variant") from None
    return {name: options or None for name, options in chosen.items()}


def _default(method: str, field: str) -> Any:
    from lfrefsr.methods import method_class

    return next(f.default for f in method_class(method).Options.declared() if f.name == field)


@click.command("methods")
@click.argument("names", nargs=-1)
@verbosity
@handle_errors
def methods_command(names):
    """List the methods and, for each, the options it declares (name, type, default, help), as --option KEY=VALUE
    and the dedicated flags set them."""
    from lfrefsr.methods import available, method_class

    unknown = [name for name in names if name not in available()]
    if unknown:
        raise click.BadParameter(f"unknown method {', '.join(unknown)}; available: {', '.join(available())}",
                                 param_hint="NAMES")
    for name in names or available():
        cls = method_class(name)
        summary = (sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[:1]  # the method's module says
        click.echo(f"{name}: {''.join(summary).removeprefix(f'``{cls.name}``: ')}")
        if cls.variants:
            click.echo(f"  --variant {'|'.join(cls.variants)}: " +
                       ", ".join(f"{key} runs {value}" for key, value in cls.variants.items()))
        for option, kind, default, help_text in cls.Options.describe():
            click.echo(f"  {option} ({kind}, default {default}): {help_text}")
