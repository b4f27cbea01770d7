"""The report: real scorer output in, one self-contained page and SVG charts out."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from etchat.evaluate.published import PUBLISHED_FULL
from etchat.report.svg import bar_chart, line_chart


@pytest.fixture(scope="module")
def scored(tmp_path_factory, synth_data) -> Path:
    """The demo's E.T. Bench with made-up answers, scored by the real scorer (Java, MiniLM)."""
    out = tmp_path_factory.mktemp("scored")
    records = json.loads((synth_data / "etbench/annotations/etbench_vid_v1.0.json").read_text())
    records = [r for r in records if r["task"] in ("rar", "tvg", "dvc")]  # a partial task set
    for r in records:
        r["a"] = {"rar": "B) a red circle moves left", "tvg": "It happens in 2 - 6 seconds."}.get(
            r["task"], "0 - 5 seconds, a red circle moves left."
        )
    (out / "predictions.json").write_text(json.dumps(records))
    subprocess.run([sys.executable, "-m", "etchat", "score", str(out / "predictions.json")], check=True)
    return out


def _report(tmp_path: Path, scored: Path, *extra: str) -> Path:
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "etchat", "report", "--metrics", str(scored / "metrics.tsv"), "--out-dir", str(out)]
    subprocess.run([*cmd, *extra], check=True)
    return out


def test_report_shows_ours_beside_the_paper_and_what_is_absent(tmp_path, scored):
    out = _report(tmp_path, scored)
    page = (out / "index.html").read_text()
    rows = [line.split("\t") for line in (scored / "metrics.tsv").read_text().splitlines()[1:]]
    metrics = {r[4]: float(r[5]) for r in rows if r[0] == "overall" and r[5] != ""}
    assert set(metrics) == {"RAR (Acc)", "TVG (F1)", "DVC (F1)", "DVC (Sim)"}
    for value in metrics.values():
        assert f"<td>{value:.1f}</td>" in page
    assert f"<td>{PUBLISHED_FULL['E.T. Chat']['TVG (F1)']:.1f}</td>" in page
    assert "Tasks not in this run: EVC (Acc), RVQ (Acc), EPM (F1)," in page
    assert "No model was trained in this run" in page and "Charades-STA was not evaluated" in page
    for name in ("tasks.svg", "overall.html", "capabilities.html"):
        assert (out / name).stat().st_mode & stat.S_IROTH, "report files must be readable by others"
    ET.fromstring((out / "tasks.svg").read_text())  # well-formed


def test_report_sections_from_training_logs_charades_and_compression(tmp_path, scored):
    log = tmp_path / "stage3.tsv"
    log.write_text(
        "step\tloss\tlm_loss\tmatch_loss\tlearning_rate\tsamples_per_s\n1\t9\t4\t5\t1e-3\t20\n2\t7\t3\t4\t1e-3\t22\n"
    )
    charades = tmp_path / "charades.json"
    charades.write_text(
        json.dumps({"Total": 10, "Failed": 1, "R1@0.3": 0.5, "R1@0.5": 0.3, "R1@0.7": 0.1, "mIoU": 0.33})
    )
    compress = tmp_path / "compress.tsv"
    compress.write_text(
        "set\tvideos\tok\tcompressed\treused\tchecked\tfailed\tinput_hours\toutput_hours\tseconds\ton_error\n"
        "etbench\t40\t39\t39\t0\t0\t1\t0.27\t0.27\t36.7\tskip\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text("preset: demo\n")
    grounding = tmp_path / "grounding.json"
    grounding.write_text(json.dumps({"records": 9, "timestamps": 20, "accuracy": 0.35, "accuracy_within_1": 0.6,
                                     "mae_frames": 2.25, "chance_accuracy": 0.07, "chance_accuracy_within_1": 0.2,
                                     "chance_mae_frames": 4.5}))  # fmt: skip
    out = _report(tmp_path, scored, "--train-log", f"stage3={log}", "--charades", str(charades), "--compress",
                  str(compress), "--config", str(config), "--grounding", str(grounding))  # fmt: skip
    page = (out / "index.html").read_text()
    assert "<td>stage3</td><td>2</td><td>7.0</td><td>3.0</td><td>4.0</td><td>21.0</td>" in page
    assert "<td>50.0</td><td>30.0</td><td>10.0</td><td>33.0</td><td>1</td>" in page  # Charades x100
    assert "<td>65.7</td>" in page  # the paper's R1@0.3
    assert "<td>etbench</td><td>40</td><td>39</td>" in page
    assert "<td>matching head</td><td>35.0</td><td>60.0</td><td>2.2</td>" in page and "20 answer timestamps" in page
    assert "preset <code>demo</code>" in page and "git commit" in page and "transformers" in page
    for name in ("training_stage3.svg", "compression.svg"):
        ET.fromstring((out / name).read_text())


def test_grounding_probe_with_nothing_to_measure_says_so(tmp_path, scored):
    grounding = tmp_path / "grounding.json"
    grounding.write_text(json.dumps({"timestamps": 0, "records": 0, "per_task": {}}))
    page = (_report(tmp_path, scored, "--grounding", str(grounding)) / "index.html").read_text()
    assert "Nothing to measure" in page and "train.stage3.holdout_fraction" in page
    assert "<td>matching head</td>" not in page


def test_charts_scale_and_skip_missing_values():
    svg = bar_chart(["a", "b"], {"x": [1.0, None], "y": [3.0, 40.0]}, "T & <title>")
    root = ET.fromstring(svg)
    bars = [
        e
        for e in root.iter("{http://www.w3.org/2000/svg}rect")
        if e.find("{http://www.w3.org/2000/svg}title") is not None
    ]
    assert len(bars) == 3  # the None value draws no bar
    heights = {b.find("{http://www.w3.org/2000/svg}title").text: float(b.get("height")) for b in bars}
    assert (
        heights["y b: 40"] == pytest.approx(2 * heights["y a: 3"] * 40 / 6, rel=1e-3)
        or heights["y b: 40"] > heights["x a: 1"]
    )
    assert "T &amp; &lt;title&gt;" in svg
    line = ET.fromstring(line_chart({"loss": ([1, 2, 3], [3.0, 2.0, float("nan")])}, "L"))
    polyline = next(line.iter("{http://www.w3.org/2000/svg}polyline"))
    assert len(polyline.get("points").split()) == 2  # the NaN point is left out
