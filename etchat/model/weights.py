"""Loading and saving weights: the original base weights, and checkpoint directories like the released ones.

Base weights (stage 1, spec §4.4):
- `eva_vit_g.pth` (LAVIS EVA-CLIP g/14): a flat state dict with 40 blocks; the tower keeps the first 39.
- `instruct_blip_vicuna7b_trimmed.pth`: `{"model": {...}}` with `Qformer.*` (the Q-Former BERT), `ln_vision.*`,
  `query_tokens`, plus modules E.T. Chat does not use (e.g. `llm_proj.*`).
- a Phi-3 HF directory, loaded with `from_pretrained`.
Files are read with `torch.load(weights_only=True)` or as safetensors; every key is checked.

Checkpoint directories (`save_checkpoint`/`load_checkpoint`) are HF `save_pretrained` directories with the
released key names: `config.json` (model_type `etchat_phi3`), `model*.safetensors` (+ index), generation config and
tokenizer files. They load with `ETChatPhi3ForCausalLM.from_pretrained` or `AutoModelForCausalLM.from_pretrained`.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from etchat.errors import UserFacingError

from .config import ETChatFieldsConfig
from .modeling import MODEL_CLASSES

logger = logging.getLogger(__name__)


class CheckpointError(UserFacingError, ValueError):
    """A weight file or checkpoint directory does not match the model (the message names the file)."""


@dataclass
class LoadReport:
    """What a loader did with the keys of a file."""

    path: Path
    loaded: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # present in the file, deliberately unused


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from `.safetensors` or a torch pickle read with `weights_only=True` (no code execution)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weight file not found: {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path), device="cpu")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: cannot be read with torch.load(weights_only=True): {err}") from err
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{path}: expected a state dict, got {type(data).__name__}")
    return dict(data)


def _copy_into(
    module: torch.nn.Module,
    weights: Mapping[str, torch.Tensor],
    path: Path,
    what: str,
    optional: Sequence[str] = (),
) -> list[str]:
    """Copy `weights` into `module`'s state exactly: every key of the module must be given (except `optional`)."""
    own = module.state_dict()
    missing = sorted(k for k in own if k not in weights and k not in optional)
    unexpected = sorted(k for k in weights if k not in own)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: {what} does not match the model: missing {missing[:8]}{'...' if len(missing) > 8 else ''} "
            f"({len(missing)}), unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''} ({len(unexpected)})"
        )
    bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in weights.items() if v.shape != own[k].shape]
    if bad:
        raise CheckpointError(f"{path}: {what} has wrong shapes: {bad[:8]}")
    with torch.no_grad():
        for key, value in weights.items():
            own[key].copy_(value.to(own[key].dtype))
    return sorted(weights)


def load_eva_weights(model: Any, path: str | Path) -> LoadReport:
    """EVA-ViT-g weights (`eva_vit_g.pth`) into `model.model.vision_tower.vision_tower`.

    Blocks beyond the truncation depth are the only keys allowed to remain unused (the original loads with
    `strict=False` and silently drops block 40); anything else missing or unexpected is an error.
    """
    path = Path(path)
    state = read_state_dict(path)
    tower = _backbone(model).vision_tower.vision_tower
    depth = len(tower.blocks)
    ignored = sorted(k for k in state if (m := re.match(r"blocks\.(\d+)\.", k)) and int(m.group(1)) >= depth)
    used = {k: v for k, v in state.items() if k not in set(ignored)}
    if "pos_embed" in used and used["pos_embed"].shape != tower.pos_embed.shape:
        raise CheckpointError(
            f"{path}: pos_embed {tuple(used['pos_embed'].shape)} does not fit the tower "
            f"{tuple(tower.pos_embed.shape)} (image size / patch size differ; interpolation is not supported)"
        )
    loaded = _copy_into(tower, used, path, "the EVA vision tower")
    logger.info("EVA weights from %s: %d tensors, %d unused (blocks >= %d)", path, len(loaded), len(ignored), depth)
    return LoadReport(path, loaded, ignored)


