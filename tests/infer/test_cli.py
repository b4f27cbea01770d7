"""The commands as the rules and users run them: a shard killed with SIGKILL and re-run, the merge's errors,
`etchat infer` on a folder of videos, and the Snakemake rules on the demo data (slow)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, snakemake

from etchat.cli import main
from etchat.infer.store import read_lines


def etchat(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "etchat", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def shard_args(annotations: Path, videos: Path, checkpoint: Path, out: Path, shard: str, *extra: str) -> list[str]:
    return [
        "infer-shard", "--benchmark", "etbench", "--annotations", str(annotations), "--video-root", str(videos),
        "--checkpoint", str(checkpoint), "--shard", shard, "--log", str(out / f"{shard}.jsonl"),
        "--summary", str(out / f"{shard}.json"), *extra,
    ]  # fmt: skip


def test_shard_killed_midway_resumes_without_repeating_or_losing(checkpoint, videos, etbench_file, tmp_path):
    annotations = etbench_file()
    out = tmp_path / "shards"
    # Long answers at batch 1, so that the kill lands between samples.
    args = shard_args(annotations, videos, checkpoint, out, "1-of-1", "--decoding", "greedy", "--max-new-tokens", "48")
    proc = subprocess.Popen([sys.executable, "-m", "etchat", *args], cwd=REPO, stderr=subprocess.DEVNULL)
    log = out / "1-of-1.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = read_lines(log)
    assert 2 <= len(first) < 6, "the shard was not killed midway"
    assert not (out / "1-of-1.json").exists()  # no summary: the job failed

    done = etchat(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    final = read_lines(log)
    keys = [line["key"] for line in final]
    assert len(keys) == len(set(keys)) == 6  # none answered twice, none lost
    assert final[: len(first)] == first
    summary = json.loads((out / "1-of-1.json").read_text())
    assert (summary["reused"], summary["answered"], summary["errors"]) == (len(first), 6 - len(first), 0)

    merged = etchat(
        "infer-merge", "--benchmark", "etbench", "--annotations", str(annotations), "--video-root", str(videos),
        "--shards", str(out / "1-of-1.json"), "--out", str(tmp_path / "predictions.json"),
        "--summary", str(tmp_path / "summary.json"),
    )  # fmt: skip
    assert merged.returncode == 0, merged.stderr[-2000:]
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert [{k: v for k, v in p.items() if k != "a"} for p in predictions] == json.loads(annotations.read_text())
    by_key = {line["key"]: line["answer"] for line in final}
    assert [p["a"] for p in predictions] == [by_key[f"{p['task']}/{p['source']}/{p['idx']}"] for p in predictions]


def test_merge_of_an_unfinished_shard_fails_listing_the_missing(checkpoint, videos, etbench_file, tmp_path, caplog):
    annotations = etbench_file()
    out = tmp_path / "shards"
    for shard in ("1-of-2", "2-of-2"):  # in-process: the same entry point as `etchat`, without a new interpreter
        assert main(shard_args(annotations, videos, checkpoint, out, shard, "--max-new-tokens", "4")) == 0
    lines = (out / "2-of-2.jsonl").read_text().splitlines()
    (out / "2-of-2.jsonl").write_text("\n".join(lines[:1]) + "\n")
    code = main([
        "infer-merge", "--benchmark", "etbench", "--annotations", str(annotations), "--video-root", str(videos),
        "--shards", str(out / "1-of-2.json"), str(out / "2-of-2.json"), "--out", str(tmp_path / "p.json"),
        "--summary", str(tmp_path / "s.json"),
    ])  # fmt: skip
    assert code == 2 and not (tmp_path / "p.json").exists()
    assert "2 of 6 samples have no answer" in caplog.text
    assert "#3 tvg/s/1 tvg (sub/a.mp4)" in caplog.text and "#5 dvc/s/1 dvc (sub/b.mp4)" in caplog.text


def test_own_videos_and_questions(checkpoint, videos, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    questions = tmp_path / "questions.jsonl"
    rows = [
        {"id": "q1", "video": "sub/a.mp4", "question": "When does the red square appear?"},
        {"id": "q2", "video": "sub/b.mp4", "question": "What happens at <vid> seconds?", "src": [4.5]},
        {"id": "q3", "video": "sub/nope.mp4", "question": "Anything?"},
    ]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "answers.jsonl"
    args = ["infer", "--checkpoint", str(checkpoint), "--videos", str(videos), "--questions", str(questions)]
    args += ["--out", str(out), "--max-new-tokens", "6", "--fps", "2"]
    assert main(args) == 1  # one question could not be answered
    answers = read_lines(out)
    assert [a["key"] for a in answers] == ["q1", "q2", "q3"]
    assert [a["status"] for a in answers] == ["ok", "ok", "error"] and "video not found" in answers[2]["error"]
    assert answers[0]["fps"] == 2 and answers[0]["frames"] == 18 and answers[0]["vid_times"] == "seconds"
    assert answers[1]["frames"] == 24 and f"q2: {answers[1]['answer']}" in caplog.text
    caplog.clear()
    assert main(args) == 1
    assert "2 answered already, 1 to do" in caplog.text
    assert read_lines(out)[:2] == answers[:2]

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"video": "sub/a.mp4", "question": "At <vid> and <vid>?", "src": [1.0]}) + "\n")
    refused = main(["infer", "--checkpoint", str(checkpoint), "--videos", str(videos), "--questions", str(bad),
                    "--out", str(tmp_path / "x.jsonl")])  # fmt: skip
    assert refused == 2 and "question 1: the question has 2 <vid> but src gives 1 times" in caplog.text


@pytest.mark.slow
def test_rules_infer_the_demo_benchmarks_and_resume(checkpoint, test_config, tmp_path):
    config = json.loads(json.dumps(test_config))
    config["infer"].update(checkpoint=str(checkpoint), max_new_tokens=6, batch_size=2)
    if "train" in config:  # no training: inference evaluates infer.checkpoint (as the released preset)
        config["train"]["stages"] = []
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    targets = ["results/infer/etbench/predictions.json", "results/infer/charades/predictions.json"]
    run = snakemake(tmp_path, "--cores", "2", *targets)
    assert run.returncode == 0, run.stderr[-3000:]
    records = json.loads((tmp_path / "results/annotations/etbench_vid.json").read_text())
    predictions = json.loads((tmp_path / targets[0]).read_text())
    assert [{k: v for k, v in p.items() if k != "a"} for p in predictions] == records
    assert all(isinstance(p["a"], str) and p["a"] for p in predictions)
    assert len(list((tmp_path / "results/infer/etbench/shards").glob("*-of-2.jsonl"))) == 2
    charades = json.loads((tmp_path / targets[1]).read_text())
    assert len(charades) == len((tmp_path / "results/annotations/charades.txt").read_text().splitlines())
    score = subprocess.run(
        [sys.executable, "-m", "etchat", "score-charades", str(tmp_path / targets[1])], capture_output=True, text=True
    )
    assert score.returncode == 0, score.stderr
    assert "Nothing to be done" in snakemake(tmp_path, "-n", *targets).stdout

    # Other decoding settings: the shards run again and nothing old is reused.
    summary = tmp_path / "results/infer/etbench/shards/1-of-2.json"
    greedy = snakemake(tmp_path, "--cores", "2", *targets, "--config", "infer={'decoding': 'greedy'}")
    assert greedy.returncode == 0, greedy.stderr[-3000:]
    data = json.loads(summary.read_text())
    assert data["settings"]["decoding"] == "greedy" and data["reused"] == 0 and data["stale_lines"] > 0
    os.remove(tmp_path / targets[0])
    # Snakemake deletes a failed job's declared outputs (the summary), never the answer log: all is reused.
    os.remove(summary)
    forced = snakemake(tmp_path, "--cores", "2", targets[0], "--config", "infer={'decoding': 'greedy'}")
    assert forced.returncode == 0, forced.stderr[-3000:]
    data = json.loads(summary.read_text())
    assert data["answered"] == 0 and data["reused"] == data["samples"]
