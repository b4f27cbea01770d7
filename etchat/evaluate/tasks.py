"""Per-task metrics of E.T. Bench, one (task, source) group at a time (spec §4).

Each scorer returns the official keys for one source, rounded as the official script rounds them, plus
the list of answers it could not read. Rounding: Python's `round(x, 5)` on Python floats, except the
dense-captioning caption metrics (BLEU ... SentSim), which the official averages with `np.mean` and so
rounds with numpy's round-half-even on a float64 (spec §14); we keep those as `np.float64` on purpose,
so that the task-level mean over sources is rounded the same way too. The DVC/SLC `F1` values are
Python floats (Python rounding), as in the official script.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from etchat.evaluate.captions import CAPTION_METRICS, CaptionGroup, mean_over_videos
from etchat.evaluate.iou import dvc_iou, temporal_iou, temporal_iou_scalar
from etchat.evaluate.parsers import (
    ParseError,
    clean_choice_answer,
    clean_gvq_answer,
    first_number,
    leading_letter,
    option_map,
    option_text,
    paren_letter,
    parse_dense_captions,
    parse_intervals,
    remove_nonascii,
)

THRESHOLDS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7)
MAX_PROPOSALS = 1000  # predictions kept per video by the dense-captioning evaluator
EVS_BINS = 1000  # 1-second bins; anything at or after 1000 s is ignored

McForm = Literal["flat", "nested"]
Similarity = Callable[[str, str], float]
Values = dict[str, Any]


@dataclass(frozen=True)
class Sample:
    """One prediction: the annotation fields the scorer reads, and the raw answer `a` (any JSON value)."""

    task: str
    source: str
    idx: Any
    answer: Any
    record: dict[str, Any]

    @property
    def text(self) -> str | None:
        return self.answer if isinstance(self.answer, str) else None


@dataclass(frozen=True)
class Issue:
    """An answer scored as a failed parse because the official script would crash on it."""

    task: str
    source: str
    idx: Any
    reason: str


@dataclass
class SourceScore:
    values: Values
    issues: list[Issue] = field(default_factory=list)


def _answer_issue(sample: Sample) -> Issue | None:
    """Missing, null or non-string answers crash the official script (KeyError, AttributeError, TypeError)."""
    if "a" not in sample.record:
        return Issue(sample.task, sample.source, sample.idx, "no answer field 'a'")
    if sample.answer is None:
        return Issue(sample.task, sample.source, sample.idx, "answer 'a' is null")
    if not isinstance(sample.answer, str):
        return Issue(sample.task, sample.source, sample.idx, f"answer 'a' is a {type(sample.answer).__name__}")
    return None


def _parsed_answer(sample: Sample, parse: Callable[[str], Any], issues: list[Issue]) -> Any:
    """`parse` of the answer; an answer that would crash the official run is recorded in `issues` and gives None."""
    if (issue := _answer_issue(sample)) is not None:
        issues.append(issue)
        return None
    return parse(sample.answer)


def _intervals(sample: Sample, issues: list[Issue]) -> list[list[float]] | None:
    """`parse_intervals` of the answer, or None (recorded in `issues` where the official run would crash)."""
    try:
        return _parsed_answer(sample, parse_intervals, issues)
    except ParseError as err:
        issues.append(Issue(sample.task, sample.source, sample.idx, str(err)))
        return None


def _parsed_windows(samples: Sequence[Sample]) -> tuple[list[tuple[Sample, list[list[float]]]], list[Issue]]:
    """The samples whose answer parses into windows, with those windows; every other sample is a failed parse."""
    issues: list[Issue] = []
    parsed = [(s, windows) for s in samples if (windows := _intervals(s, issues)) is not None]
    return parsed, issues


# ---------------------------------------------------------------------------------------------------
# Multiple choice: RAR, ECA, RVQ (§4.1) and GVQ stage 1 (§4.2)


@dataclass(frozen=True)
class ChoiceReading:
    """How an answer was read: a decided outcome, or a similarity query over the options."""

    hit: bool | None  # None: decided by similarity
    failed: bool
    query: str = ""
    candidates: tuple[str, ...] = ()


def _similarity_candidates(options: Sequence[Any]) -> tuple[str, ...]:
    return tuple(f"({chr(ord('A') + i)}) {option_text(o)}" for i, o in enumerate(options))


def read_choice(
    answer: str, options: Sequence[Any], gt: int, letters: dict[str, int], form: McForm, strict: bool
) -> ChoiceReading:
    """Official `rvq_eval` for one answer (flat or nested form); `strict`: explicit letters only."""
    decisive = strict or form == "nested"  # a valid letter ends the sample, right or wrong
    ever_matched = False
    if (letter := paren_letter(answer)) is not None:
        ever_matched = True
        if letter in letters and (decisive or letters[letter] == gt):
            return ChoiceReading(letters[letter] == gt, failed=False)
    cleaned = clean_choice_answer(answer)
    if not cleaned:
        return ChoiceReading(False, failed=True)
    if (letter := leading_letter(cleaned)) is not None:
        ever_matched = True
        if letter in letters and (decisive or letters[letter] == gt):
            return ChoiceReading(letters[letter] == gt, failed=False)
    if strict:
        return ChoiceReading(False, failed=True)
    return ChoiceReading(None, failed=not ever_matched, query=cleaned, candidates=_similarity_candidates(options))


def read_gvq_choice(answer: str, options: Sequence[Any], gt: int, strict: bool) -> ChoiceReading:
    """Official `gvq_eval` stage 1: leading letter (nested form, per-sample option map), else similarity."""
    cleaned = clean_gvq_answer(answer)
    if not cleaned:
        return ChoiceReading(False, failed=True)
    letters = option_map(len(options)) or {}
    if (letter := leading_letter(cleaned)) is not None and letter in letters:
        return ChoiceReading(letters[letter] == gt, failed=False)
    if strict:
        return ChoiceReading(False, failed=True)
    # Unlike RAR/ECA/RVQ, the official GVQ stage does not count a similarity fallback as Failed.
    return ChoiceReading(None, failed=False, query=cleaned, candidates=_similarity_candidates(options))


def resolve(reading: ChoiceReading, gt: int, sim: Similarity) -> bool:
    if reading.hit is not None:
        return reading.hit
    best, best_i = -float("inf"), -1
    for i, candidate in enumerate(reading.candidates):
        if (value := sim(reading.query, candidate)) > best:  # strict '>': the first maximum wins
            best, best_i = value, i
    return best_i == gt


def _readings(
    samples: Sequence[Sample], read: Callable[[Sample], ChoiceReading]
) -> list[tuple[ChoiceReading, Issue | None]]:
    """`read` of every answer; an answer that would crash the official script is a failed reading and an issue."""
    out: list[tuple[ChoiceReading, Issue | None]] = []
    for s in samples:
        issue = _answer_issue(s)
        out.append((ChoiceReading(False, failed=True), issue) if issue is not None else (read(s), None))
    return out


def choice_readings(samples: Sequence[Sample], form: McForm, strict: bool) -> list[tuple[ChoiceReading, Issue | None]]:
    """Readings of a RAR/ECA/RVQ source; the option map comes from its first sample, as the official."""
    letters = option_map(len(samples[0].record["o"])) or {}
    return _readings(samples, lambda s: read_choice(s.answer, s.record["o"], s.record["p"], letters, form, strict))


def gvq_readings(samples: Sequence[Sample], strict: bool) -> list[tuple[ChoiceReading, Issue | None]]:
    return _readings(samples, lambda s: read_gvq_choice(s.answer, s.record["o"], s.record["p"], strict))


def similarity_texts(readings: Sequence[tuple[ChoiceReading, Issue | None]]) -> list[str]:
    """Every string a similarity fallback will embed, so they can be embedded in one batch beforehand."""
    return [t for r, _ in readings if r.hit is None for t in (r.query, *r.candidates)]


Readings = Sequence[tuple[ChoiceReading, Issue | None]]


def score_choice(
    samples: Sequence[Sample],
    sim: Similarity,
    form: McForm = "flat",
    strict: bool = False,
    readings: Readings | None = None,
) -> SourceScore:
    """RAR/ECA/RVQ; `readings`: `choice_readings` of these samples if the caller already has them."""
    if readings is None:
        readings = choice_readings(samples, form, strict)
    hits = sum(resolve(r, s.record["p"], sim) for (r, _), s in zip(readings, samples, strict=True))
    failed = sum(r.failed for r, _ in readings)
    issues = [i for _, i in readings if i is not None]
    return SourceScore({"Total": len(samples), "Failed": failed, "Acc": round(hits / len(samples), 5)}, issues)


# ---------------------------------------------------------------------------------------------------
# Single-window grounding: TVG, EPM (§4.3), TEM (§4.4), GVQ (§4.2)


def _recall_values(ious: list[float], total: int, prefix: str, mean_key: str) -> Values:
    recalls = [sum(iou >= t for iou in ious) / total for t in THRESHOLDS]
    values: Values = {"mIoU": round(sum(ious) / total, 5)}
    values.update({f"{prefix}@{t}": round(r, 5) for t, r in zip(THRESHOLDS, recalls, strict=True)})
    values[mean_key] = round(sum(recalls) / len(recalls), 5)
    return values


def score_grounding(samples: Sequence[Sample]) -> SourceScore:
    """TVG and EPM: the first parsed window against the single GT window; 'F1@t' is Recall@1 at IoU t."""
    parsed, issues = _parsed_windows(samples)
    ious = [temporal_iou_scalar(s.record["tgt"], windows[0]) for s, windows in parsed]
    failed = len(samples) - len(parsed)
    return SourceScore(
        {"Total": len(samples), "Failed": failed, **_recall_values(ious, len(samples), "F1", "F1")}, issues
    )


def score_tem(samples: Sequence[Sample]) -> SourceScore:
    """TEM: the first parsed window against the best-matching of several GT windows."""
    parsed, issues = _parsed_windows(samples)
    ious = [float(temporal_iou(s.record["tgt"], [windows[0]]).max()) for s, windows in parsed]
    failed = len(samples) - len(parsed)
    return SourceScore(
        {"Total": len(samples), "Failed": failed, **_recall_values(ious, len(samples), "R", "mRec")}, issues
    )


def score_gvq(
    samples: Sequence[Sample], sim: Similarity, strict: bool = False, readings: Readings | None = None
) -> SourceScore:
    """GVQ: the right option AND a grounding window; recall counts only correctly answered samples.

    `readings`: `gvq_readings` of these samples if the caller already has them.
    """
    if readings is None:
        readings = gvq_readings(samples, strict)
    issues = [i for _, i in readings if i is not None]
    ious, correct, acc_failed, rec_failed = [], 0, 0, 0
    for (reading, _), s in zip(readings, samples, strict=True):
        acc_failed += reading.failed
        if not resolve(reading, s.record["p"], sim):
            continue
        correct += 1
        intervals = _intervals(s, issues)
        if intervals is None:
            rec_failed += 1
            continue
        ious.append(temporal_iou_scalar(s.record["tgt"], intervals[0]))
    total = len(samples)
    values: Values = {"Total": total, "Failed": acc_failed + rec_failed}
    values.update(_recall_values(ious, total, "R", "mRec"))
    values["Acc"] = round(correct / total, 5)
    return SourceScore(values, issues)


# ---------------------------------------------------------------------------------------------------
# TAL (§4.5), EVS (§4.6), VHD (§4.7)


def _float32_fraction(count: int, n: int) -> float:
    """`count / n` as the official's `(bool_tensor).float().mean().item()`: a float32 quotient."""
    return float(np.float32(count) / np.float32(n))


