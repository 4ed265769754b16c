"""lfrefsr: reference-based super-resolution (RefSR-Net) for light fields and hybrid video."""

__version__ = "0.1.0"
