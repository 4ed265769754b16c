"""Networks, one per file, each built from explicit keyword arguments; ``build_model(cfg)`` is where configs stop."""

from __future__ import annotations

from typing import Any


def build_model(cfg: dict[str, Any]):
    """``{"name": "ccnet", ...keyword arguments...}`` -> a module. The only place a config dict meets a model."""
    cfg = dict(cfg)
    name = cfg.pop("name")
    if name == "ccnet":
        from lfrefsr.models.ccnet import CCNet

        return CCNet(**cfg)
    if name == "srresnet":
        from lfrefsr.models.srresnet import SRResNetNN

        return SRResNetNN(**cfg)
    if name == "ssnet":
        from lfrefsr.models.ssnet import SSNet

        return SSNet(**cfg)
    raise ValueError(f"unknown model {name!r}")
