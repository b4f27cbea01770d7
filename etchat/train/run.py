"""`etchat train --stage N`: one E.T. Chat training stage with the HF Trainer and DeepSpeed ZeRO-2 (spec §4).

Run under `torchrun --standalone --nproc_per_node P -m etchat train ...` (the Snakemake rule does); started
without torchrun it runs as a single worker. On a machine without GPUs DeepSpeed uses its CPU accelerator and gloo,
so the demo exercises the same code path as a GPU run.

Steps: load the stage's start (the previous stage's checkpoint directory, the demo base model, or the original base
weights for stage 1), check every record (skipped ones go to a TSV; too many stop the run), add a fresh LoRA
(stages 2-3), freeze all but the stage's trainable set, train (resuming from the last complete checkpoint of the
working directory when its fingerprint matches), merge LoRA, and write the full checkpoint directory atomically,
with the per-step metrics, the skipped records and a summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from etchat.config import validate_config
from etchat.data.dataset import (
    DataSettings,
    MediaSource,
    check_skip_rate,
    prepare_dataset,
    read_skipped,
    write_skipped,
)
from etchat.data.records import read_records
from etchat.errors import ConfigError, DataError
from etchat.io import atomic_dir, read_json, write_json_atomic
from etchat.train.stages import PAPER_HYPER, StageHyper, plan_batch, set_trainable, stage_spec

log = logging.getLogger(__name__)

DEFAULT_DEEPSPEED = Path(__file__).with_name("zero2.json")
# LoRA targets per backbone (spec §1.4 "attention" targets of the original's lora_type).
LORA_TARGETS = {"phi3": ["qkv_proj", "o_proj"], "llama": ["q_proj", "k_proj", "v_proj", "o_proj"]}
LORA_TARGETS["qwen2"] = LORA_TARGETS["llama"]
PRECISIONS = ("fp32", "fp16", "bf16")
# train: keys that do not change what a checkpoint means (a resumed run may use other values).
RESUME_NEUTRAL_KEYS = (
    "threads",
    "dataloader_workers",
    "cache_frames",
    "logging_steps",
    "save_steps",
    "save_total_limit",
)


@dataclass(frozen=True)
class TrainSettings:
    """The `train:` config section (see config.yaml for every key)."""

    stages: list[int]
    gpus: int = 0
    cpu_processes: int = 1
    threads: int = 1
    precision: str = "fp16"
    seed: int = 42
    deepspeed: str | None = None
    max_grad_norm: float = 0.0
    gradient_checkpointing: bool = True
    attn_implementation: str = "eager"
    model_max_length: int = 2048
    fps: float = 1.0
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    lora_r: int = 128
    lora_alpha: int = 256
    lora_dropout: float = 0.05
    logging_steps: int = 1
    save_steps: int = 500
    save_total_limit: int = 1
    save_dtype: str = "float16"
    dataloader_workers: int = 4
    cache_frames: bool = False
    max_skip_fraction: float = 0.01
    label_masks: str = "original"

    @classmethod
    def from_config(cls, train: dict[str, Any]) -> TrainSettings:
        flat = {k: v for k, v in train.items() if not k.startswith("stage") or k == "stages"}
        flat.pop("start_checkpoint", None)
        lora = flat.pop("lora", {}) or {}
        flat.update({f"lora_{k}": v for k, v in lora.items()})
        return cls(**flat)


def hyper_for(train: dict[str, Any], stage: int) -> StageHyper:
    values = train.get(f"stage{stage}")
    if values is None:
        return PAPER_HYPER[stage]
    return StageHyper.from_config(values)


# ---------------------------------------------------------------------------------------------- distributed set-up
def ensure_distributed_env() -> None:
    """Single-worker defaults when started without torchrun (DeepSpeed would otherwise try MPI discovery)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(
        RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", LOCAL_WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )


def disable_deepspeed_shm_op() -> None:
    """DeepSpeed's CPU accelerator JIT-compiles a shared-memory allreduce at its first initialize (~40 s, needs a
    compiler); marking it incompatible makes it use plain gloo collectives (stack.md)."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def deepspeed_config(path: str | Path | None, max_grad_norm: float) -> dict[str, Any]:
    """The ZeRO-2 config of the repo, with `gradient_clipping` always explicit (DeepSpeed >= 0.19 clips at 1.0 when
    the key is absent; the original ran unclipped)."""
    path = Path(path) if path else DEFAULT_DEEPSPEED
    if not path.is_file():
        raise ConfigError(
            f"config key train.deepspeed: {path} not found (relative to {Path.cwd()}); null uses {DEFAULT_DEEPSPEED}"
        )
    config = read_json(path)
    config["gradient_clipping"] = float(max_grad_norm)
    return config


# ---------------------------------------------------------------------------------------------- model loading
def load_start(
    stage: int,
    init: str | None,
    model_settings: dict[str, Any],
    settings: TrainSettings,
    use_matching: bool,
    dtype: torch.dtype = torch.float32,
) -> tuple[Any, Any]:
    """The model and tokenizer a stage starts from, with the stage's config fields.

    `dtype`: float32 for training (DeepSpeed keeps fp32 masters, as the original, which loads in fp32 and lets
    DeepSpeed cast); bench/bench_fullsize.py loads bf16 to fit the full-size model into a CPU machine's memory."""
    from etchat.model import add_match_token, build_from_base, load_checkpoint, phi3_mini_config
    from etchat.model.presets import stage_fields
    from etchat.model.tokenizer import check_tokenizer, load_tokenizer

    attn = settings.attn_implementation
    if stage == 1 and model_settings.get("init") == "base":
        llm = Path(model_settings["llm_dir"])
        config = phi3_mini_config(stage=1, model_name_or_path=str(llm))
        model = build_from_base(
            llm,
            config,
            model_settings["eva_vit"],
            model_settings["qformer"],
            dtype=dtype,
            attn_implementation=attn,
        )
        tokenizer = load_tokenizer(llm)
    else:
        if init is None:
            raise ConfigError(f"stage {stage} needs --init, the checkpoint directory it starts from")
        overrides = stage_fields(stage)
        allow_missing: tuple[str, ...] = ()
        tokenizer = None
        if use_matching:
            # Stage 3 adds <vid> (Phi-3's tokenizer has none), so the config takes its id before the weights load.
            tokenizer = load_tokenizer(init)
            overrides["match_token_id"] = add_match_token(tokenizer)
            check_tokenizer(tokenizer, init, match_token=True)
            allow_missing = ("frm_head.", "vid_head.")
        model, loaded = load_checkpoint(
            init,
            dtype=dtype,
            attn_implementation=attn,
            config_overrides=overrides,
            allow_missing=allow_missing,
            load_tokenizer=tokenizer is None,
        )
        tokenizer = tokenizer or loaded
        if tokenizer is None:
            raise DataError(f"{init}: no tokenizer files in the checkpoint directory")
        if use_matching:
            add_match_token(tokenizer, model)  # resizes the embeddings when the tokenizer outgrew them
    tokenizer.model_max_length = settings.model_max_length
    model.model.set_visual_attn_implementation(attn)
    return model, tokenizer


def add_lora(model: Any, settings: TrainSettings) -> Any:
    from peft import LoraConfig, get_peft_model

    targets = LORA_TARGETS.get(model.config.language_model or "phi3", LORA_TARGETS["phi3"])
    config = LoraConfig(
        task_type="CAUSAL_LM",
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        bias="none",
        target_modules=targets,
    )
    return get_peft_model(model, config)


def save_final(model: Any, tokenizer: Any, out: Path, dtype: str, state: Any = None) -> None:
    """Write the full checkpoint to a temporary directory beside `out`, then rename it into place. With `state` (the
    Trainer's), its `trainer_state.json` (the loss log) goes with it, as in the released stage-3 directory."""
    from etchat.model import save_checkpoint

    with atomic_dir(out) as tmp:
        save_checkpoint(model, tmp, tokenizer, dtype=getattr(torch, dtype))
        if state is not None:
            state.save_to_json(str(tmp / "trainer_state.json"))


# ---------------------------------------------------------------------------------------------- the command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stage", type=int, required=True, choices=(1, 2, 3))
    parser.add_argument("--train-settings", required=True, help="the train: config section, JSON")
    parser.add_argument("--model-settings", default="{}", help="the model: config section, JSON")
    parser.add_argument("--init", help="checkpoint directory the stage starts from (not for stage 1 from base)")
    parser.add_argument("--annotations", required=True, help="checked annotation file (results/annotations/...)")
    parser.add_argument("--manifest", help="compression manifest of the videos (results/compress/<set>/manifest.tsv)")
    parser.add_argument("--video-root", help="where the (compressed) videos are")
    parser.add_argument("--image-root", help="where the images are")
    parser.add_argument("--work-dir", required=True, help="checkpoints and live logs (not a Snakemake output)")
    parser.add_argument("--out", required=True, help="the final checkpoint directory")
    parser.add_argument("--metrics", required=True, help="TSV: one row per logged step")
    parser.add_argument("--skipped", required=True, help="TSV: records left out and why")
    parser.add_argument("--summary", required=True, help="JSON summary of the stage")
    parser.add_argument("--heldout", required=True, help="JSON: records held out of training (evaluation split)")


def run(args: argparse.Namespace) -> int:
    from etchat.train.workdir import WorkDir, fingerprint

    train_cfg = json.loads(args.train_settings)
    model_cfg = json.loads(args.model_settings)
    validate_config(train_cfg, section="train")
    if model_cfg:
        validate_config(model_cfg, section="model")
    settings = TrainSettings.from_config(train_cfg)
    spec = stage_spec(args.stage)
    hyper = hyper_for(train_cfg, args.stage)
    if settings.precision not in PRECISIONS:
        raise ConfigError(f"config key train.precision = {settings.precision!r}; allowed: {list(PRECISIONS)}")

    # Accelerate sets torch's threads to the core count on CPU unless OMP_NUM_THREADS is set; on a shared machine
    # oversubscribed threads run several times slower.
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(settings.threads)
    torch.set_num_threads(settings.threads)
    ensure_distributed_env()
    disable_deepspeed_shm_op()
    import deepspeed

    from etchat.train.trainer import barrier

    deepspeed.init_distributed()  # now, so that rank 0 can prepare the working directory behind a barrier
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    plan = plan_batch(hyper.global_batch, hyper.per_device_batch, world, args.stage)
    use_cpu = not torch.cuda.is_available()
    if use_cpu and settings.precision == "fp16":
        raise ConfigError("config key train.precision = 'fp16' needs GPUs; use fp32 (or bf16) on CPU")
    log.info(
        "stage %d: %s, %d worker(s) on %s, global batch %d = %d per device x %d accumulation x %d",
        args.stage,
        spec.tuning,
        world,
        "CPU (DeepSpeed CPU accelerator, gloo)" if use_cpu else "GPU",
        plan.global_batch,
        plan.per_device,
        plan.grad_accum,
        world,
    )

    from transformers import TrainingArguments, set_seed

    set_seed(settings.seed)
    model, tokenizer = load_start(args.stage, args.init, model_cfg, settings, spec.matching)

    # -- working directory: checkpoints of these settings and inputs, or a fresh start
    workdir = WorkDir(args.work_dir)
    # What the checkpoints depend on; speed and bookkeeping settings may change between a kill and the re-run.
    semantic = {k: v for k, v in train_cfg.items() if k not in RESUME_NEUTRAL_KEYS}
    digest = fingerprint(
        {"stage": args.stage, "train": semantic, "model": model_cfg, "world": world},
        [args.init, args.annotations, args.manifest],
    )
    if rank == 0 and workdir.claim(digest, {"stage": args.stage, "init": args.init, "annotations": args.annotations}):
        workdir.remove_incomplete()
    barrier()
    resume = workdir.latest()
    if resume is not None:
        log.info("resuming from %s", resume)

    # -- data
    records = read_records(args.annotations, check_keys=False)  # the checked copy: `etchat validate` wrote it
    data_settings = DataSettings(
        template=spec.template,
        use_matching=spec.matching,
        fps=settings.fps,
        min_video_len=hyper.min_video_len,
        max_video_len=hyper.max_video_len,
        min_num_words=hyper.min_num_words,
        max_num_words=hyper.max_num_words,
        image_pad_to_square=hyper.image_pad_to_square,
        model_max_length=settings.model_max_length,
        vision_processor=model.config.vision_processor,
        seed=settings.seed,
        cache_frames=settings.cache_frames,
        label_masks=settings.label_masks,
    )
    media = MediaSource.from_manifest(args.manifest, args.video_root, args.image_root)
    prepared = prepare_dataset(records, data_settings, media, tokenizer, hyper.holdout_fraction)
    # The TSV named in errors lives in the working directory: Snakemake deletes a failed job's declared outputs.
    skipped_path = workdir.root / "skipped.tsv"
    if rank == 0:
        write_skipped(prepared.skipped, skipped_path)
    check_skip_rate(prepared.skipped, prepared.total, settings.max_skip_fraction, skipped_path, f"stage {args.stage}")
    if not len(prepared.dataset):
        raise DataError(f"{args.annotations}: no usable record (reasons in {skipped_path})")

    # -- trainable set
    if spec.lora:
        model = add_lora(model, settings)
    counts = set_trainable(model, spec, vision_trainable=bool(model.config.vision_trainable))
    log.info("trainable parameters: %d of %d (LoRA %d)", counts["trainable"], counts["total"], counts["lora"])

    from etchat.data.collate import TrainingCollator
    from etchat.train.trainer import CompleteCheckpointCallback, ETChatTrainer, MetricsCallback

    ds_config = deepspeed_config(settings.deepspeed, settings.max_grad_norm)
    training_args = TrainingArguments(
        output_dir=str(workdir.checkpoints),
        per_device_train_batch_size=plan.per_device,
        gradient_accumulation_steps=plan.grad_accum,
        learning_rate=hyper.learning_rate,
        num_train_epochs=hyper.epochs,
        max_steps=hyper.max_steps if hyper.max_steps else -1,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_ratio,
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        optim="adamw_torch",
        logging_steps=settings.logging_steps,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=None,  # rotated once a checkpoint is marked complete (CompleteCheckpointCallback)
        seed=settings.seed,
        fp16=settings.precision == "fp16",
        bf16=settings.precision == "bf16",
        use_cpu=use_cpu,
        deepspeed=ds_config,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=settings.dataloader_workers,
        activation_checkpointing=settings.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if settings.gradient_checkpointing else None,
        disable_tqdm=True,
    )
    trainer = ETChatTrainer(
        model=model,
        args=training_args,
        train_dataset=prepared.dataset,
        data_collator=TrainingCollator(tokenizer.pad_token_id, tokenizer.bos_token_id, spec.matching),
        processing_class=tokenizer,
        lora_learning_rate=hyper.lora_learning_rate if spec.lora else None,
        group_by_modality=hyper.group_by_modality,
        global_batch=plan.global_batch,
        workdir=workdir,
        callbacks=[
            MetricsCallback(workdir, args.stage),
            CompleteCheckpointCallback(workdir, settings.save_total_limit),
        ],
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # MetricsCallback logs one line per step instead of raw dicts
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    elapsed = time.perf_counter() - started

    # -- final checkpoint (LoRA merged), logs, summary
    final = trainer.model
    if spec.lora:
        final = final.merge_and_unload()
    runtime_skips = [row for path in workdir.runtime_skip_files() for row in read_skipped(path)]
    if rank == 0:
        from etchat.train.trainer import metrics_rows, write_metrics

        save_final(final, tokenizer, Path(args.out), settings.save_dtype, trainer.state)
        rows = metrics_rows(trainer.state.log_history)
        write_metrics(rows, args.metrics)
        all_skipped = prepared.skipped + runtime_skips
        write_skipped(all_skipped, skipped_path)
        write_skipped(all_skipped, args.skipped)
        heldout = [records[i] for i in prepared.heldout]
        write_json_atomic(args.heldout, heldout)
        steps = trainer.state.global_step
        summary = {
            "stage": args.stage,
            "tuning": spec.tuning,
            "template": spec.template,
            "workers": world,
            "device": "cpu" if use_cpu else "cuda",
            "precision": settings.precision,
            "batch": asdict(plan),
            "hyper": asdict(hyper),
            "steps": steps,
            "samples": steps * plan.global_batch,
            "epochs": trainer.state.epoch,
            "resumed_from": str(resume) if resume else None,
            "train_seconds_this_run": round(elapsed, 1),
            "samples_per_second_this_run": round(result.metrics.get("train_samples_per_second", 0.0), 2),
            "parameters": counts,
            "records": {
                "total": len(records),
                "used": len(prepared.dataset),
                "heldout": len(prepared.heldout),
                "filtered": prepared.num_filtered,
                "skipped": prepared.num_skipped + len({r.index for r in runtime_skips if r.kind == "skipped"}),
                "labels_checked_at_start": prepared.labels_checked,
                "label_mask_mismatches": prepared.label_mismatches,
            },
            "loss_first": rows[0]["loss"] if rows else None,
            "loss_last": rows[-1]["loss"] if rows else None,
        }
        write_json_atomic(args.summary, summary)
        log.info("stage %d done: %d steps in %.1f s; checkpoint %s", args.stage, steps, elapsed, args.out)
    barrier()
    check_skip_rate(
        prepared.skipped + runtime_skips,
        prepared.total,
        settings.max_skip_fraction,
        skipped_path,
        f"stage {args.stage}",
    )
    return 0
