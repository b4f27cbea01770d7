"""The whole scorer: tables, aggregation, partial task sets, determinism, subset, CLI and input errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from etchat.cli import main
from etchat.errors import DataError
from etchat.etbench import TASKS
from etchat.evaluate import tasks as T
from etchat.evaluate.outputs import format_log, write_outputs
from etchat.evaluate.scorer import (
    OVERALL_COLUMNS,
    ScoreOptions,
    _aggregate,
    apply_subset,
    load_predictions,
    load_subset,
    score_predictions,
)
from etchat.evaluate.similarity import SentenceEmbedder
from etchat.evaluate.synthetic import SYNTHETIC_COUNTS, synthetic_predictions


def _fake_results(values: dict[str, dict[str, float]]) -> dict[str, dict[str, T.SourceScore]]:
    """task -> {source: reported value} as SourceScores carrying every key the tables read."""
    out: dict[str, dict[str, T.SourceScore]] = {}
    for task, by_src in values.items():
        for src, v in by_src.items():
            keys = {"rar": ["Acc"], "eca": ["Acc"], "rvq": ["Acc"], "tem": ["mRec"], "gvq": ["mRec", "Acc"],
                    "dvc": ["F1", "SentSim"], "slc": ["F1", "SentSim"]}.get(task, ["F1"])  # fmt: skip
            vals = {"Total": 1, "Failed": 0, **{k: (np.float64(v) if k == "SentSim" else v) for k in keys}}
            out.setdefault(task, {})[src] = T.SourceScore(vals)
    return out


def test_overall_and_merged_formulas() -> None:
    vals = {t: {"s": 0.1 * (i + 1)} for i, t in enumerate(TASKS)}  # rar 0.1 ... gvq 1.2 (values are fake)
    m = _aggregate(_fake_results(vals), 12, ScoreOptions(), {})
    assert [m.overall[c] for c, _, _ in OVERALL_COLUMNS] == [
        10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 90.0, 100.0, 100.0, 110.0, 120.0
    ]  # fmt: skip
    assert m.merged == {"Acc (ref)": 20.0, "F1 (gnd)": 60.0, "F1 (cap)": 95.0, "Sim (cap)": 95.0, "Rec (com)": 115.0}
    assert m.absent == []


def test_task_mean_rounding_follows_the_official_types() -> None:
    # Two sources averaging to a 5-decimal tie: Python's round on a Python float, numpy's on np.float64.
    # In the official, DVC/SLC F1 are Python floats and only the caption metrics (SentSim) are np.float64.
    vals = {"tvg": {"a": 0.24291, "b": 0.24292}, "dvc": {"a": 0.24291, "b": 0.24292}}
    m = _aggregate(_fake_results(vals), 4, ScoreOptions(), {})
    assert m.tasks["tvg"]["F1"] == round((0.24291 + 0.24292) / 2, 5) == 0.24291
    assert m.tasks["dvc"]["F1"] == 0.24291
    assert m.tasks["dvc"]["SentSim"] == 0.24292


def test_partial_task_set_scores_what_is_present() -> None:
    records = [r for r in synthetic_predictions(crash_cases=False) if r["task"] in ("tvg", "tal", "vhd")][::10]
    m = score_predictions(records, embedder=SentenceEmbedder("/nonexistent"))  # no model needed here
    assert list(m.sources) == ["tvg", "tal", "vhd"]
    assert m.absent == ["rar", "eca", "rvq", "epm", "evs", "dvc", "slc", "tem", "gvq"]
    assert m.overall["TVG (F1)"] is not None and m.overall["RAR (Acc)"] is None
    assert set(m.merged.values()) == {None}
    log = format_log(m)
    assert "Absent tasks (not scored, '-' in the tables): rar, eca, rvq, epm, evs, dvc, slc, tem, gvq" in log
    assert "Referring" not in log and "Grounding:" in log


def test_crash_inducing_answers_are_counted_and_logged() -> None:
    records = [
        {"task": "tvg", "source": "s", "idx": 1, "tgt": [0, 10], "a": "It happens in 3.. - 5 seconds."},
        {"task": "tvg", "source": "s", "idx": 2, "tgt": [0, 10]},
        {"task": "tvg", "source": "s", "idx": 3, "tgt": [0, 10], "a": None},
        {"task": "tal", "source": "s", "idx": 4, "tgt": [[5, 5]], "a": "5 - 5"},
        {"task": "tvg", "source": "s", "idx": 5, "tgt": [0, 10], "a": "0 - 10"},
    ]
    m = score_predictions(records, embedder=SentenceEmbedder("/nonexistent"))
    assert m.sources["tvg"]["s"]["Failed"] == 3 and m.sources["tvg"]["s"]["F1"] == 0.25
    assert [i.idx for i in m.issues] == [1, 2, 3, 4]
    log = format_log(m)
    assert "Answers scored as failed parses because the official script crashes on them: 4" in log
    assert "tvg/s idx=2: no answer field 'a'" in log


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"task": "xyz", "source": "s"}, "unknown task 'xyz'"),
        ({"task": "tvg", "source": "s", "a": ""}, "tvg needs 'tgt' = [start, end]"),
        ({"task": "rar", "source": "s", "o": ["a", "b"], "p": 0, "a": ""}, "a list of 4 or 5 options"),
        ({"task": "dvc", "source": "s", "tgt": [[0, 1]], "g": [], "video": "v", "a": ""}, "one caption string"),
        ({"task": "vhd", "source": "s", "tgt": [], "a": ""}, "vhd needs 'tgt'"),
    ],
)
def test_bad_records_raise_data_errors_naming_file_and_fix(tmp_path: Path, record: dict, message: str) -> None:
    path = tmp_path / "pred.json"
    path.write_text(json.dumps([record]))
    with pytest.raises(DataError, match=re.escape(message)) as err:
        load_predictions(path)
    assert str(path) in str(err.value) and "sample 0" in str(err.value)


def test_loading_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_predictions(tmp_path / "bad.json")
    with pytest.raises(DataError, match="no such file or directory"):
        load_predictions(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .json or .jsonl"):
        load_predictions(tmp_path / "empty")


def test_directory_loading_jsonl_and_skipping_metrics(tmp_path: Path) -> None:
    a = {"task": "vhd", "source": "s", "idx": 0, "tgt": [[0, 5]], "a": "3"}
    (tmp_path / "b.jsonl").write_text(json.dumps(a) + "\n\n" + json.dumps({**a, "idx": 1}) + "\n")
    (tmp_path / "a.json").write_text(json.dumps([{**a, "idx": 2}]))
    (tmp_path / "metrics.json").write_text(json.dumps({"vhd": {}}))
    records, files = load_predictions(tmp_path)
    assert [f.name for f in files] == ["a.json", "b.jsonl"] and [r["idx"] for r in records] == [2, 0, 1]


def test_subset(tmp_path: Path) -> None:
    records = [{"task": "vhd", "source": s, "idx": i, "tgt": [[0, 5]], "a": "3"} for s in "xy" for i in range(3)]
    path = tmp_path / "subset.json"
    path.write_text(json.dumps({"vhd": {"x": [0, 2], "z": [1]}, "tal": {}}))
    kept = apply_subset(records, load_subset(path))
    assert [(r["source"], r["idx"]) for r in kept] == [("x", 0), ("x", 2)]
    path.write_text(json.dumps({"vhd": [1, 2]}))
    with pytest.raises(DataError, match="subset.json"):
        load_subset(path)


def _small_full_set() -> list[dict]:
    """A few samples of every (task, source) of the synthetic set, crash cases included."""
    records = synthetic_predictions()
    keep, seen = [], {}
    for r in records:
        key = (r["task"], r["source"])
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= 8 or (r["idx"] % 97 == 5):
            keep.append(r)
    return keep


def test_full_pipeline_is_deterministic_and_cli_writes_the_official_layout(
    tmp_path: Path, embedder: SentenceEmbedder
) -> None:
    records = _small_full_set()
    first = score_predictions(records, embedder=embedder)
    assert list(first.sources) == list(TASKS) and first.absent == []
    assert {t: list(s) for t, s in first.sources.items()} == {t: [s for s, _ in v] for t, v in SYNTHETIC_COUNTS.items()}
    assert list(first.sources["dvc"]["youcook2"]) == [
        "Total", "Failed", "F1@0.1", "F1@0.3", "F1@0.5", "F1@0.7", "F1",
        "Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr", "SentSim",
    ]  # fmt: skip
    assert list(first.sources["tvg"]["charades_sta"]) == ["Total", "Failed", "mIoU", "F1@0.1", "F1@0.3", "F1@0.5",
                                                          "F1@0.7", "F1"]  # fmt: skip
    assert all(v is not None for v in [*first.overall.values(), *first.merged.values()])
    assert first.issues  # the synthetic set holds crash-inducing answers

    pred = tmp_path / "run" / "etbench.json"
    pred.parent.mkdir()
    pred.write_text(json.dumps(records))
    assert main(["score", str(pred)]) == 0  # a fresh process-wide run: new model object, new JVMs
    written = json.loads((pred.parent / "metrics.json").read_text())
    assert written == json.loads(json.dumps(first.to_json()))  # identical numbers run to run
    tsv = pd.read_csv(pred.parent / "metrics.tsv", sep="\t", keep_default_na=False)
    assert set(tsv["scope"]) == {"source", "task", "overall", "merged"}
    overall = tsv[tsv.scope == "overall"].set_index("metric")["value"].astype(float)
    assert overall["DVC (Sim)"] == first.overall["DVC (Sim)"]
    log = (pred.parent / "metrics.log").read_text()
    for section in ("Referring:", "Grounding:", "Captioning:", "Complex:", "Overall:", "Merged:", "EVC (Acc)"):
        assert section in log
    assert "Answers scored as failed parses" in log

    other_seed = score_predictions(records, ScoreOptions(seed=1), embedder=embedder)
    assert other_seed.sources["tvg"] == first.sources["tvg"]  # the seed only touches garbage captions


def test_cli_options_strict_nested_subset_and_out_dir(tmp_path: Path) -> None:
    records = [
        {"task": "rar", "source": "s", "idx": 0, "o": ["a", "b", "c", "d"], "p": 1, "a": "A) a"},
        {"task": "rar", "source": "s", "idx": 1, "o": ["a", "b", "c", "d"], "p": 1, "a": "B) b"},
        {"task": "rar", "source": "s", "idx": 2, "o": ["a", "b", "c", "d"], "p": 1, "a": "(B)"},
    ]
    pred = tmp_path / "p.json"
    pred.write_text(json.dumps(records))
    subset = tmp_path / "subset.json"
    subset.write_text(json.dumps({"rar": {"s": [0, 1]}}))
    out = tmp_path / "out"
    assert main(["score", str(pred), "--strict", "--subset", str(subset), "--out-dir", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text()) == {"rar": {"s": {"Total": 2, "Failed": 0, "Acc": 0.5}}}
    assert "Evaluating on a subset with 2 samples" in (out / "metrics.log").read_text()
    assert main(["score", str(pred), "--mc-form", "nested", "--out-dir", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["rar"]["s"]["Acc"] == 0.66667
    assert main(["score", str(tmp_path / "missing.json")]) == 2  # DataError: message, no traceback


def test_write_outputs_atomic_names(tmp_path: Path) -> None:
    m = score_predictions([{"task": "vhd", "source": "s", "idx": 0, "tgt": [[0, 5]], "a": "3"}],
                          embedder=SentenceEmbedder("/nonexistent"))  # fmt: skip
    paths = write_outputs(m, tmp_path / "x")
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["metrics.json", "metrics.log", "metrics.tsv"]
    assert json.loads(paths["json"].read_text()) == {"vhd": {"s": {"Total": 1, "Failed": 0, "F1": 1.0}}}
