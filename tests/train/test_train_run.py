"""`etchat train` for real: DeepSpeed ZeRO-2 on the CPU accelerator, the three stages on the tiny synthetic data set,
a kill (SIGKILL) and resume that ends in the same weights, and two torchrun workers that train what one worker
with gradient accumulation trains."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from helpers import REPO
from safetensors.torch import load_file

from etchat.config import load_config
from etchat.data.synth import layout
from etchat.train.base import build_base

pytestmark = pytest.mark.slow

STAGE_DATA = {  # annotation file, video root, image root (relative to the data set)
    1: (layout.STAGE1, "webvid/videos", "llava_pretrain/images"),
    2: (layout.STAGE2, "video_chatgpt", "llava_instruct"),
    3: (layout.STAGE3["vid"], "et_instruct_164k/videos", None),
}


@pytest.fixture(scope="module")
def settings() -> dict:
    config = load_config([REPO / "config.yaml"])
    model = {**config["model"], "demo_size": "test", "demo_vocab_size": 320}
    train = copy.deepcopy(config["train"])
    train.update(save_steps=2, threads=1, dataloader_workers=0, cache_frames=True)
    for stage in (1, 2, 3):
        train[f"stage{stage}"].update(global_batch=4, per_device_batch=2, max_steps=8, holdout_fraction=0.0)
    return {"model": model, "train": train}


@pytest.fixture(scope="module")
def base(tmp_path_factory, synth_data, settings) -> Path:
    out = tmp_path_factory.mktemp("models") / "base"
    build_base(settings["model"], [synth_data / STAGE_DATA[s][0] for s in (1, 2, 3)], out)
    # No Q-Former dropout: two runs that see the same batches must end equal (LoRA dropout is set per test).
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "qformer_dropout": 0.0}))
    return out


def train_command(stage: int, init: Path, data: Path, out: Path, train: dict, model: dict, workers: int = 0):
    annotations, videos, images = STAGE_DATA[stage]
    launcher = [sys.executable, "-m", "etchat"]
    if workers:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
                    "--nproc_per_node", str(workers), "-m", "etchat"]  # fmt: skip
    cmd = [*launcher, "train", "--stage", str(stage), "--train-settings", json.dumps(train),
           "--model-settings", json.dumps(model), "--init", str(init), "--annotations", str(data / annotations),
           "--video-root", str(data / videos), "--work-dir", str(out / "work"), "--out", str(out / "model"),
           "--metrics", str(out / "metrics.tsv"), "--skipped", str(out / "skipped.tsv"),
           "--summary", str(out / "summary.json"), "--heldout", str(out / "heldout.json")]  # fmt: skip
    if images:
        cmd += ["--image-root", str(data / images)]
    return cmd


def run_stage(stage: int, init: Path, data: Path, out: Path, settings: dict, workers: int = 0, **train_overrides):
    train = copy.deepcopy(settings["train"])
    train.update(train_overrides)
    proc = subprocess.run(
        train_command(stage, init, data, out, train, settings["model"], workers),
        capture_output=True, text=True, timeout=600, cwd=REPO, env=_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return out


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted(model_dir.glob("*.safetensors")) for k, v in load_file(f).items()}


@pytest.fixture(scope="module")
def stages(tmp_path_factory, synth_data, base, settings) -> dict[int, Path]:
    """Stages 1 -> 2 -> 3 as the DAG runs them (one worker)."""
    root = tmp_path_factory.mktemp("stages")
    outs, init = {}, base
    for stage in (1, 2, 3):
        outs[stage] = run_stage(stage, init, synth_data, root / f"stage{stage}", settings)
        init = outs[stage] / "model"
    return outs


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_each_stage_trains_and_its_loss_falls(stages, stage):
    from etchat.model import load_checkpoint

    out = stages[stage]
    metrics = pd.read_csv(out / "metrics.tsv", sep="\t")
    assert metrics["step"].tolist() == list(range(1, 9))
    # The LM loss is in every micro-batch (the matching loss only in those with timestamps: the total jumps).
    lm = metrics["lm_loss"]
    assert lm.iloc[-3:].mean() < lm.iloc[:3].mean() - 0.02, lm.tolist()
    assert (metrics["lm_loss"] > 0).all() and (metrics["samples_per_s"].iloc[1:] > 0).all()
    assert metrics["match_loss"].notna().any() == (stage == 3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["batch"] == {"global_batch": 4, "per_device": 2, "grad_accum": 2, "world_size": 1}
    assert summary["steps"] == 8 and summary["records"]["skipped"] == 0
    model, tokenizer = load_checkpoint(out / "model")
    assert model.config.conv_type == ("plain" if stage == 1 else "phi3")
    assert model.config.use_matching == (stage == 3) and model.config.bi_attention == (stage == 3)
    assert not any("lora_" in k for k in weights(out / "model"))  # LoRA merged
    assert tokenizer is not None and (out / "work/tensorboard").is_dir()
    assert any((out / "work/tensorboard").iterdir())


def test_stages_change_only_their_trainable_weights(stages, base):
    start, stage1 = weights(base), weights(stages[1] / "model")
    changed = {k for k in start if not torch.equal(start[k], stage1[k])}
    assert changed and all("qformer_" in k and "proj" in k or "vision_tower" in k for k in changed), sorted(changed)
    stage2, stage3 = weights(stages[2] / "model"), weights(stages[3] / "model")
    # LoRA merged into the attention of the LLM; its MLPs and embeddings stay as they were until stage 3.
    assert not torch.equal(
        stage1["model.layers.0.self_attn.qkv_proj.weight"], stage2["model.layers.0.self_attn.qkv_proj.weight"]
    )
    assert torch.equal(stage1["model.layers.0.mlp.down_proj.weight"], stage2["model.layers.0.mlp.down_proj.weight"])
    assert torch.equal(stage1["model.embed_tokens.weight"], stage2["model.embed_tokens.weight"])
    assert not torch.equal(stage2["model.embed_tokens.weight"], stage3["model.embed_tokens.weight"])
    assert torch.equal(stage2["model.layers.0.mlp.down_proj.weight"], stage3["model.layers.0.mlp.down_proj.weight"])
    assert "frm_head.1.weight" in stage3 and "frm_head.1.weight" not in stage2


def test_a_killed_stage_resumes_to_the_same_weights(tmp_path, stages, synth_data, settings):
    """Stage 3 (LoRA with dropout, matching heads, ZeRO-2): SIGKILL after a checkpoint, re-run, compare."""
    reference = stages[3] / "model"
    train = copy.deepcopy(settings["train"])
    cmd = train_command(3, stages[2] / "model", synth_data, tmp_path, train, settings["model"])
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = tmp_path / "work/checkpoints/checkpoint-4/COMPLETE"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the run never reached its second checkpoint"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "model").exists()

    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["resumed_from"] and summary["resumed_from"].split("-")[-1] in {"4", "6"}
    assert pd.read_csv(tmp_path / "metrics.tsv", sep="\t")["step"].tolist() == list(range(1, 9))
    resumed, uninterrupted = weights(tmp_path / "model"), weights(reference)
    assert resumed.keys() == uninterrupted.keys()
    different = [k for k in resumed if not torch.equal(resumed[k], uninterrupted[k])]
    assert not different, different[:5]


def test_two_workers_train_what_one_worker_with_accumulation_trains(tmp_path, stages, synth_data, settings):
    """Global batch 4: 1 worker x 2 per device x 2 accumulation vs 2 torchrun workers x 2 per device (gloo)."""
    lora = {"r": 8, "alpha": 16, "dropout": 0.0}
    stage3 = {**settings["train"]["stage3"], "max_steps": 3}
    one = run_stage(3, stages[2] / "model", synth_data, tmp_path / "one", settings, lora=lora, stage3=stage3)
    two = run_stage(3, stages[2] / "model", synth_data, tmp_path / "two", settings, workers=2, lora=lora, stage3=stage3)
    assert json.loads((two / "summary.json").read_text())["batch"] == {
        "global_batch": 4, "per_device": 2, "grad_accum": 1, "world_size": 2,
    }  # fmt: skip
    a, b = weights(one / "model"), weights(two / "model")
    start = weights(stages[2] / "model")
    moved = [k for k in a if k in start and not torch.equal(a[k], start[k])]
    assert moved
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-5, msg=key)
    loss_one = pd.read_csv(one / "metrics.tsv", sep="\t")["loss"]
    loss_two = pd.read_csv(two / "metrics.tsv", sep="\t")["loss"]
    assert loss_one.tolist() == pytest.approx(loss_two.tolist(), rel=1e-3)
