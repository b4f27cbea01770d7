"""Published numbers to print beside ours (x100, as in the paper; spec §10-11).

Source: Table 1 of arXiv 2409.18111 (E.T. Bench), read off `.github/leaderboard.jpg` of the ETBench
repository; Charades-STA from E.T. Chat's docs/INFERENCE.md. Keys of each row are the Overall column
labels of `etchat.evaluate.scorer.OVERALL_COLUMNS`.
"""

from __future__ import annotations

from etchat.evaluate.scorer import MERGED_COLUMNS, OVERALL_COLUMNS

_COLUMNS: tuple[str, ...] = tuple(label for label, _, _ in OVERALL_COLUMNS)


def _row(*values: float | None) -> dict[str, float | None]:
    assert len(values) == len(_COLUMNS)
    return dict(zip(_COLUMNS, values, strict=True))


# Full benchmark, 7,289 samples.
PUBLISHED_FULL: dict[str, dict[str, float | None]] = {
    "Random": _row(25.0, 25.0, 20.0, *[None] * 11),
    "VTimeLLM": _row(28.4, 31.0, 29.2, 7.6, 1.9, 18.2, 15.9, 28.9, 12.4, 13.1, 8.7, 6.4, 6.8, 1.9),
    "VTG-LLM": _row(6.6, 12.0, 7.8, 15.9, 3.7, 14.4, 26.8, 48.2, 40.2, 18.6, 20.8, 14.4, 8.9, 1.4),
    "TimeChat": _row(30.8, 27.6, 24.6, 26.2, 3.9, 10.1, 29.1, 40.5, 16.6, 12.5, 5.6, 9.2, 18.0, 1.5),
    "LITA": _row(33.0, 40.8, 27.2, 22.2, 4.6, 18.0, 29.7, 23.9, 39.7, 17.2, 21.0, 12.2, 16.0, 2.2),
    "E.T. Chat": _row(44.6, 37.0, 33.6, 38.6, 10.2, 30.8, 25.4, 62.5, 38.4, 19.7, 24.4, 14.6, 16.5, 3.7),
}

# The 470-sample subset (`--subset`), on which the commercial models were evaluated.
PUBLISHED_SUBSET: dict[str, dict[str, float | None]] = {
    "GPT-4V": _row(33.3, 40.9, 46.2, 27.0, 1.8, 18.0, 28.6, 55.1, 16.1, 19.4, 21.9, 13.5, 23.9, 0.0),
    "GPT-4o": _row(27.8, 27.3, 57.7, 40.4, 4.5, 20.0, 17.6, 56.9, 46.9, 22.3, 23.1, 14.9, 13.6, 0.0),
    "Gemini-1.5-Flash": _row(38.9, 50.0, 61.5, 43.9, 5.4, 27.0, 5.4, 60.8, 31.6, 14.9, 16.5, 13.3, 20.8, 1.0),
    "Gemini-1.5-Pro": _row(61.1, 27.3, 57.7, 43.1, 6.2, 33.8, 7.9, 47.0, 24.0, 17.5, 5.8, 9.8, 32.1, 1.0),
    "E.T. Chat": _row(33.3, 31.8, 30.8, 32.9, 8.9, 28.1, 15.3, 60.9, 39.8, 19.5, 23.7, 14.8, 14.8, 1.3),
}

# E.T. Chat (Phi-3-mini) on the full Charades-STA test set.
PUBLISHED_CHARADES: dict[str, float] = {"R1@0.3": 65.7, "R1@0.5": 45.9, "R1@0.7": 20.0, "mIoU": 42.3}


def published_merged(row: dict[str, float | None]) -> dict[str, float | None]:
    """Merged scores of a published row (the paper does not print them).

    Derived from the one-decimal Table 1 values with the official formulas, so about +-0.05 off; a .x5
    mean may round either way (E.T. Chat's full-set Sim (cap) is 17.1 or 17.2).
    """
    out: dict[str, float | None] = {}
    for label, cols in MERGED_COLUMNS:
        vals = [row[c] for c in cols]
        out[label] = None if None in vals else round(sum(vals) / len(vals), 1)  # type: ignore[arg-type]
    return out
