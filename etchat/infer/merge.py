"""Merge shard logs into the predictions the scorers read.

E.T. Bench: exactly the annotation list, in its order, each sample with the answer added as `a` (spec
etbench_metrics §1.1). Charades-STA: a list of `{vid, query, span, pred, response}` as `infer_charades.py` writes
(`pred`: the times of the answer's `<vid>`s, None without any). Only lines of the shards' fingerprint count. A sample
without a line is *missing* and the merge fails listing them; a sample whose line is an error (missing or unreadable
video) is reported separately and, with `on_error: empty`, answered with an empty string (a failed answer for the
scorer, still in the denominator).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etchat.errors import DataError
from etchat.io import read_json

from .samples import InferSample
from .store import read_lines

log = logging.getLogger(__name__)

MAX_LISTED = 20


@dataclass
class MergeResult:
    predictions: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)


def _describe(sample: InferSample) -> str:
    task = f" {sample.task}" if sample.task else ""
    return f"#{sample.index} {sample.key}{task} ({sample.video})"


def _listing(samples: Sequence[InferSample], extra: dict[str, str] | None = None) -> str:
    rows = [f"  {_describe(s)}" + (f": {extra[s.key]}" if extra and s.key in extra else "") for s in samples]
    more = f"\n  ... and {len(rows) - MAX_LISTED} more" if len(rows) > MAX_LISTED else ""
    return "\n".join(rows[:MAX_LISTED]) + more


def read_shard_summaries(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    summaries = []
    for path in paths:
        data = read_json(path)
        if not isinstance(data, dict) or "fingerprint" not in data or "log" not in data:
            raise DataError(f"{path}: not a shard summary written by `etchat infer-shard`")
        summaries.append(data)
    fingerprints = {s["fingerprint"] for s in summaries}
    if len(fingerprints) > 1:
        raise DataError(
            "the shards were answered with different settings or checkpoints (fingerprints "
            f"{', '.join(sorted(fingerprints))}); re-run the shards with one configuration"
        )
    return summaries


def merge(
    benchmark: str,
    samples: Sequence[InferSample],
    summaries: Sequence[dict[str, Any]],
    on_error: str = "empty",
) -> MergeResult:
    """Predictions for `samples` from the logs named by the shard `summaries` (raises DataError if any is missing)."""
    if not summaries:
        raise DataError("no shard summaries to merge")
    fp = summaries[0]["fingerprint"]
    shards = {s["shards"] for s in summaries}
    digests = {s.key: s.digest for s in samples}
    found: dict[str, dict[str, Any]] = {}
    for summary in summaries:
        for line in read_lines(summary["log"]):
            key = line.get("key")
            if key in digests and line.get("fingerprint") == fp and line.get("sample") == digests[key]:
                # An answer beats an earlier error line; the last line of a kind wins.
                if line.get("status") == "ok" or found.get(key, {}).get("status") != "ok":
                    found[key] = line
    missing = [s for s in samples if s.key not in found]
    if missing:
        raise DataError(
            f"{benchmark}: {len(missing)} of {len(samples)} samples have no answer in the shard logs "
            f"({', '.join(str(s['log']) for s in summaries)}):\n{_listing(missing)}\n"
            f"re-run their shards (they resume where they stopped)"
        )
    errors = [s for s in samples if found[s.key].get("status") != "ok"]
    reasons = {s.key: str(found[s.key].get("error")) for s in errors}
    if errors and on_error == "fail":
        raise DataError(
            f"{benchmark}: {len(errors)} samples could not be answered (infer.on_error: fail):\n"
            f"{_listing(errors, reasons)}\nfix or remove their videos and re-run the shards, or set "
            f"infer.on_error: empty to score them as failed answers"
        )
    for s in errors:
        log.warning("no answer for %s: %s", _describe(s), reasons[s.key])
    if benchmark == "etbench":
        predictions = [_etbench_prediction(s, found[s.key]) for s in samples]
    elif benchmark == "charades":
        predictions = [_charades_prediction(s, found[s.key]) for s in samples]
    else:
        predictions = [found[s.key] for s in samples]
    ok = [found[s.key] for s in samples if found[s.key].get("status") == "ok"]
    summary = {
        "benchmark": benchmark,
        "samples": len(samples),
        "answered": len(ok),
        "errors": len(errors),
        "missing": 0,
        "on_error": on_error,
        "error_samples": [
            {"index": s.index, "key": s.key, "video": s.video, "task": s.task, "error": reasons[s.key]} for s in errors
        ],
        "capped": sum(bool(line.get("capped_by")) for line in ok),
        "truncated": sum(bool(line.get("truncated")) for line in ok),
        "not_stopped": sum(not line.get("stopped") for line in ok),
        "per_task": dict(sorted(Counter(s.task for s in samples if s.task).items())),
        "shards": sorted(shards)[0] if len(shards) == 1 else sorted(shards),
        "fingerprint": fp,
        "checkpoint": summaries[0].get("checkpoint"),
        "settings": summaries[0].get("settings"),
        "seconds": round(sum(float(line.get("seconds") or 0) for line in ok), 3),
    }
    return MergeResult(predictions, summary)


def _etbench_prediction(sample: InferSample, line: dict[str, Any]) -> dict[str, Any]:
    record = dict(sample.record)
    record["a"] = line["answer"] if line.get("status") == "ok" else ""
    return record


def _charades_prediction(sample: InferSample, line: dict[str, Any]) -> dict[str, Any]:
    ok = line.get("status") == "ok"
    values = [v for v in line.get("vid_values", []) if v is not None] if ok else []
    return {
        "vid": sample.record["vid"],
        "query": sample.record["query"],
        "span": sample.record["span"],
        "pred": values or None,
        "response": line["answer"] if ok else "",
    }
