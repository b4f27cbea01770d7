"""CPU benchmark of demo training: samples/s per stage through `etchat train` (HF Trainer + DeepSpeed ZeRO-2 on the
CPU accelerator), against a plain PyTorch AdamW loop over the same batches of the same model in the same run.

Needs the demo data of a finished `snakemake --cores all` run (results/annotations, results/compress, and
results/models/stage1..2 as the starts of stages 2..3; results/models/base for stage 1). For each stage it runs
`etchat train --stage N` for `--steps` optimizer steps in a temporary directory and reads the steady-state rate
from its metrics (median over the steps after the first), then times `--steps` steps of the plain loop on batches
drawn from the same dataset. The ratio is the cost of the Trainer + DeepSpeed path.

Usage: python bench/bench_train.py [--steps 20] [--threads 1] [--stages 1 2 3] [--workdir DIR]
(`--workdir`: where the finished demo run is, default the repository.)
Times depend on machine load: compare figures from the same run only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from etchat.config import load_config, stage_section  # noqa: E402

STARTS = {1: "results/models/base", 2: "results/models/stage1", 3: "results/models/stage2"}


def stage_options(config: dict, stage: int) -> list[str]:
    """The media options of the rule (the demo layout: each stage's set is compressed)."""
    sets = {1: "webvid", 2: "video_chatgpt", 3: "et_instruct"}
    images = {1: "data/llava_pretrain/images", 2: "data/llava_instruct"}
    vset = config["video_sets"][sets[stage]]
    options = ["--manifest", f"results/compress/{sets[stage]}/manifest.tsv", "--video-root", vset["compressed"]]
    if stage in images:
        options += ["--image-root", images[stage]]
    return options


def trainer_rate(config: dict, stage: int, steps: int, work: Path) -> tuple[float, dict]:
    settings = stage_section(config["train"], stage)
    settings.update({f"stage{stage}": {**settings[f"stage{stage}"], "max_steps": steps}, "save_steps": 10**6})
    out = work / f"stage{stage}"
    cmd = [
        sys.executable, "-m", "etchat", "train", "--stage", str(stage),
        "--train-settings", json.dumps(settings), "--model-settings", json.dumps(config["model"]),
        "--init", STARTS[stage], "--annotations", f"results/annotations/stage{stage}.json",
        *stage_options(config, stage), "--work-dir", str(out / "work"), "--out", str(out / "model"),
        "--metrics", str(out / "metrics.tsv"), "--skipped", str(out / "skipped.tsv"),
        "--summary", str(out / "summary.json"), "--heldout", str(out / "heldout.json"),
    ]  # fmt: skip
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=Path.cwd(), capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"etchat train --stage {stage} failed:\n{proc.stderr[-3000:]}")
    metrics = pd.read_csv(out / "metrics.tsv", sep="\t")
    rate = statistics.median(metrics["samples_per_s"].iloc[1:])
    summary = json.loads((out / "summary.json").read_text())
    return rate, {"wall_s": wall, "global_batch": summary["batch"]["global_batch"]}


def plain_rate(config: dict, stage: int, steps: int) -> float:
    """The same model, trainable set and batches in a bare loop: forward, backward, AdamW step."""
    from etchat.data.collate import ModalityGroupedSampler, TrainingCollator
    from etchat.data.dataset import DataSettings, MediaSource, prepare_dataset
    from etchat.io import read_json
    from etchat.train.run import TrainSettings, add_lora, hyper_for, load_start
    from etchat.train.stages import set_trainable, stage_spec

    spec, hyper = stage_spec(stage), hyper_for(config["train"], stage)
    settings = TrainSettings.from_config(config["train"])
    model, tokenizer = load_start(stage, STARTS[stage], config["model"], settings, spec.matching)
    data = DataSettings(
        template=spec.template, use_matching=spec.matching, max_video_len=hyper.max_video_len,
        min_video_len=hyper.min_video_len, max_num_words=hyper.max_num_words,
        image_pad_to_square=hyper.image_pad_to_square, vision_processor=model.config.vision_processor,
        cache_frames=True,
    )  # fmt: skip
    opts = stage_options(config, stage)
    image_root = opts[opts.index("--image-root") + 1] if "--image-root" in opts else None
    media = MediaSource.from_manifest(opts[1], opts[3], image_root)
    dataset = prepare_dataset(read_json(f"results/annotations/stage{stage}.json"), data, media, tokenizer).dataset
    if spec.lora:
        model = add_lora(model, settings)
    set_trainable(model, spec, vision_trainable=bool(model.config.vision_trainable))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    collate = TrainingCollator(tokenizer.pad_token_id, tokenizer.bos_token_id, spec.matching)
    batch_size = hyper.global_batch
    # Batches drawn as the trainer draws them: shuffled, or grouped by modality (stage 2).
    if hyper.group_by_modality:
        order = list(ModalityGroupedSampler(dataset.modalities, dataset.lengths, batch_size, 1, 0))
    else:
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    order = order * (1 + (steps + 1) * batch_size // len(order))
    model.train()
    times = []
    for step in range(steps + 1):
        chunk = order[step * batch_size : (step + 1) * batch_size]
        batch = collate([dataset[i] for i in chunk])  # frames cached after the first pass, as in the trainer
        batch.pop("skipped"), batch.pop("num_samples")
        start = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step:  # the first step pays for decoding and allocation
            times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--workdir", type=Path, default=REPO, help="directory of a finished demo run")
    args = parser.parse_args()
    os.chdir(args.workdir)
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    config = load_config([args.workdir / "config.yaml"])
    config["train"]["threads"] = args.threads
    missing = [
        p for s in args.stages for p in (STARTS[s], f"results/annotations/stage{s}.json") if not Path(p).exists()
    ]
    if missing:
        raise SystemExit(f"run the demo DAG first (snakemake --cores all); missing: {missing}")
    print(f"demo training, {args.steps} steps per stage, {args.threads} thread(s), samples/s (median step)")
    with tempfile.TemporaryDirectory() as tmp:
        for stage in args.stages:
            rate, info = trainer_rate(config, stage, args.steps, Path(tmp))
            plain = plain_rate(config, stage, args.steps)
            print(
                f"stage {stage}: etchat train (Trainer + DeepSpeed ZeRO-2, CPU) {rate:.1f} samples/s, plain loop "
                f"{plain:.1f} samples/s, ratio {rate / plain:.2f} (global batch {info['global_batch']}; process "
                f"wall {info['wall_s']:.0f} s for {args.steps} steps incl. start-up)"
            )


if __name__ == "__main__":
    main()
