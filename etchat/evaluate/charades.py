"""Charades-STA grounding metrics (R1@0.3/0.5/0.7, mIoU), as E.T. Chat's `eval_grounding.py` (spec §11).

A prediction file is a JSON list of {vid, query, span, pred, response}; `pred` is [start, end] or null.
Every sample stays in the denominator: a missing or malformed `pred` counts as failed and scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from etchat.data.records import read_records
from etchat.errors import DataError
from etchat.evaluate.iou import temporal_iou_scalar

CHARADES_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)


def _is_window(x: Any) -> bool:
    return (
        isinstance(x, list | tuple)
        and len(x) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in x)
    )


def charades_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, float | int]:
    """{Total, Failed, R1@0.3, R1@0.5, R1@0.7, mIoU} as fractions (not x100), unrounded."""
    total = len(records)
    if total == 0:
        raise DataError("Charades-STA predictions: no samples to score")
    failed, hits, iou_sum = 0, [0] * len(CHARADES_THRESHOLDS), 0.0
    for i, rec in enumerate(records):
        if not _is_window(rec.get("span")):
            raise DataError(f"Charades-STA sample {i} (vid {rec.get('vid')!r}): 'span' must be [start, end]")
        pred = rec.get("pred")
        if not _is_window(pred):
            failed += 1
            continue
        iou = temporal_iou_scalar(rec["span"], pred)  # an unsorted pred gives 0, as in the original
        if not math.isfinite(iou):
            iou = 0.0
        iou_sum += iou
        for k, t in enumerate(CHARADES_THRESHOLDS):
            hits[k] += iou >= t
    out: dict[str, float | int] = {"Total": total, "Failed": failed}
    out.update({f"R1@{t}": h / total for t, h in zip(CHARADES_THRESHOLDS, hits, strict=True)})
    out["mIoU"] = iou_sum / total
    return out


def load_charades_predictions(path: str | Path) -> list[dict[str, Any]]:
    """Records of a prediction .json/.jsonl file, or of every such file directly in a directory (sorted)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.suffix in (".json", ".jsonl") and not p.name.startswith((".", "metrics"))
        )
        if not files:
            raise DataError(f"{path}: no .json or .jsonl Charades-STA prediction files in this directory")
    elif path.is_file():
        files = [path]
    else:
        raise DataError(f"{path}: no such file or directory; pass a Charades-STA prediction .json or its directory")
    records: list[dict[str, Any]] = []
    for file in files:
        data = read_records(file)
        if not all(isinstance(r, dict) for r in data):
            raise DataError(f"{file}: expected a JSON list of {{vid, query, span, pred, response}} objects")
        for i, rec in enumerate(data):
            if not _is_window(rec.get("span")):
                raise DataError(f"{file}: sample {i} (vid {rec.get('vid')!r}): 'span' must be [start, end]")
        records += data
    return records


def format_charades(metrics: Mapping[str, float | int]) -> str:
    """The log lines: values to 3 decimals as the original script prints them, and the failure rate."""
    lines = [f"Total: {metrics['Total']}  Failed: {metrics['Failed']} ({metrics['Failed'] / metrics['Total']:.1%})"]
    lines += [f"{k}: {metrics[k]:.3f}" for k in (*(f"R1@{t}" for t in CHARADES_THRESHOLDS), "mIoU")]
    return "\n".join(lines) + "\n"
