"""Fuzzing: valid annotation and prediction records, mutated at random, go through every loader, `etchat validate`
and the scorer. Each either accepts the record or raises the project's DataError naming the file and the record:
never another exception, never a hang."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etchat.data.records import read_records
from etchat.data.validate import validate_file
from etchat.errors import DataError
from etchat.evaluate.scorer import load_predictions, score_predictions


def _conv(*turns):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(turns)]


LLAMAVID = {"id": "1", "video": "v.mp4", "conversations": _conv("<image>\nDescribe.", "A red square.")}
ET_INSTRUCT = {"video": "v.mp4", "duration": 20.0, "task": "tvg", "source": "s", "src": [3.0], "tgt": [4.0, 9.5],
               "conversations": _conv("<image>\nAfter <vid> seconds, when?", "In <vid> - <vid> seconds.")}  # fmt: skip
BASE = {"version": 1.0, "idx": 0, "source": "s", "video": "v.mp4", "duration": 20.0, "src": [], "q": "When?", "a": ""}
PREDICTIONS = [  # one valid sample of each task shape, with an answer
    {**BASE, "task": "rvq", "src": [1.4, 5.2], "q": "What in <vid> - <vid>?", "p": 4,
     "o": ["a", "b", "c", "d", "Unable to answer"], "a": "(B) b"},
    {**BASE, "task": "eca", "src": [2.0], "q": "After <vid>?", "p": 0, "o": [[1, 2], [3, 4], [5, 6], [7, 8]],
     "a": "(A)"},
    {**BASE, "task": "tvg", "tgt": [5, 8], "a": "From 5 to 8 seconds."},
    {**BASE, "task": "tal", "tgt": [[1, 2], [3, 4]], "a": "1 - 2, 3 - 4"},
    {**BASE, "task": "vhd", "tgt": [[[1, 2]], [[1.5, 2.5], [3, 4]]], "a": "2.0"},
    {**BASE, "task": "tem", "src": [1.0], "q": "After <vid>?", "tgt": [[6, 7]], "a": "6 - 7 seconds"},
    {**BASE, "task": "gvq", "tgt": [5, 8], "p": 1, "o": ["a", "b", "c", "d"], "a": "(B) at 5 - 8"},
    {**BASE, "task": "dvc", "tgt": [[1, 2]], "g": ["a person opens a door"], "a": "1 - 2 seconds, a door opens."},
]  # fmt: skip
# Caption tasks are loaded and validated, but not scored here: METEOR starts a JVM per call.
SCORED = [p for p in PREDICTIONS if p["task"] not in ("dvc", "slc")]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
KEYS = ["id", "video", "image", "conversations", "duration", "task", "source", "src", "tgt", "idx", "q", "o", "p",
        "g", "a", "version", "extra", "from", "value"]  # fmt: skip


@st.composite
def mutated(draw, bases: list[dict]) -> dict | object:
    """A valid record with 1-3 mutations: a key set to any JSON value, a key removed, a nested value replaced,
    or the whole record replaced by a non-object."""
    record = copy.deepcopy(draw(st.sampled_from(bases)))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.integers(0, 5))
        key = draw(st.sampled_from(KEYS))
        if kind == 0 and key in record:
            del record[key]
        elif kind == 1 and isinstance(record.get(key), list) and record[key]:
            i = draw(st.integers(0, len(record[key]) - 1))
            record[key][i] = draw(json_values)
        elif kind == 2 and isinstance(record.get("conversations"), list) and record["conversations"]:
            turn = record["conversations"][draw(st.integers(0, len(record["conversations"]) - 1))]
            if isinstance(turn, dict):
                turn[draw(st.sampled_from(["from", "value"]))] = draw(json_values)
        elif kind == 3:
            return draw(json_values)
        else:
            record[key] = draw(json_values)
    return record


def _write(folder: Path, records: list) -> Path:
    path = folder / "fuzz.json"
    path.write_text(json.dumps(records, allow_nan=True))  # NaN/Infinity as Python's json reads them
    return path


def _named(err: DataError, path: Path) -> None:
    message = str(err)
    assert str(path) in message or "predictions: sample" in message, message
    assert any(w in message for w in ("record", "sample", "line", "no records", "one JSON object")), message


FUZZ = settings(max_examples=120, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def roots(tmp_path):
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos/v.mp4").write_bytes(b"video")
    return tmp_path


@FUZZ
@given(records=st.lists(mutated([LLAMAVID, ET_INSTRUCT, *PREDICTIONS]), min_size=1, max_size=3))
def test_validate_accepts_or_names_the_record(roots, records):
    path = _write(roots, records)
    for fmt in ("llamavid", "et_instruct", "etbench_vid", "etbench_txt"):
        try:
            result = validate_file(path, fmt, roots / "videos", roots / "videos")
        except DataError as err:  # only the file itself may be refused (no records, bad JSON)
            _named(err, path)
            continue
        assert result.records == len(records)
        assert all(0 <= p.index < len(records) and p.reason for p in result.problems)


@FUZZ
@given(records=st.lists(mutated(PREDICTIONS), min_size=1, max_size=3))
def test_loading_predictions_accepts_or_names_the_sample(roots, records):
    path = _write(roots, records)
    assert read_records(path) is not None
    try:
        loaded, _ = load_predictions(path)
    except DataError as err:
        _named(err, path)
        return
    assert len(loaded) == len(records)


@settings(max_examples=60, deadline=10000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(mutated(SCORED), min_size=1, max_size=3))
def test_scoring_accepts_or_names_the_sample(embedder, records):
    try:
        metrics = score_predictions([r for r in records if not isinstance(r, dict) or r.get("task") != "dvc"],
                                    embedder=embedder)  # fmt: skip
    except DataError as err:
        _named(err, Path("predictions"))
        return
    assert metrics.to_json()  # every scored task reports its metrics
