"""E.T. Bench scorer (parsers, per-task metrics, aggregation) and Charades-STA grounding metrics.

Public API: `score_predictions`, `load_predictions`, `load_subset`, `apply_subset`, `ScoreOptions`,
`Metrics`, `write_outputs`, `charades_metrics`; published numbers live in `etchat.evaluate.published`.
See NOTES.md beside this file for every judgment call and deliberate difference from the official script.
"""

from etchat.evaluate.charades import charades_metrics, load_charades_predictions
from etchat.evaluate.outputs import write_outputs
from etchat.evaluate.scorer import (
    Metrics,
    ScoreOptions,
    apply_subset,
    load_predictions,
    load_subset,
    score_predictions,
)

__all__ = [
    "Metrics",
    "ScoreOptions",
    "apply_subset",
    "charades_metrics",
    "load_charades_predictions",
    "load_predictions",
    "load_subset",
    "score_predictions",
    "write_outputs",
]
