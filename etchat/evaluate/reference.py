"""Predictions checked against the annotation they answer (`etchat score --reference`).

A predictions file is the annotation list with the model's answer in `a`. Scored on its own it cannot tell a
lost shard (fewer samples: the mean of what is left may be higher) or an edited ground truth. Against the
reference annotation every sample must appear exactly once with its ground truth unchanged:
- a prediction whose sample (task, source, idx) is not in the reference, or appears twice: an error;
- a prediction whose ground-truth fields differ from the reference: an error naming the sample and field;
- a reference sample with no prediction: added with an empty answer (scored as a failed answer, so it stays in
  every denominator) and listed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from etchat.data.formats import etbench_name, etbench_sample
from etchat.errors import DataError

GROUND_TRUTH = ("tgt", "src", "o", "p", "g", "duration", "video")
LISTED = 10


def _listing(keys: Sequence[tuple]) -> str:
    more = f", ... and {len(keys) - LISTED} more" if len(keys) > LISTED else ""
    return ", ".join(etbench_name(k) for k in keys[:LISTED]) + more


def check_against_reference(
    predictions: Sequence[dict[str, Any]], reference: Sequence[dict[str, Any]], where: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """The predictions completed with the missing reference samples, and the log lines that say what was found.
    Raises DataError for duplicates, extra samples and changed ground truth (`where` names the reference)."""
    expected = {etbench_sample(r): r for r in reference}
    counts = Counter(etbench_sample(p) for p in predictions)
    duplicates = sorted((k for k, n in counts.items() if n > 1), key=str)
    if duplicates:
        raise DataError(f"predictions answer {len(duplicates)} samples more than once: {_listing(duplicates)}")
    extra = sorted((k for k in counts if k not in expected), key=str)
    if extra:
        raise DataError(f"{len(extra)} predictions are not samples of {where}: {_listing(extra)}; score them against "
                        "the annotation file they were made from")  # fmt: skip
    for prediction in predictions:
        sample = etbench_sample(prediction)
        truth = expected[sample]
        for field in GROUND_TRUTH:
            if prediction.get(field) != truth.get(field):
                raise DataError(
                    f"prediction {etbench_name(sample)}: '{field}' is {prediction.get(field)!r} in the "
                    f"predictions but {truth.get(field)!r} in {where}; the predictions were made from another or an "
                    "edited annotation file"
                )
    missing = [k for k in expected if k not in counts]
    completed = list(predictions) + [{**expected[k], "a": ""} for k in missing]
    lines = [f"Checked against {where}: {len(reference)} samples, {len(predictions)} predicted"]
    if missing:
        lines.append(f"Missing predictions, scored as failed answers: {len(missing)}: {_listing(missing)}")
    return completed, lines
