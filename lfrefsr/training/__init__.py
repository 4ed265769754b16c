"""Training: configs (``pipelines/*.yaml``), synthetic training pairs, resumable loops for each network."""