def score_tal(samples: Sequence[Sample]) -> SourceScore:
    """TAL: per sample, F1 of all parsed windows against all GT windows (no one-to-one matching)."""
    issues: list[Issue] = []
    sums = [0.0] * len(THRESHOLDS)
    failed = 0
    for s in samples:  # one pass: parse and NaN issues stay in sample order
        intervals = _intervals(s, issues)
        if intervals is None:
            failed += 1
            continue
        iou = temporal_iou(s.record["tgt"], intervals)
        for k, t in enumerate(THRESHOLDS):
            t32 = np.float32(t)  # tensor comparisons: the threshold is cast to float32
            if iou.max() < t32:
                continue
            rec = _float32_fraction(int((iou.max(axis=1) >= t32).sum()), iou.shape[0])
            prc = _float32_fraction(int((iou.max(axis=0) >= t32).sum()), iou.shape[1])
            if prc + rec == 0:
                # NaN IoUs (zero-length or reversed GT) pass the max() guard; the official divides by zero.
                issue = Issue(s.task, s.source, s.idx, "NaN IoU (zero-length or reversed GT window)")
                if issue not in issues:
                    issues.append(issue)
                continue
            sums[k] += 2 * prc * rec / (prc + rec)
    f1s = [v / len(samples) for v in sums]
    values: Values = {"Total": len(samples), "Failed": failed}
    values.update({f"F1@{t}": round(f, 5) for t, f in zip(THRESHOLDS, f1s, strict=True)})
    values["F1"] = round(sum(f1s) / len(f1s), 5)
    return SourceScore(values, issues)


