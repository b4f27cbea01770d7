"""bench/gpu/run_all.sh in its tiny CPU mode: every GPU script runs its whole path, so none can rot unseen."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

from helpers import REPO


def test_run_all_in_tiny_mode_writes_every_benchmarks_figures(tmp_path):
    env = {**os.environ, "TINY": "1", "PYTHON": sys.executable, "OUT": str(tmp_path)}
    run = subprocess.run(
        ["bash", str(REPO / "bench/gpu/run_all.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with (tmp_path / "figures.tsv").open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    figures = {(r["benchmark"], r["figure"]): r["value"] for r in rows}
    assert {r["benchmark"] for r in rows} == {"model", "train", "infer"}
    assert ("model", "missing") not in figures
    assert float(figures[("model", "train_eager.step_s")]) > 0
    assert float(figures[("train", "step_s")]) > 0
    assert float(figures[("infer", "batch8.samples_per_s")]) > 0
    assert figures[("infer", "same_answers")] == "8/8"  # fp32 on a CPU: batching changes no answer
