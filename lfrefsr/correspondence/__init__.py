"""Cross-scale correspondence: CC-Net features and classical baselines on one blocked matching engine."""
