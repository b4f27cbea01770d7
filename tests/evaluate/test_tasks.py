"""Per-task metrics on hand-made cases, the spec's §12 vectors among them (no model, no Java)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from etchat.evaluate import tasks as T
from etchat.evaluate.iou import dvc_iou, temporal_iou, temporal_iou_scalar

_NO_ANSWER = object()


def sample(task: str, a: object = "", idx: int = 0, source: str = "src", **fields: object) -> T.Sample:
    rec = {"task": task, "source": source, "idx": idx, **fields}
    if a is not _NO_ANSWER:
        rec["a"] = a
    return T.Sample(task, source, idx, rec.get("a"), rec)


def no_sim(a: str, b: str) -> float:
    raise AssertionError("similarity must not be needed here")


# ------------------------------------------------------------------------------------------ IoU


def test_temporal_iou_semantics() -> None:
    assert temporal_iou_scalar([0, 10], [0, 5]) == pytest.approx(0.5)
    assert temporal_iou_scalar([0, 10], [5, 5]) == 0.0  # zero-length pred inside the GT
    assert np.isnan(temporal_iou_scalar([5, 5], [5, 5]))  # 0 / 0, no epsilon
    assert temporal_iou([[0, 10], [20, 30]], [[0, 10], [25, 30], [50, 60]]).shape == (2, 3)
    # float32: IoU 7/10 is float32(0.7) = 0.699999988..., below the float64 threshold 0.7
    assert temporal_iou_scalar([0, 10], [0, 7]) < 0.7
    assert dvc_iou([0, 10], [0, 5]) == pytest.approx(0.5)
    assert dvc_iou([0, 10], [20, 30]) == 0.0


# ------------------------------------------------------------------------------------------ multiple choice

OPTIONS = ["Taking something out", "Opening something", "Closing something", "Throwing something"]


@pytest.mark.parametrize("form", ["flat", "nested"])
@pytest.mark.parametrize(
    "answer",
    ["B) Opening something", "(B)", "b", "B.", "Best Option: (B) Opening", "The answer is (b)",
     "I think (B) is right but (A)"],
)  # fmt: skip
def test_referring_hits_in_both_forms(form: str, answer: str) -> None:
    result = T.score_choice([sample("rar", answer, o=OPTIONS, p=1)], no_sim, form)
    assert result.values == {"Total": 1, "Failed": 0, "Acc": 1.0}


def test_wrong_letter_nested_is_a_miss_flat_falls_back_to_similarity() -> None:
    s = sample("rar", "A) Taking something out", o=OPTIONS, p=1)
    assert T.score_choice([s], no_sim, "nested").values["Acc"] == 0.0
    asked = []

    def sim(a: str, b: str) -> float:
        asked.append((a, b))
        return 1.0 if b.startswith("(B)") else 0.0

    flat = T.score_choice([s], sim, "flat")
    assert flat.values == {"Total": 1, "Failed": 0, "Acc": 1.0}  # a letter was seen: not Failed
    assert asked[0] == ("a) taking something out", "(A) Taking something out")
    assert [b for _, b in asked] == [f"({L}) {o}" for L, o in zip("ABCD", OPTIONS, strict=True)]


def test_similarity_fallback_failed_and_first_maximum_wins() -> None:
    s = sample("eca", "something is opened", o=OPTIONS, p=0)
    result = T.score_choice([s], lambda a, b: 0.5, "flat")  # all equal: the first option wins
    assert result.values == {"Total": 1, "Failed": 1, "Acc": 1.0}


def test_empty_answer_is_failed_without_fallback() -> None:
    for a in ["", "   ", "Best option:", "(("]:
        assert T.score_choice([sample("rvq", a, o=OPTIONS + ["Unable"], p=1)], no_sim).values["Failed"] == 1


def test_strict_needs_an_explicit_valid_letter() -> None:
    samples = [
        sample("rar", "B) Opening", o=OPTIONS, p=1),
        sample("rar", "Opening something", o=OPTIONS, p=1),  # would be a hit through similarity
        sample("rar", "(A) but maybe (B)", o=OPTIONS, p=1),  # first '(X)' is final
        sample("rar", "F) nothing", o=OPTIONS, p=1),  # not an option
    ]
    result = T.score_choice(samples, no_sim, "flat", strict=True)
    assert result.values == {"Total": 4, "Failed": 2, "Acc": 0.25}


def test_option_map_comes_from_the_first_sample() -> None:
    # RVQ with a 4-option first sample: 'E' is no valid letter for the whole source.
    samples = [sample("rvq", "A)", o=OPTIONS, p=0), sample("rvq", "E)", o=OPTIONS + ["Unable"], p=4)]
    result = T.score_choice(samples, lambda a, b: 1.0 if b.startswith("(E)") else 0.0, "nested")
    assert result.values["Acc"] == 1.0  # E) fell through to similarity, which picked E


@pytest.mark.parametrize("a", [_NO_ANSWER, None, 7])
def test_crashing_answers_are_failed_and_listed(a: object) -> None:
    result = T.score_choice([sample("rar", a, idx=3, o=OPTIONS, p=1)], no_sim)
    assert result.values == {"Total": 1, "Failed": 1, "Acc": 0.0}
    assert [(i.idx, i.task) for i in result.issues] == [(3, "rar")]


# ------------------------------------------------------------------------------------------ GVQ


def test_gvq_vectors() -> None:
    opts = ["One", "Two", "Three", "Four"]
    right = sample("gvq", "(C) Three. The relevant event can be found in 235.5 - 241.6 seconds.", o=opts, p=2,
                   tgt=[235.5, 241.6])  # fmt: skip
    no_window = sample("gvq", "Best option: (C) Three", o=opts, p=2, tgt=[235.5, 241.6])
    r1 = T.score_gvq([right], no_sim).values
    assert (r1["Acc"], r1["mRec"], r1["Failed"]) == (1.0, 1.0, 0)
    r2 = T.score_gvq([no_window], no_sim).values
    assert (r2["Acc"], r2["mRec"], r2["Failed"]) == (1.0, 0.0, 1)
    assert list(r1) == ["Total", "Failed", "mIoU", "R@0.1", "R@0.3", "R@0.5", "R@0.7", "mRec", "Acc"]


def test_gvq_wrong_letter_is_final_and_recall_needs_the_right_answer() -> None:
    opts = ["One", "Two", "Three", "Four"]
    wrong = sample("gvq", "(A) One. It happens in 235.5 - 241.6 seconds.", o=opts, p=2, tgt=[235.5, 241.6])
    values = T.score_gvq([wrong], no_sim).values
    assert (values["Acc"], values["mRec"], values["Failed"]) == (0.0, 0.0, 0)


def test_gvq_similarity_fallback_is_not_failed() -> None:
    # Confirmed against the official code: GVQ counts only empty answers (and hits without a window) as
    # Failed; a similarity fallback is not (unlike RAR/ECA/RVQ).
    opts = ["One", "Two", "Three", "Four"]
    s = sample("gvq", "Three things happen in 235.5 - 241.6 seconds.", o=opts, p=2, tgt=[235.5, 241.6])
    values = T.score_gvq([s], lambda a, b: 1.0 if b.startswith("(C)") else 0.0).values
    assert (values["Acc"], values["mRec"], values["Failed"]) == (1.0, 1.0, 0)


def test_gvq_only_the_left_end_is_stripped() -> None:
    # 'B' followed by a line break is no leading letter in the official (its second character is '\n'),
    # so the similarity fallback decides, here for option A: a miss.
    opts = ["One", "Two", "Three", "Four"]
    asked = []

    def sim(a: str, b: str) -> float:
        asked.append(a)
        return 1.0 if b.startswith("(A)") else 0.0

    values = T.score_gvq([sample("gvq", "  B\n", o=opts, p=1, tgt=[0, 10])], sim).values
    assert (values["Acc"], values["Failed"]) == (0.0, 0)
    assert asked[0] == "B\n"  # the query keeps its right end


# ------------------------------------------------------------------------------------------ grounding


def test_tvg_first_window_and_recall_values() -> None:
    samples = [
        sample("tvg", "The event happens in 0 - 10 seconds.", tgt=[0, 10]),  # IoU 1
        sample("tvg", "It happens in 0 - 4 and 0 - 10 seconds.", tgt=[0, 10]),  # only the first: 0.4
        sample("tvg", "no idea", tgt=[0, 10]),  # Failed
        sample("tvg", "3.. - 5", tgt=[0, 10]),  # crash in the official: Failed and listed
    ]
    result = T.score_grounding(samples)
    assert result.values == {"Total": 4, "Failed": 2, "mIoU": 0.35, "F1@0.1": 0.5, "F1@0.3": 0.5, "F1@0.5": 0.25,
                             "F1@0.7": 0.25, "F1": 0.375}  # fmt: skip
    assert len(result.issues) == 1 and "3.." in result.issues[0].reason


def test_tvg_iou_of_exactly_0_7_misses_the_0_7_threshold() -> None:
    values = T.score_grounding([sample("tvg", "0 - 7", tgt=[0, 10])]).values
    assert (values["F1@0.5"], values["F1@0.7"]) == (1.0, 0.0)


def test_tvg_nan_iou_poisons_miou_only() -> None:
    values = T.score_grounding([sample("tvg", "5 - 5", tgt=[5, 5])]).values
    assert np.isnan(values["mIoU"]) and values["F1"] == 0.0


def test_tem_takes_the_best_gt_window() -> None:
    values = T.score_tem([sample("tem", "It happens in 20 - 30 seconds.", tgt=[[0, 10], [20, 30]])]).values
    assert values["mRec"] == 1.0 and list(values)[-1] == "mRec"


def test_tal_vector() -> None:
    gt = [[0, 10], [20, 30]]
    samples = [
        sample("tal", "0 - 10, 0 - 10, 0 - 10", tgt=gt),  # rec 0.5, prc 1: F1 2/3 (duplicates are free)
        sample("tal", "0 - 10, 20 - 30, 50 - 60", tgt=gt),  # rec 1, prc 2/3: F1 0.8
        sample("tal", "nothing", tgt=gt),
    ]
    values = T.score_tal(samples[:1]).values
    assert values["F1"] == 0.66667
    values = T.score_tal(samples).values
    assert values["F1"] == 0.48889 and values["Failed"] == 1
    assert values["F1@0.1"] == values["F1@0.7"] == 0.48889


def test_tal_recall_and_precision_are_float32_means() -> None:
    # The official takes (hits >= t).float().mean(): float32 quotients. 5 of 9 predictions and 7 of 13 GT
    # windows matched give F1 0.546875 in float64 (rounds to 0.54687) but 0.54687500... from the float32
    # quotients (0.54688), the official value.
    gt = [[0, 10]] * 7 + [[100 + 20 * k, 110 + 20 * k] for k in range(6)]
    answer = ", ".join(["0 - 10"] * 5 + ["900 - 910", "920 - 930", "940 - 950", "960 - 970"])
    values = T.score_tal([sample("tal", answer, tgt=gt)]).values
    assert values["F1@0.7"] == values["F1"] == 0.54688
    p, r = 5 / 9, 7 / 13
    assert round(2 * p * r / (p + r), 5) == 0.54687


def test_tal_zero_length_gt_is_listed_not_a_crash() -> None:
    result = T.score_tal([sample("tal", "5 - 5", tgt=[[5, 5]])])
    assert result.values["F1"] == 0.0
    assert "NaN IoU" in result.issues[0].reason


def test_evs_vector_excludes_failures_from_the_mean() -> None:
    samples = [
        sample("evs", "0 - 10 and 20 - 25", tgt=[[0, 10], [20, 30]]),  # 0.857
        sample("evs", "no summary", tgt=[[0, 10]]),  # excluded
        sample("evs", "2.5 - 3.5", tgt=[[2.5, 3.5]]),  # bins [2, 4) both: 1.0
    ]
    assert T.score_evs(samples).values == {"Total": 3, "Failed": 1, "F1": 0.92857}
    assert T.score_evs(samples[1:2]).values == {"Total": 1, "Failed": 1, "F1": 0.0}


def test_evs_ignores_bins_after_1000_seconds() -> None:
    assert T.score_evs([sample("evs", "1000 - 1100", tgt=[[1000, 1100]])]).values["F1"] == 0.0


def test_vhd() -> None:
    samples = [
        sample("vhd", "1st highlight at 15", tgt=[[10, 20]]),  # first number is 1: miss
        sample("vhd", "The highlight is at 20 seconds", tgt=[[10, 20]]),  # inclusive: hit
        sample("vhd", "At 35.5.", tgt=[[[0, 5]], [[30, 40]]]),  # second annotator: hit
        sample("vhd", "nothing", tgt=[[10, 20]]),  # Failed
        sample("vhd", None, tgt=[[10, 20]]),  # Failed and listed
    ]
    result = T.score_vhd(samples)
    assert result.values == {"Total": 5, "Failed": 2, "F1": 0.4}
    assert len(result.issues) == 1


# ------------------------------------------------------------------------------------------ DVC / SLC planning


def _dense(idx: int, answer: str) -> T.Sample:
    return sample("dvc", answer, idx=idx, video=f"v{idx}.mp4", tgt=[[0, 10], [10, 20]], g=["a man cooks", "he eats"])


def test_dense_plan_detection_scale_and_random_references() -> None:
    samples = [_dense(0, "0 - 10 seconds, a man cooks. 30 - 40 seconds, he sleeps."), _dense(1, "nothing")]
    plan = T.plan_dense(samples, random.Random(0))
    assert plan.values == {"Total": 2, "Failed": 1} and plan.scale == 0.5
    assert plan.precision == [0.5] * 4 and plan.recall == [0.5] * 4
    group = plan.groups[0][0]
    assert group.hyps == ("a man cooks.", "he sleeps.")
    assert group.refs[0] == "a man cooks" and 10 <= len(group.refs[1]) <= 20 and group.refs[1].isalpha()
    again = T.plan_dense(samples, random.Random(0))
    assert again.groups == plan.groups  # seeded: the same garbage strings


def test_dense_finish_f1_and_numpy_rounding() -> None:
    plan = T.plan_dense([_dense(0, "0 - 10 seconds, a man cooks. 10 - 20 seconds, he eats.")], random.Random(0))
    one = dict.fromkeys(T.CAPTION_METRICS, 0.242915)  # a 5-decimal tie: numpy rounds it up, Python down
    values = T.finish_dense(plan, [[one] for _ in T.THRESHOLDS]).values
    assert values["F1"] == 1.0 and values["F1@0.7"] == 1.0
    assert values["SentSim"] == 0.24292 and round(0.242915, 5) == 0.24291
    assert isinstance(values["SentSim"], np.floating)


def test_dense_f1_is_python_rounded() -> None:
    # Confirmed against the official code: F1 is round(sum(f1s) / len(f1s), 5) of Python floats, so the
    # same tie that numpy rounds up (captions above) is rounded down here.
    plan = T.plan_dense([_dense(0, "0 - 10 seconds, a man cooks. 10 - 20 seconds, he eats.")], random.Random(0))
    plan.precision = plan.recall = [0.242915] * 4
    one = dict.fromkeys(T.CAPTION_METRICS, 0.5)
    values = T.finish_dense(plan, [[one] for _ in T.THRESHOLDS]).values
    assert values["F1"] == 0.24291 and type(values["F1"]) is float
    assert values["F1@0.1"] == 0.24291


def test_dense_nothing_parsed_is_all_zero() -> None:
    values = T.finish_dense(T.plan_dense([_dense(0, "nothing")], random.Random(0)), []).values
    assert values["Failed"] == 1 and values["F1"] == 0 and values["SentSim"] == 0
