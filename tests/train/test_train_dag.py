"""The training rules in the real Snakemake DAG: a stage killed mid-training resumes when the DAG is run again."""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import time

import psutil
import pytest
import yaml
from helpers import snakemake, snakemake_cmd


def kill_training_job(snakemake_pid: int) -> None:
    """SIGKILL the job's torchrun and its workers (found among our own Snakemake's children, by pid)."""
    for child in psutil.Process(snakemake_pid).children(recursive=True):
        if "torch.distributed.run" in " ".join(child.cmdline()):
            for proc in [*child.children(recursive=True), child]:
                try:
                    proc.send_signal(signal.SIGKILL)
                except psutil.NoSuchProcess:  # a short-lived helper that ended between listing and killing
                    pass
            return
    raise AssertionError("no training job found")


@pytest.mark.slow
def test_a_stage_killed_in_the_dag_resumes_on_the_next_run(tmp_path, test_config):
    config = copy.deepcopy(test_config)
    config["train"]["save_steps"] = 2
    config["train"]["stage3"].update(max_steps=8, holdout_fraction=0.0)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    target = "results/train/stage3/summary.json"
    command = snakemake_cmd(tmp_path, "--cores", "2", target)
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    marker = tmp_path / "results/train/stage3/work/checkpoints/checkpoint-4/COMPLETE"
    deadline = time.time() + 600
    while not marker.exists() and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), run.stdout.read().decode()[-3000:] if run.poll() is not None else "timed out"
    kill_training_job(run.pid)
    output = run.communicate(timeout=120)[0].decode()
    assert run.returncode != 0 and "Error in rule train_stage" in output
    # Snakemake removed the failed job's declared outputs; the working directory and its checkpoints are kept.
    assert not (tmp_path / "results/models/stage3").exists() and marker.exists()

    stage1 = (tmp_path / "results/train/stage1/summary.json").stat().st_mtime_ns
    again = snakemake(tmp_path, "--cores", "2", target, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    summary = json.loads((tmp_path / target).read_text())
    assert summary["steps"] == 8 and summary["resumed_from"].rsplit("-", 1)[-1] in {"4", "6"}
    assert "resuming from" in (tmp_path / "results/logs/train/stage3.log").read_text()
    assert (tmp_path / "results/train/stage1/summary.json").stat().st_mtime_ns == stage1  # not trained again
