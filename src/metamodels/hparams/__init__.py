"""Hyperparameters from CNN weights (paper 000, Appendix A): encodings, meta-models, baselines, training."""