def load_qformer_weights(model: Any, path: str | Path) -> LoadReport:
    """InstructBLIP Q-Former weights: `Qformer.*` -> `qformer_bert`, `ln_vision.*` -> `qformer_ln`,
    `query_tokens` -> `qformer_query`. Other top-level modules of the file (LLM projection, ...) are reported as
    ignored; inside the three used groups every key must match (the position_ids buffer may be absent)."""
    path = Path(path)
    state = read_state_dict(path)
    if "model" in state and isinstance(state["model"], Mapping):
        state = dict(state["model"])
    backbone = _backbone(model)
    groups = {"Qformer.": {}, "ln_vision.": {}}
    ignored: list[str] = []
    query_tokens = None
    for key, value in state.items():
        if key == "query_tokens":
            query_tokens = value
            continue
        for prefix, bucket in groups.items():
            if key.startswith(prefix):
                bucket[key[len(prefix) :]] = value
                break
        else:
            ignored.append(key)
    if query_tokens is None or not groups["Qformer."] or not groups["ln_vision."]:
        raise CheckpointError(f"{path}: expected 'Qformer.*', 'ln_vision.*' and 'query_tokens' (InstructBLIP format)")
    loaded = [
        *(
            "Qformer." + k
            for k in _copy_into(
                backbone.qformer_bert, groups["Qformer."], path, "Qformer.*", optional=("bert.embeddings.position_ids",)
            )
        ),
        *("ln_vision." + k for k in _copy_into(backbone.qformer_ln, groups["ln_vision."], path, "ln_vision.*")),
    ]
    if query_tokens.shape != backbone.qformer_query.shape:
        raise CheckpointError(
            f"{path}: query_tokens {tuple(query_tokens.shape)} vs qformer_query {tuple(backbone.qformer_query.shape)}"
        )
    with torch.no_grad():
        backbone.qformer_query.copy_(query_tokens.to(backbone.qformer_query.dtype))
    loaded.append("query_tokens")
    logger.info(
        "Q-Former weights from %s: %d tensors; ignored %d (%s)",
        path,
        len(loaded),
        len(ignored),
        sorted({k.split(".")[0] for k in ignored}),
    )
    return LoadReport(path, sorted(loaded), sorted(ignored))


def load_base_weights(
    model: Any, eva_path: str | Path | None = None, qformer_path: str | Path | None = None
) -> list[LoadReport]:
    """Load the original base weights of the vision tower and the Q-Former (stage 1's `load_pretrained_weights`)."""
    reports = []
    if eva_path is not None:
        reports.append(load_eva_weights(model, eva_path))
    if qformer_path is not None:
        reports.append(load_qformer_weights(model, qformer_path))
    return reports


def _backbone(model: Any) -> Any:
    return model.model if hasattr(model, "lm_head") else model


def _etchat_prefixes(config: ETChatFieldsConfig) -> tuple[str, ...]:
    prefixes = ["model.vision_tower.", "model.qformer_"]
    if config.use_matching:
        prefixes += ["frm_head.", "vid_head."]
    return tuple(prefixes)


def build_from_base(
    llm_dir: str | Path,
    config: ETChatFieldsConfig,
    eva_path: str | Path | None = None,
    qformer_path: str | Path | None = None,
    dtype: torch.dtype | None = None,
    attn_implementation: str = "eager",
) -> Any:
    """Stage-1 start: the LLM from an HF directory (e.g. Phi-3-mini-4k-instruct) with `config`'s E.T. Chat fields,
    then EVA and the Q-Former from their original files. Only E.T. Chat's own modules may be missing from the LLM
    directory; the aggregator/projector (and heads) keep their random init."""
    llm_dir = Path(llm_dir)
    model = _from_pretrained_checked(llm_dir, config, dtype, attn_implementation, _etchat_prefixes(config))
    load_base_weights(model, eva_path, qformer_path)
    if eva_path is not None or qformer_path is not None:
        model.config.pretrain_vision_tower = str(eva_path) if eva_path is not None else None
        model.config.pretrain_qformer = str(qformer_path) if qformer_path is not None else None
        model.config.load_base_models = True
    model.config.model_name_or_path = str(llm_dir)
    return model


def _from_pretrained_checked(
    path: Path, config: ETChatFieldsConfig, dtype: torch.dtype | None, attn: str, allow_missing: Sequence[str]
) -> Any:
    """`from_pretrained` of `config`'s model class; any key missing (outside `allow_missing`), unexpected or
    mismatched raises, where HF would only warn."""
    model, info = MODEL_CLASSES[config.model_type].from_pretrained(
        path, config=config, dtype=dtype, attn_implementation=attn, output_loading_info=True
    )
    missing = [k for k in info["missing_keys"] if not k.startswith(tuple(allow_missing))]
    unexpected, mismatched = info["unexpected_keys"], info.get("mismatched_keys", [])
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"{path}: checkpoint does not match the model: missing {sorted(missing)[:8]} ({len(missing)}), "
            f"unexpected {sorted(unexpected)[:8]} ({len(unexpected)}), mismatched {list(mismatched)[:4]}"
        )
    return model


