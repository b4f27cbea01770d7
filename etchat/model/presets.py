"""Named configurations: the released Phi-3-mini E.T. Chat at real size, and tiny ones for the demo and tests."""

from __future__ import annotations

from typing import Any

from .config import CONFIG_CLASSES, ETChatFieldsConfig, ETChatPhi3Config
from .constants import PHI3_MATCH_TOKEN_ID

# microsoft/Phi-3-mini-4k-instruct config.json (as merged into the released checkpoints, spec §1.4).
PHI3_MINI_4K: dict[str, Any] = {
    "vocab_size": 32064,
    "hidden_size": 3072,
    "intermediate_size": 8192,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "original_max_position_embeddings": 4096,
    "initializer_range": 0.02,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "bos_token_id": 1,
    "eos_token_id": 32000,
    "pad_token_id": 32000,
    "sliding_window": 2048,  # patched from 2047 by train.py; masks here are full causal anyway
    "attention_bias": False,
    "attention_dropout": 0.0,
    "embd_pdrop": 0.0,
    "resid_pdrop": 0.0,
    "tie_word_embeddings": False,
    "use_cache": True,
}

# What each training stage writes into the config (spec §1.8, §4.2).
STAGE_FIELDS: dict[int, dict[str, Any]] = {
    1: {"conv_type": "plain", "use_matching": False, "bi_attention": False},
    2: {"conv_type": "phi3", "use_matching": False, "bi_attention": False},
    3: {"conv_type": "phi3", "use_matching": True, "bi_attention": True, "match_token_id": PHI3_MATCH_TOKEN_ID},
}


def stage_fields(stage: int) -> dict[str, Any]:
    if stage not in STAGE_FIELDS:
        raise ValueError(f"stage must be 1, 2 or 3, got {stage}")
    return dict(STAGE_FIELDS[stage])


def phi3_mini_config(stage: int = 3, **overrides: Any) -> ETChatPhi3Config:
    """The released ETChat-Phi3-Mini-Stage-{stage} configuration (real sizes)."""
    fields: dict[str, Any] = {
        **PHI3_MINI_4K,
        "language_model": "phi3",
        "vision_tower": "eva_vit",
        "vision_processor": "clip_center_224",
        "vision_output_layer": -2,
        "vision_output_token": "patch",
        "mm_projector": "qformer",
        "alpha": 2.0,
        "use_time_tag": False,
        "load_base_models": False,
        **stage_fields(stage),
        **overrides,
    }
    return ETChatPhi3Config(**fields)


# Tiny sizes. "demo" follows shared/spec/demo_learnability.md (ViT patch 8 at 32 px, width 64, 2 blocks; Q-Former
# 2 layers; Phi-3-shaped LM 4 layers d=128); "test" is smaller still for unit tests.
TINY_PRESETS: dict[str, dict[str, Any]] = {
    "demo": {
        "vision_image_size": 32,
        "vision_patch_size": 8,
        "vision_width": 64,
        "vision_num_heads": 4,
        "vision_mlp_ratio": 4.0,
        "vision_full_depth": 2,
        "vision_output_layer": -1,
        # Demo only: the tiny ViT starts from random weights, so it is trained with the rest (the prototype of
        # demo_learnability.md trained everything from scratch). The real EVA stays frozen.
        "vision_trainable": True,
        "qformer_hidden_size": 64,
        "qformer_num_hidden_layers": 2,
        "qformer_num_attention_heads": 4,
        "qformer_intermediate_size": 128,
        "qformer_num_query_tokens": 4,
        "hidden_size": 128,
        "intermediate_size": 344,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
    },
    "test": {
        "vision_image_size": 16,
        "vision_patch_size": 8,
        "vision_width": 32,
        "vision_num_heads": 2,
        "vision_mlp_ratio": 2.0,
        "vision_full_depth": 2,
        "vision_output_layer": 0,
        "qformer_hidden_size": 32,
        "qformer_num_hidden_layers": 2,
        "qformer_num_attention_heads": 2,
        "qformer_intermediate_size": 64,
        "qformer_num_query_tokens": 4,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
    },
}


def tiny_config(
    name: str = "demo",
    *,
    vocab_size: int,
    match_token_id: int | None = None,
    bos_token_id: int | None = None,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    stage: int = 3,
    language_model: str = "phi3",
    fan_in_heads: bool = False,
    **overrides: Any,
) -> ETChatFieldsConfig:
    """A tiny E.T. Chat config for the demo ("demo") or the tests ("test"), same code path as the real model.

    `vocab_size` and the special ids come from the tokenizer (`build_demo_tokenizer`). `fan_in_heads` initialises
    the matching heads at std 1/sqrt(fan_in) instead of the faithful 0.02 (see demo_learnability.md).
    """
    if name not in TINY_PRESETS:
        raise ValueError(f"unknown tiny config {name!r}; choose from {sorted(TINY_PRESETS)}")
    if language_model not in CONFIG_CLASSES:
        raise ValueError(f"language_model must be one of {sorted(CONFIG_CLASSES)}, got {language_model!r}")
    fields = stage_fields(stage)
    if fields.get("use_matching"):
        if match_token_id is None:
            raise ValueError("a stage-3 config needs match_token_id (the <vid> id of the tokenizer)")
        fields["match_token_id"] = match_token_id
    # Explicit None rather than the backbone's defaults (Phi-3's 32000 does not exist in a tiny vocabulary).
    fields.update(bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id)
    fields.update(
        language_model=language_model,
        vocab_size=vocab_size,
        max_position_embeddings=4096,
        matching_head_init="fan_in" if fan_in_heads else "normal",
        **TINY_PRESETS[name],
    )
    if language_model == "phi3":
        fields.update(original_max_position_embeddings=4096, rope_theta=10000.0, rope_scaling=None)
    fields.update(overrides)
    return CONFIG_CLASSES[language_model](**fields)


def tiny_config_for(tokenizer: Any, name: str = "demo", **kwargs: Any) -> ETChatFieldsConfig:
    """`tiny_config` with the vocabulary size and the special ids (`<vid>`, bos, eos, pad) of `tokenizer`."""
    from .tokenizer import match_token_id

    return tiny_config(
        name,
        vocab_size=len(tokenizer),
        match_token_id=match_token_id(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **kwargs,
    )


def original_tiny_config(stage: int = 3) -> ETChatPhi3Config:
    """The tiny configuration of `shared/fixtures/etchat_phi3_tiny_stage*_layout.json` (the original code with a
    tiny Phi-3 and BERT, but EVA at its hard-coded width 1408 and depth 2)."""
    fields = {
        **PHI3_MINI_4K,
        "vocab_size": 512,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "vision_output_layer": 1,
        "qformer_hidden_size": 64,
        "qformer_num_hidden_layers": 2,
        "qformer_num_attention_heads": 4,
        "qformer_intermediate_size": 128,
        "language_model": "phi3",
        **stage_fields(stage),
    }
    if fields.get("use_matching"):
        fields["match_token_id"] = 500
    return ETChatPhi3Config(**fields)
