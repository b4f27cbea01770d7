"""Charades-STA R1@0.3/0.5/0.7 and mIoU, failures in the denominator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from etchat.cli import main
from etchat.errors import DataError
from etchat.evaluate.charades import charades_metrics, format_charades, load_charades_predictions


def rec(span: list, pred: object) -> dict:
    return {"vid": "AB12C", "query": "a person opens a door", "span": span, "pred": pred, "response": ""}


RECORDS = [
    rec([0, 10], [0, 10]),  # IoU 1
    rec([0, 10], [0, 6]),  # 0.6
    rec([0, 10], [0, 4]),  # 0.4
    rec([0, 10], [8, 2]),  # reversed pred: IoU 0
    rec([5, 5], [5, 5]),  # NaN IoU: 0
    rec([0, 10], None),  # failed
    rec([0, 10], [1, 2, 3]),  # failed
    rec([0, 10], [0, 7]),  # float32(0.7) < 0.7: no hit at 0.7
]


def test_charades_metrics() -> None:
    m = charades_metrics(RECORDS)
    assert m["Total"] == 8 and m["Failed"] == 2
    assert m["R1@0.3"] == 4 / 8 and m["R1@0.5"] == 3 / 8 and m["R1@0.7"] == 1 / 8
    assert m["mIoU"] == pytest.approx((1 + 0.6 + 0.4 + 0.7) / 8)
    text = format_charades(m)
    assert "R1@0.3: 0.500" in text and "Failed: 2 (25.0%)" in text


def test_charades_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no samples"):
        charades_metrics([])
    with pytest.raises(DataError, match="'span' must be"):
        charades_metrics([rec([0], [0, 1])])
    with pytest.raises(DataError, match="no such file"):
        load_charades_predictions(tmp_path / "absent")
    (tmp_path / "x.json").write_text(json.dumps([1, 2]))
    with pytest.raises(DataError, match="expected a JSON list"):
        load_charades_predictions(tmp_path / "x.json")
    (tmp_path / "x.jsonl").write_text(json.dumps({"vid": 1}))  # one JSON line: one record, checked as such
    with pytest.raises(DataError, match=r"x.jsonl: sample 0 \(vid 1\): 'span' must be"):
        load_charades_predictions(tmp_path / "x.jsonl")


def test_charades_cli_on_a_directory(tmp_path: Path) -> None:
    (tmp_path / "0.json").write_text(json.dumps(RECORDS[:4]))
    (tmp_path / "1.json").write_text(json.dumps(RECORDS[4:]))
    assert main(["score-charades", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(charades_metrics(RECORDS)))
    assert main(["score-charades", str(tmp_path)]) == 0  # its own metrics.json is not read as predictions
    assert "mIoU" in (tmp_path / "metrics.log").read_text()
