"""etchat: E.T. Chat (E.T. Bench, NeurIPS 2024) as a reproducible pipeline."""

__version__ = "0.1.0"
