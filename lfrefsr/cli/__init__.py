"""The ``lfrefsr`` command line (``lfrefsr.cli.commands``), its shared options (``lfrefsr.cli.options``) and the
options it gives methods (``lfrefsr.cli.method_options``)."""

from lfrefsr.cli.commands import cli, main  # noqa: F401