def _bins(spans: Sequence[Sequence[float]], value: float, out: np.ndarray) -> None:
    for start, end in spans:
        out[max(0, round(start)) : round(end)] = value  # Python round: half to even


def score_evs(samples: Sequence[Sample]) -> SourceScore:
    """EVS: F1 over 1-second bins; the mean runs over parsed samples only (parse failures are excluded)."""
    parsed, issues = _parsed_windows(samples)
    f1s = []
    for s, intervals in parsed:
        gt_map = np.zeros(EVS_BINS, dtype=np.float32)
        pred_map = np.zeros(EVS_BINS, dtype=np.float32)
        _bins(s.record["tgt"], 1, gt_map)
        _bins(intervals, 2, pred_map)
        both = gt_map + pred_map
        tp, fp, fn = int((both == 3).sum()), int((both == 2).sum()), int((both == 1).sum())
        if tp == 0:
            f1s.append(0.0)
        else:
            rec, prc = tp / (tp + fn), tp / (tp + fp)
            f1s.append(2 * prc * rec / (prc + rec))
    f1 = sum(f1s) / len(f1s) if f1s else 0.0
    return SourceScore({"Total": len(samples), "Failed": len(samples) - len(parsed), "F1": round(f1, 5)}, issues)


def score_vhd(samples: Sequence[Sample]) -> SourceScore:
    """VHD: a hit if the first number of the answer lies in any GT window of any annotator."""
    issues: list[Issue] = []
    hits, failed = 0, 0
    for s in samples:
        point = _parsed_answer(s, first_number, issues)
        if point is None:
            failed += 1
            continue
        tgt = s.record["tgt"]
        annotators = tgt if isinstance(tgt[0][0], list) else [tgt]
        hits += any(start <= point <= end for spans in annotators for start, end in spans)
    return SourceScore({"Total": len(samples), "Failed": failed, "F1": round(hits / len(samples), 5)}, issues)


