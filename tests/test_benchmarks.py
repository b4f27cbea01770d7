"""Benchmarks in their quick modes: each runs its whole path on small inputs, so none can rot unseen."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

from helpers import REPO


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_gpu_run_all_in_tiny_mode_writes_every_benchmarks_figures(tmp_path):
    env = {**os.environ, "TINY": "1", "PYTHON": sys.executable, "OUT": str(tmp_path)}
    run(["bash", str(REPO / "bench/gpu/run_all.sh")], env=env)
    with (tmp_path / "figures.tsv").open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    figures = {(r["benchmark"], r["figure"]): r["value"] for r in rows}
    assert {r["benchmark"] for r in rows} == {"model", "train", "infer"}
    assert ("model", "missing") not in figures
    assert float(figures[("model", "train_eager.step_s")]) > 0
    assert float(figures[("train", "step_s")]) > 0
    assert float(figures[("infer", "batch8.samples_per_s")]) > 0
    assert figures[("infer", "same_answers")] == "8/8"  # fp32 on a CPU: batching changes no answer


def test_fullsize_dress_rehearsal_runs_every_step_on_the_tiny_layout(tmp_path):
    out = tmp_path / "figures.json"
    run([sys.executable, str(REPO / "bench/bench_fullsize.py"), "--tiny", "--work", str(tmp_path / "w"), "--json",
         str(out)])  # fmt: skip
    figures = json.loads(out.read_text())
    assert figures["build_save"]["parameters"] > 0 and figures["build_save"]["shards"] == ["model.safetensors"]
    assert figures["load"]["fp16_gib"] > 0  # memory ratios mean something at full size only (test_checkpoint_streaming)
    step = figures["train_step"]
    assert step["loss"] > 0 and step["match_loss"] > 0 and step["trainable_with_grad"] > 0
    assert step["merge_max_abs_diff_vs_formula"] < 1e-2
    assert figures["generate"]["answers"] == 2 and figures["generate"]["errors"] == 0
    assert figures["generate"]["matched_in_range"] is True


def test_frame_throughput_quick(tmp_path):
    out = tmp_path / "frames.json"
    run([sys.executable, str(REPO / "bench/bench_frames.py"), "--quick", "--json", str(out)])
    figures = json.loads(out.read_text())
    assert figures["frames"] == 20  # 20 s at 1 fps
    assert figures["frames_per_s_per_core"] > 0 and figures["workers_needed_per_gpu"] >= 1


def test_data_path_at_one_percent_of_the_real_counts(tmp_path):
    out = tmp_path / "datapath.json"
    run([sys.executable, str(REPO / "bench/bench_datapath.py"), "--work", str(tmp_path / "w"), "--scale", "0.01",
         "--json", str(out)])  # fmt: skip
    figures = json.loads(out.read_text())
    assert figures["stage2"]["validate"]["records"] == 7632 and figures["stage2"]["validate"]["invalid"] == 0
    assert figures["etbench"]["validate"]["invalid"] == 0
    for stage in ("stage1", "stage2", "stage3"):
        startup = figures[stage]["startup"]
        assert startup["usable"] == startup["records"] > 0, stage  # every synthetic record is usable
