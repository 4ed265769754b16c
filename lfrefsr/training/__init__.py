"""Training: configs (``pipelines/*.yaml``), synthetic training pairs, resumable loops for each network."""

from lfrefsr.registry import Registry

TRAINERS = Registry("network")  # network -> its training function (config, out, *, resume, progress, max_steps, device)
TRAINERS.add("ccnet", "lfrefsr.training.ccnet:train_ccnet")
TRAINERS.add("sisr", "lfrefsr.training.sisr:train_sisr")
TRAINERS.add("ssnet", "lfrefsr.training.ssnet:train_ssnet")


def trainer(network: str):
    """The training function of ``network`` (ccnet, sisr, ssnet)."""
    return TRAINERS.get(network)
