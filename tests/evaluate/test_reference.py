"""`etchat score --reference`: every annotation sample predicted once, ground truth unchanged, missing ones failed."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from etchat.errors import DataError
from etchat.evaluate.reference import check_against_reference

BASE = {"version": 1.0, "source": "s", "video": "v.mp4", "duration": 20.0, "src": [], "q": "When?"}
REFERENCE = [{**BASE, "task": "tvg", "idx": i, "tgt": [i, i + 5]} for i in range(4)]


def _predicted(records, answer=lambda r: f"From {r['tgt'][0]} to {r['tgt'][1]} seconds."):
    return [{**copy.deepcopy(r), "a": answer(r)} for r in records]


def test_missing_samples_are_added_as_failed_and_listed():
    completed, lines = check_against_reference(_predicted(REFERENCE[:3]), REFERENCE, "ref.json")
    assert [r["idx"] for r in completed] == [0, 1, 2, 3] and completed[3]["a"] == ""
    assert lines[-1] == "Missing predictions, scored as failed answers: 1: tvg/s idx 3"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.append(copy.deepcopy(p[0])), "answer 1 samples more than once: tvg/s idx 0"),
        (lambda p: p.append({**p[0], "idx": 9}), "1 predictions are not samples of ref.json: tvg/s idx 9"),
        (lambda p: p[2].update(tgt=[0, 1]), "prediction tvg/s idx 2: 'tgt' is [0, 1] in the predictions but [2, 7]"),
        (lambda p: p[1].update(duration=30.0), "prediction tvg/s idx 1: 'duration' is 30.0"),
        (lambda p: p[1].pop("video"), "prediction tvg/s idx 1: 'video' is None"),
    ],
)
def test_duplicates_extra_samples_and_changed_ground_truth_are_errors(change, message):
    predictions = _predicted(REFERENCE)
    change(predictions)
    with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_against_reference(predictions, REFERENCE, "ref.json")


def _score(tmp_path, predictions, *extra):
    (tmp_path / "pred.json").write_text(json.dumps(predictions))
    proc = subprocess.run([sys.executable, "-m", "etchat", "score", str(tmp_path / "pred.json"), *extra],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads((tmp_path / "metrics.json").read_text()), (tmp_path / "metrics.log").read_text()


def test_a_lost_sample_can_no_longer_raise_the_score(tmp_path):
    """Three right answers and one wrong: dropping the wrong one raises the plain score, not the checked one."""
    predictions = _predicted(REFERENCE)
    predictions[3]["a"] = "From 15 to 16 seconds."
    (tmp_path / "ref.json").write_text(json.dumps(REFERENCE))
    full, _ = _score(tmp_path, predictions, "--reference", str(tmp_path / "ref.json"))
    lost, log = _score(tmp_path, predictions[:3], "--reference", str(tmp_path / "ref.json"))
    unchecked, note = _score(tmp_path, predictions[:3])
    scores = [{k: v for k, v in m["tvg"]["s"].items() if k != "Failed"} for m in (full, lost, unchecked)]
    assert scores[1] == scores[0] and scores[2]["mIoU"] > scores[0]["mIoU"]
    assert lost["tvg"]["s"]["Failed"] == 1 and lost["tvg"]["s"]["Total"] == 4
    assert "Missing predictions, scored as failed answers: 1: tvg/s idx 3" in log
    assert "Not checked against the annotation file" in note
