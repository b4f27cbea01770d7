"""bench/bench_fullsize.py in its tiny mode: every step of the full-size dress rehearsal runs on the tiny layout."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import REPO


def test_every_step_runs_on_the_tiny_layout(tmp_path):
    out = tmp_path / "figures.json"
    cmd = [sys.executable, str(REPO / "bench/bench_fullsize.py"), "--tiny", "--work", str(tmp_path / "w"),
           "--json", str(out)]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["build_save"]["parameters"] > 0 and figures["build_save"]["shards"] == ["model.safetensors"]
    assert figures["load"]["fp16_gib"] > 0  # memory ratios mean something at full size only (test_checkpoint_streaming)
    step = figures["train_step"]
    assert step["loss"] > 0 and step["match_loss"] > 0 and step["trainable_with_grad"] > 0
    assert step["merge_max_abs_diff_vs_formula"] < 1e-2
    assert figures["generate"]["answers"] == 2 and figures["generate"]["errors"] == 0
    assert figures["generate"]["matched_in_range"] is True
