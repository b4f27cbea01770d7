"""Facts about E.T. Bench shared by the data generator, the validator, inference and the scorer.

Task codes, capability groups and the per-task answer shapes follow the official benchmark
(see shared/spec/etbench_metrics.md §1-2). This module is the one place these facts live.
"""

from __future__ import annotations

from dataclasses import dataclass

# The 12 task codes in the order of the official Overall table.
TASKS: tuple[str, ...] = ("rar", "eca", "rvq", "tvg", "epm", "tal", "evs", "vhd", "dvc", "slc", "tem", "gvq")

CAPABILITIES: dict[str, tuple[str, ...]] = {
    "referring": ("rar", "eca", "rvq"),
    "grounding": ("tvg", "epm", "tal", "evs", "vhd"),
    "captioning": ("dvc", "slc"),
    "complex": ("tem", "gvq"),
}


@dataclass(frozen=True)
class TaskShape:
    """What fields a sample of a task carries and how they are shaped."""

    options: tuple[int, ...] = ()  # allowed option counts (`o`, with `p` indexing it); () = no options
    tgt: str | None = None  # None | "span" ([s, e]) | "spans" ([[s, e], ...]) | "spans_or_annotators"
    captions: bool = False  # `g` holds one caption per `tgt` span
    src: bool = False  # the question refers to timestamps (`src`, `<vid>` in the vid flavour)


TASK_SHAPES: dict[str, TaskShape] = {
    "rar": TaskShape(options=(4,), src=True),
    "eca": TaskShape(options=(4,), src=True),
    "rvq": TaskShape(options=(5,), src=True),
    "tvg": TaskShape(tgt="span"),
    "epm": TaskShape(tgt="span"),
    "tal": TaskShape(tgt="spans"),
    "evs": TaskShape(tgt="spans"),
    "vhd": TaskShape(tgt="spans_or_annotators"),
    "dvc": TaskShape(tgt="spans", captions=True),
    "slc": TaskShape(tgt="spans", captions=True),
    "tem": TaskShape(tgt="spans", src=True),
    "gvq": TaskShape(options=(4, 5), tgt="span"),
}

# Multiple-choice tasks: E.T. Chat appends this to the prompt and applies its repetition penalty.
MULTIPLE_CHOICE_TASKS: tuple[str, ...] = ("rar", "eca", "rvq")

VID_TOKEN = "<vid>"
IMAGE_TOKEN = "<image>"