def load_checkpoint(
    path: str | Path,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    attn_implementation: str = "eager",
    config_overrides: Mapping[str, Any] | None = None,
    allow_missing: Sequence[str] = (),
    load_tokenizer: bool = True,
) -> tuple[Any, Any | None]:
    """Load an E.T. Chat checkpoint directory (released or written by `save_checkpoint`) and its tokenizer.

    Every key is checked: missing, unexpected or mismatched keys raise, except missing keys under the prefixes in
    `allow_missing` (e.g. `("frm_head.", "vid_head.")` when stage 3 starts from a stage-2 directory with
    `config_overrides={"use_matching": True, ...}`); those keep their fresh initialisation.
    `attn_implementation`: "eager" (faithful, fp32 softmax) or "sdpa".
    """
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{path}: not a checkpoint directory (no config.json)")
    raw = json.loads(config_file.read_text())
    model_type = raw.get("model_type")
    if model_type not in MODEL_CLASSES:
        raise CheckpointError(f"{config_file}: model_type {model_type!r}; expected one of {sorted(MODEL_CLASSES)}")
    config = MODEL_CLASSES[model_type].config_class.from_pretrained(path)
    for key, value in (config_overrides or {}).items():
        setattr(config, key, value)
    config.check_etchat_fields()
    model = _from_pretrained_checked(path, config, dtype, attn_implementation, allow_missing)
    if device is not None:
        model.to(device)
    tokenizer = None
    if load_tokenizer and any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        from .tokenizer import load_tokenizer as load_checked_tokenizer
        from .tokenizer import match_token_id

        tokenizer = load_checked_tokenizer(path, match_token=bool(config.use_matching))
        if config.use_matching and match_token_id(tokenizer) != config.match_token_id:
            raise CheckpointError(
                f"{path}: tokenizer has <vid> = {match_token_id(tokenizer)} but config.match_token_id = "
                f"{config.match_token_id}"
            )
    return model, tokenizer


def save_checkpoint(
    model: Any,
    out_dir: str | Path,
    tokenizer: Any | None = None,
    dtype: torch.dtype | None = torch.float16,
    max_shard_size: str | int = "5GB",
) -> Path:
    """Write a checkpoint directory interchangeable with the released ones.

    `dtype` (default float16, as released) casts floating tensors for saving only, one shard at a time: the model
    passed in is not modified and memory grows by one shard, not by a copy of the model. `load_base_models` is
    written as False (the weights are in the directory), as the original does.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)  # tied: the loader ties it again (safetensors refuses shared tensors)
    write_weight_shards(state, out, dtype, max_shard_size)
    # config.json: the weights are in the directory now (load_base_models False, as the original writes), and their
    # dtype is the saved one.
    config = copy.deepcopy(model.config)
    config.load_base_models = False
    config.architectures = [type(model).__name__]
    config.dtype = dtype if dtype is not None else model.dtype
    config.save_pretrained(out)
    if getattr(model, "generation_config", None) is not None and model.can_generate():
        model.generation_config.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    logger.info("saved E.T. Chat checkpoint to %s", out)
    return out


def weight_shard_plan(state: Mapping[str, torch.Tensor], dtype: torch.dtype | None, max_shard_size: str | int) -> Any:
    """Which tensor goes into which `model*.safetensors` (a huggingface_hub `StateDictSplit`), sized in `dtype`."""
    from huggingface_hub import split_torch_state_dict_into_shards

    plan = {k: torch.empty(v.shape, dtype=_saved_dtype(v, dtype), device="meta") for k, v in state.items()}
    return split_torch_state_dict_into_shards(plan, filename_pattern="model{suffix}.safetensors",
                                              max_shard_size=max_shard_size)  # fmt: skip


def _saved_dtype(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.dtype:
    return dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype


def write_weight_shards(
    state: Mapping[str, torch.Tensor], out: Path, dtype: torch.dtype | None, max_shard_size: str | int
) -> None:
    """`model*.safetensors` (+ `model.safetensors.index.json` when several) in the released checkpoints' layout.

    The shards are cut in the state dict's order, as transformers 4.44 cut the released ones (huggingface_hub's
    splitter on the model's order; transformers 5's save_pretrained orders keys by name first, which puts other
    tensors into each shard), and each shard is cast to `dtype` only while it is written.
    """
    from safetensors.torch import save_file

    split = weight_shard_plan(state, dtype, max_shard_size)
    for stale in [*out.glob("model*.safetensors"), out / "model.safetensors.index.json"]:
        if stale.is_file() and stale.name not in split.filename_to_tensors:
            stale.unlink()
    for filename, keys in split.filename_to_tensors.items():
        shard = {k: state[k].detach().to("cpu", _saved_dtype(state[k], dtype)).contiguous() for k in keys}
        save_file(shard, str(out / filename), metadata={"format": "pt"})
        del shard
    if split.is_sharded:
        index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
