"""Networks, one per file, each built from explicit keyword arguments; ``build_model(cfg)`` is where configs stop."""

from __future__ import annotations

from typing import Any

from lfrefsr.registry import Registry

MODELS: Registry[type] = Registry("model")
MODELS.add("ccnet", "lfrefsr.models.ccnet:CCNet")
MODELS.add("srresnet", "lfrefsr.models.srresnet:SRResNetNN")
MODELS.add("ssnet", "lfrefsr.models.ssnet:SSNet")


def build_model(cfg: dict[str, Any]):
    """``{"name": "ccnet", ...keyword arguments...}`` -> a module. The only place a config dict meets a model."""
    cfg = dict(cfg)
    return MODELS.get(cfg.pop("name"))(**cfg)