# ---------------------------------------------------------------------------------------------------
# DVC, SLC (§4.8): parsing and detection here, caption metrics batched by the caller


def random_caption(rng: random.Random) -> str:
    """The garbage reference an unmatched prediction is compared with: 10-20 random lower-case letters."""
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(10, 20)))


@dataclass
class DensePlan:
    """A DVC/SLC source after parsing: detection scores per threshold and caption pairs to score."""

    values: Values  # Total and Failed
    scale: float
    precision: list[float]
    recall: list[float]
    groups: list[list[CaptionGroup]]  # [threshold][video]
    issues: list[Issue]


def plan_dense(samples: Sequence[Sample], rng: random.Random) -> DensePlan:
    """Parse answers, compute detection P/R and build the caption pairs of every threshold and video.

    Random garbage references are drawn in the official order (thresholds, then videos, then
    predictions) from `rng`; videos are taken in sorted order, where the official uses hash-set order.
    """
    issues: list[Issue] = []
    gts: dict[str, tuple[list, list]] = {}
    preds: dict[str, list[tuple[list[float], str]]] = {}
    failed = 0
    for s in samples:
        parsed = _parsed_answer(s, parse_dense_captions, issues)
        if parsed is None:
            failed += 1
            continue
        video = s.record["video"]  # a repeated video overwrites, as the official dicts do
        gts[video] = (s.record["tgt"], s.record["g"])
        preds[video] = list(zip(parsed.timestamps, parsed.sentences, strict=True))[:MAX_PROPOSALS]
    videos = sorted(gts)
    # per video once: IoU [pred][gt] and the cleaned texts, reused by every threshold
    ious: dict[str, list[list[float]]] = {}
    hyp_texts: dict[str, list[str]] = {}
    ref_texts: dict[str, list[str]] = {}
    for video in videos:
        gt_spans, gt_captions = gts[video]
        ious[video] = [[dvc_iou(span, g) for g in gt_spans] for span, _ in preds[video]]
        hyp_texts[video] = [remove_nonascii(sentence) for _, sentence in preds[video]]
        ref_texts[video] = [remove_nonascii(c) for c in gt_captions]
    groups: list[list[CaptionGroup]] = []
    for t in THRESHOLDS:
        per_video = []
        for video in videos:
            refs_clean = ref_texts[video]
            hyps, refs = [], []
            for row, hyp in zip(ious[video], hyp_texts[video], strict=True):
                matched = [j for j, iou in enumerate(row) if iou >= t]
                for j in matched:
                    hyps.append(hyp)
                    refs.append(refs_clean[j])
                if not matched:
                    hyps.append(hyp)
                    refs.append(random_caption(rng))
            per_video.append(CaptionGroup(tuple(hyps), tuple(refs)))
        groups.append(per_video)
    precision, recall = [], []
    for t in THRESHOLDS:
        p_sum = r_sum = 0.0
        for video in videos:
            matrix = ious[video]
            n_gt = len(gts[video][0])
            hit_pred = sum(any(iou > t for iou in row) for row in matrix)  # strict '>'
            hit_gt = sum(any(row[j] > t for row in matrix) for j in range(n_gt))
            p_sum += hit_pred / len(matrix)
            r_sum += hit_gt / n_gt
        precision.append(p_sum / len(videos) if videos else 0.0)
        recall.append(r_sum / len(videos) if videos else 0.0)
    return DensePlan(
        {"Total": len(samples), "Failed": failed}, len(preds) / len(samples), precision, recall, groups, issues
    )


def finish_dense(plan: DensePlan, group_scores: list[list[dict[str, float]]]) -> SourceScore:
    """Official DVC/SLC values from detection P/R and the per-video caption scores of each threshold."""
    values = dict(plan.values)
    if plan.scale == 0:
        values.update({f"F1@{t}": 0.0 for t in THRESHOLDS})
        values["F1"] = 0.0
        values.update(dict.fromkeys(CAPTION_METRICS, np.float64(0.0)))
        return SourceScore(values, plan.issues)
    f1s = []
    for p, r in zip(plan.precision, plan.recall, strict=True):
        p, r = plan.scale * p, plan.scale * r
        f1s.append(2 * p * r / (p + r) if p + r > 0 else 0.0)
    per_threshold = [mean_over_videos(scores) for scores in group_scores]
    values.update({f"F1@{t}": round(f, 5) for t, f in zip(THRESHOLDS, f1s, strict=True)})
    values["F1"] = round(sum(f1s) / len(f1s), 5)  # Python floats: Python rounding
    for key in CAPTION_METRICS:
        per_t = [m[key] for m in per_threshold]  # np.float64: round() is numpy's round-half-even
        values[key] = round(sum(per_t) / len(per_t), 5)
    return SourceScore(values, plan.issues)
