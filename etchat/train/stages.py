"""What each training stage trains (spec §4.2-4.3), and the batch arithmetic.

The per-stage facts of the paper (which parameters are trainable, LoRA) are constants here, the template and
matching come from what the stage writes into the model config (`etchat.model.presets.STAGE_FIELDS`); the
hyper-parameters (learning rates, global batch, steps, filters) are config values
(`train.stage1` ... `train.stage3`), whose faithful values are the defaults of `StageHyper`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from torch import nn

from etchat.errors import ConfigError
from etchat.model.presets import stage_fields


@dataclass(frozen=True)
class StageSpec:
    stage: int
    template: str  # conversation template (spec §3.4)
    tuning: str  # the original's --tuning_mode
    lora: bool  # a fresh LoRA on the LLM, merged at the end of the stage
    matching: bool  # <vid> matching heads, src/tgt, bidirectional frame attention


def _spec(stage: int, tuning: str, lora: bool) -> StageSpec:
    """The template and matching come from what the stage writes into the model config (one place for both)."""
    written = stage_fields(stage)
    return StageSpec(stage, written["conv_type"], tuning, lora=lora, matching=written["use_matching"])


STAGES: dict[int, StageSpec] = {
    1: _spec(1, "projector", lora=False),
    2: _spec(2, "qformer", lora=True),
    3: _spec(3, "attention", lora=True),
}


def stage_spec(stage: int) -> StageSpec:
    if stage not in STAGES:
        raise ConfigError(f"stage must be 1, 2 or 3, got {stage}")
    return STAGES[stage]


def is_trainable(name: str, spec: StageSpec, vision_trainable: bool = False) -> bool:
    """The original's substring rules on parameter names (train.py L424-484), LoRA weights aside.

    - projector (stage 1): `qformer_proj`, `qformer_{q,k,v}_proj` (aggregator + projector);
    - qformer (stage 2): everything with `qformer` in its name (Q-Former BERT, queries, ln_vision, aggregator, proj);
    - attention (stage 3): Q-Former self- and cross-attention blocks, queries, ln_vision, aggregator, projector;
    - with matching (stage 3): also the whole `embed_tokens`, `lm_head`, `frm_head` and `vid_head`.
    The vision tower is never trained, except a tiny demo tower that starts from random weights (`vision_trainable`).
    """
    if "lora_" in name:
        return True
    if "vision_tower" in name:
        return vision_trainable
    if spec.tuning == "projector":
        keep = ("qformer" in name and "proj" in name) or "mm_projector" in name
    elif spec.tuning == "qformer":
        keep = "qformer" in name
    elif spec.tuning == "attention":
        keep = "qformer" in name and ("attention" in name or "qformer_bert" not in name)
    else:  # pragma: no cover - STAGES only uses the three modes above
        raise ValueError(spec.tuning)
    if spec.matching and any(key in name for key in ("embed_tokens", "lm_head", "frm_head", "vid_head")):
        keep = True
    return keep


def set_trainable(model: nn.Module, spec: StageSpec, vision_trainable: bool = False) -> dict[str, int]:
    """Freeze everything, then unfreeze the stage's set; returns parameter counts (trainable, lora, total)."""
    counts = {"trainable": 0, "lora": 0, "total": 0}
    for name, param in model.named_parameters():
        param.requires_grad_(is_trainable(name, spec, vision_trainable))
        counts["total"] += param.numel()
        if param.requires_grad:
            counts["trainable"] += param.numel()
            if "lora_" in name:
                counts["lora"] += param.numel()
    return counts


def trainable_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]


@dataclass(frozen=True)
class BatchPlan:
    """How a global batch is split: `per_device * grad_accum * world_size == global_batch`."""

    global_batch: int
    per_device: int
    grad_accum: int
    world_size: int


def plan_batch(global_batch: int, per_device: int, world_size: int, stage: int = 0) -> BatchPlan:
    """Keep the paper's global batch on any number of workers (MODEL.md: change GA, keep the global batch).

    The per-device batch is the configured one, lowered when the workers would otherwise exceed the global batch
    (e.g. 256 on 128 GPUs with 4 each); the accumulation makes up the rest. It must divide exactly.
    """
    where = f"train.stage{stage}" if stage else "train"
    if global_batch < 1 or per_device < 1 or world_size < 1:
        raise ConfigError(f"{where}: global_batch, per_device_batch and the worker count must be >= 1")
    if global_batch % world_size:
        raise ConfigError(
            f"{where}.global_batch = {global_batch} is not divisible by the {world_size} workers; "
            "choose a worker count that divides it"
        )
    per_device = min(per_device, global_batch // world_size)
    if global_batch % (per_device * world_size):
        raise ConfigError(
            f"{where}: global_batch {global_batch} is not a multiple of per_device_batch {per_device} x "
            f"{world_size} workers; change {where}.per_device_batch"
        )
    return BatchPlan(global_batch, per_device, global_batch // (per_device * world_size), world_size)


@dataclass(frozen=True)
class StageHyper:
    """One stage's hyper-parameters (config `train.stageN`); defaults are the paper's stage 3 (spec §4.2)."""

    learning_rate: float = 2e-5
    lora_learning_rate: float | None = 5e-5
    global_batch: int = 32
    per_device_batch: int = 1
    epochs: float = 1
    max_steps: int | None = None  # a step budget instead of `epochs` (the demo)
    min_video_len: float = -1
    max_video_len: float = -1
    min_num_words: int = -1
    max_num_words: int = -1
    image_pad_to_square: bool = False
    group_by_modality: bool = False
    holdout_fraction: float = 0.0  # share of videos kept out of training to measure grounding (the demo)

    @classmethod
    def from_config(cls, values: dict[str, Any]) -> StageHyper:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown per-stage training key(s) {unknown}; allowed: {sorted(known)}")
        return cls(**values)


# The paper's values (spec §4.2): stage 1 projector on LCS-558K+WebVid, stage 2 Q-Former + LoRA on the LLaVA/VCG mix,
# stage 3 attention + LoRA + heads on E.T. Instruct.
PAPER_HYPER: dict[int, StageHyper] = {
    1: StageHyper(learning_rate=1e-3, lora_learning_rate=None, global_batch=256, per_device_batch=4),
    2: StageHyper(
        learning_rate=2e-5,
        lora_learning_rate=2e-4,
        global_batch=128,
        per_device_batch=1,
        max_video_len=350,
        image_pad_to_square=True,
        group_by_modality=True,
    ),
    3: StageHyper(
        learning_rate=2e-5,
        lora_learning_rate=5e-5,
        global_batch=32,
        per_device_batch=1,
        min_video_len=5,
        max_video_len=350,
        max_num_words=200,
    ),
}
