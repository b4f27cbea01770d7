"""The DAG with real Snakemake: dry run, lint, the demo run end to end, failures and re-runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import REPO, snakemake

from etchat.config import load_config
from etchat.data.synth.scene import RENDER_RATE, make_scene, render_frames
from etchat.etbench import TASKS
from etchat.video.ffmpeg import encode_frames, probe


def workdir_with(tmp_path: Path, config: dict) -> Path:
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def test_dry_run_and_lint_are_clean(tmp_path, test_config):
    wd = workdir_with(tmp_path, test_config)
    dry = snakemake(wd, "-n")
    assert dry.returncode == 0, dry.stderr
    for rule in ("synth", "list_videos", "validate_annotations", "compress_shard", "compress_summary"):
        assert f"rule {rule}:" in dry.stdout + dry.stderr
    lint = snakemake(wd, "--lint")
    assert lint.returncode == 0 and "Congratulations" in lint.stdout + lint.stderr, lint.stdout + lint.stderr


def test_config_error_stops_the_dag_at_once(tmp_path, test_config):
    wd = workdir_with(tmp_path, test_config)
    proc = snakemake(wd, "-n", "--config", "preset=Not A Name")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert 'config key preset: value "Not A Name" is not allowed' in output and "^[a-z0-9]" in output


@pytest.mark.slow
def test_demo_dag_runs_end_to_end_and_reruns_nothing(tmp_path, test_config):
    wd = workdir_with(tmp_path, test_config)
    run = snakemake(wd, "--cores", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    table = pd.read_csv(wd / "results/compress/summary.tsv", sep="\t")
    assert set(table["set"]) == set(test_config["video_sets"])
    assert (table["failed"] == 0).all() and (table["ok"] == table["videos"]).all() and (table["videos"] > 0).all()
    for name, entry in test_config["video_sets"].items():
        manifest = pd.read_csv(wd / f"results/compress/{name}/manifest.tsv", sep="\t", keep_default_na=False)
        for rel in manifest["path"]:
            out = probe(wd / entry["compressed"] / rel)
            assert min(out.width, out.height) == 224 and out.fps == pytest.approx(3) and not out.has_audio
    for name in test_config["annotations"]["files"]:
        ext = "txt" if name == "charades" else "json"
        assert (wd / f"results/annotations/{name}.{ext}").stat().st_size > 0
    # inference -> scoring -> report
    annotations = json.loads((wd / "results/annotations/etbench_vid.json").read_text())
    predictions = json.loads((wd / "results/infer/etbench/predictions.json").read_text())
    assert [{k: v for k, v in p.items() if k != "a"} for p in predictions] == annotations
    metrics = pd.read_csv(wd / "results/evaluate/etbench/metrics.tsv", sep="\t", keep_default_na=False)
    assert set(metrics.loc[metrics["scope"] == "overall", "task"]) == set(TASKS)
    charades = json.loads((wd / "results/evaluate/charades/metrics.json").read_text())
    assert charades["Total"] == len((wd / "results/annotations/charades.txt").read_text().splitlines())
    page = (wd / "results/report/index.html").read_text()
    assert "preset <code>test</code>" in page and "results/models/stage3" in page
    grounding = json.loads((wd / "results/train/stage3/grounding.json").read_text())
    assert grounding["timestamps"] > 0 and "<td>matching head</td>" in page
    for stage in (1, 2, 3):
        assert (wd / f"results/report/training_stage{stage}.svg").is_file()
    again = snakemake(wd, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr
    report = snakemake(wd, "--report", "results/report.html")
    assert report.returncode == 0 and (wd / "results/report.html").stat().st_size > 100_000, report.stderr[-2000:]


def _write_video(path: Path, seed: int) -> None:
    scene = make_scene(np.random.default_rng(seed), 320, 240, 25, 8.0, 1, False)
    encode_frames(path, render_frames(scene), 320, 240, 25, scene.n_frames, RENDER_RATE)


def _real_data_config(tmp_path: Path, **compress) -> dict:
    """Synthesis off, one video set of 'real' videos, no annotation files."""
    config = load_config([REPO / "config.yaml"])
    config["synth"]["enabled"] = False
    config["video_sets"] = {
        "mine": {"videos": "data/mine/videos", "compressed": "data/mine/videos_compressed", "compress": True}
    }
    config["annotations"]["files"] = {}
    config["train"]["stages"] = []  # no training data: compression only
    config["compress"].update(preset="veryfast", **compress)
    videos = tmp_path / "data/mine/videos"
    videos.mkdir(parents=True)
    _write_video(videos / "good.mp4", 0)
    (videos / "sub").mkdir()
    (videos / "sub/corrupt.mp4").write_bytes(b"\x00\x01" * 5000)
    return config


def test_bad_video_fails_the_run_only_after_the_rest_is_done(tmp_path):
    wd = workdir_with(tmp_path, _real_data_config(tmp_path, on_error="fail", shards=2))
    proc = snakemake(wd, "--cores", "2")
    assert proc.returncode != 0
    log = (wd / "results/logs/compress/mine/summary.log").read_text()
    assert "sub/corrupt.mp4" in log and "compress.on_error: skip" in log
    assert probe(wd / "data/mine/videos_compressed/good.mp4").height == 224  # finished work is kept
    assert not (wd / "data/mine/videos_compressed/sub/corrupt.mp4").exists()
    assert len(list((wd / "results/compress/mine/shards").glob("*.tsv"))) == 2


def test_skip_mode_lists_bad_videos_and_new_videos_are_picked_up(tmp_path):
    wd = workdir_with(tmp_path, _real_data_config(tmp_path, on_error="skip"))
    assert snakemake(wd, "--cores", "2").returncode == 0
    failed = pd.read_csv(wd / "results/compress/mine/failed.tsv", sep="\t")
    assert failed["path"].tolist() == ["sub/corrupt.mp4"] and failed["error"][0].startswith("input:")
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(snakemake(wd, "-n"))
    # A video added to the set is listed and compressed on the next run; the valid output is reused.
    _write_video(wd / "data/mine/videos/sub/new.mp4", 1)
    assert snakemake(wd, "--cores", "2").returncode == 0
    manifest = pd.read_csv(wd / "results/compress/mine/manifest.tsv", sep="\t", keep_default_na=False)
    assert dict(zip(manifest["path"], manifest["action"], strict=True)) == {
        "good.mp4": "reused",
        "sub/corrupt.mp4": "none",
        "sub/new.mp4": "compressed",
    }


def test_invalid_annotations_stop_the_dag_or_are_dropped(tmp_path):
    config = _real_data_config(tmp_path)
    config["video_sets"] = {}
    config["annotations"]["files"] = {
        "bench": {"path": "data/bench.json", "format": "etbench_txt", "video_root": "data/mine/videos"}
    }
    record = {
        "version": 1.0,
        "idx": 0,
        "task": "tvg",
        "source": "s",
        "video": "good.mp4",
        "duration": 8.0,
        "tgt": [1.0, 3.0],
        "q": "When?",
    }
    (tmp_path / "data/bench.json").write_text(
        pd.Series([record, {**record, "video": "gone.mp4"}]).to_json(orient="values")
    )
    wd = workdir_with(tmp_path, config)
    proc = snakemake(wd, "--cores", "1")
    assert proc.returncode != 0
    assert (
        "record 1 (tvg/s idx 0): video gone.mp4 not found" in (wd / "results/logs/validate/bench.json.log").read_text()
    )
    config["annotations"]["on_invalid"] = "drop"
    workdir_with(tmp_path, config)
    assert snakemake(wd, "--cores", "1").returncode == 0
    dropped = pd.read_csv(wd / "results/annotations/bench.json.dropped.tsv", sep="\t")
    assert dropped["index"].tolist() == [1]
    # The user fixes the file: the next run picks it up (a new record, nothing dropped).
    (tmp_path / "data/bench.json").write_text(
        pd.Series([record, {**record, "idx": 1, "tgt": [2.0, 4.0]}]).to_json(orient="values")
    )
    assert snakemake(wd, "--cores", "1").returncode == 0
    assert [r["idx"] for r in json.loads((wd / "results/annotations/bench.json").read_text())] == [0, 1]
    assert pd.read_csv(wd / "results/annotations/bench.json.dropped.tsv", sep="\t").empty
    shutil.rmtree(wd / ".snakemake", ignore_errors=True)
