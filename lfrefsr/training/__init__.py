"""Training: configs (``pipelines/*.yaml``), synthetic training pairs, resumable loops for each network."""


def trainer(network: str):
    """The training function of ``network`` (ccnet, sisr, ssnet)."""
    if network == "ccnet":
        from lfrefsr.training.ccnet import train_ccnet as train
    elif network == "sisr":
        from lfrefsr.training.sisr import train_sisr as train
    elif network == "ssnet":
        from lfrefsr.training.ssnet import train_ssnet as train
    else:
        raise ValueError(f"unknown network {network!r}")
    return train
