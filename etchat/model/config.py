"""Configuration classes of E.T. Chat: an HF decoder config plus the E.T. Chat fields (spec §1.8).

`ETChatPhi3Config` (model_type `etchat_phi3`) reads and writes `config.json` files with the same keys as the
released ETChat-Phi3-Mini-Stage-{1,2,3} checkpoints: transformers 5 renamed `torch_dtype` to `dtype` and folded
`rope_theta`/`rope_scaling` into `rope_parameters`; `to_json_string` writes the 4.44 names back.

The original hard-codes the sizes of EVA-ViT-g, the Q-Former and the aggregator. Here they are config fields
(`vision_*`, `qformer_*`) so that the demo can build a tiny model with the same code. They default to the real
sizes and are only written to `config.json` when they differ from them, so real-size files keep the released keys.
"""

from __future__ import annotations

import json
from typing import Any

from transformers import LlamaConfig, Phi3Config, PreTrainedConfig, Qwen2Config

from etchat.errors import ConfigError

# Size fields added by this re-implementation; written only when they differ from their (the real) defaults.
SIZE_FIELDS: tuple[str, ...] = (
    "vision_image_size",
    "vision_patch_size",
    "vision_width",
    "vision_num_heads",
    "vision_mlp_ratio",
    "vision_full_depth",
    "vision_trainable",
    "qformer_hidden_size",
    "qformer_num_hidden_layers",
    "qformer_num_attention_heads",
    "qformer_intermediate_size",
    "qformer_num_query_tokens",
    "qformer_cross_attention_freq",
    "qformer_vocab_size",
    "qformer_max_position_embeddings",
    "qformer_max_text_length",
    "qformer_dropout",
    "qformer_initializer_range",
    "matching_head_init",
)

MATCHING_HEAD_INITS: tuple[str, ...] = ("normal", "fan_in")


class ETChatFieldsConfig(PreTrainedConfig):
    """The E.T. Chat fields shared by all backbones. Not used on its own: see ETChatPhi3Config and friends."""

    # -- fields of the original ModelArguments (same names, same defaults) --
    model_name_or_path: str | None = None
    language_model: str | None = None
    conv_type: str | None = None
    vision_tower: str = "eva_vit"
    vision_processor: str = "clip_center_224"
    vision_output_layer: int = -2
    vision_output_token: str = "patch"
    mm_projector: str = "qformer"
    pretrain_vision_tower: str | None = None
    pretrain_qformer: str | None = None
    pretrain_projector: str | None = None
    use_matching: bool = False
    use_time_tag: bool = False
    bi_attention: bool = False
    alpha: float = 2.0
    load_base_models: bool = False
    match_token_id: int | None = None

    # -- sizes the original hard-codes (EVA-ViT-g/14 at 224 px, BERT-base Q-Former with 32 queries) --
    vision_image_size: int = 224
    vision_patch_size: int = 14
    vision_width: int = 1408
    vision_num_heads: int = 16
    vision_mlp_ratio: float = 4.3637
    vision_full_depth: int = 40
    # The original never trains EVA; the tiny demo may want to.
    vision_trainable: bool = False
    qformer_hidden_size: int = 768
    qformer_num_hidden_layers: int = 12
    qformer_num_attention_heads: int = 12
    qformer_intermediate_size: int = 3072
    qformer_num_query_tokens: int = 32
    qformer_cross_attention_freq: int = 2
    qformer_vocab_size: int = 30523
    qformer_max_position_embeddings: int = 512
    qformer_max_text_length: int = 256
    qformer_dropout: float = 0.1
    qformer_initializer_range: float = 0.02
    # "normal": HF init N(0, initializer_range) as the original; "fan_in": std 1/sqrt(fan_in) (demo_learnability.md).
    matching_head_init: str = "normal"

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self.check_etchat_fields()

    # ------------------------------------------------------------------ derived sizes
    @property
    def vision_depth(self) -> int:
        """Number of EVA blocks kept: the tower is truncated so that its output is block `vision_output_layer`."""
        layer = self.vision_output_layer
        return layer + 1 if layer >= 0 else self.vision_full_depth + layer + 1

    @property
    def vision_num_patches(self) -> int:
        return (self.vision_image_size // self.vision_patch_size) ** 2

    @property
    def vision_mlp_hidden_size(self) -> int:
        return int(self.vision_width * self.vision_mlp_ratio)

    def check_etchat_fields(self) -> None:
        """Clear errors for values the original cannot run with (spec §1.3: only the Q-Former projector works)."""
        allowed: dict[str, tuple[Any, ...]] = {
            "vision_tower": ("eva_vit",),
            "vision_output_token": ("patch",),
            "mm_projector": ("qformer",),
            "matching_head_init": MATCHING_HEAD_INITS,
        }
        for key, values in allowed.items():
            if getattr(self, key) not in values:
                raise ConfigError(f"config key {key!r} = {getattr(self, key)!r}; allowed values: {list(values)}")
        if not 1 <= self.vision_depth <= self.vision_full_depth:
            raise ConfigError(
                f"config key 'vision_output_layer' = {self.vision_output_layer} selects block {self.vision_depth} "
                f"of a {self.vision_full_depth}-block vision tower"
            )
        if self.vision_image_size % self.vision_patch_size:
            raise ConfigError("config key 'vision_image_size' must be a multiple of 'vision_patch_size'")
        for width, heads, name in (
            (self.vision_width, self.vision_num_heads, "vision"),
            (self.qformer_hidden_size, self.qformer_num_attention_heads, "qformer"),
        ):
            if width % heads:
                raise ConfigError(f"{name} width {width} is not divisible by its number of heads {heads}")
        if self.use_matching and self.hidden_size % 2:
            raise ConfigError("use_matching needs an even hidden_size (the matching heads are hidden -> hidden/2)")

    # ------------------------------------------------------------------ serialisation
    def to_json_string(self, use_diff: bool = True) -> str:
        """Write the key names of the released (transformers 4.44) config.json files."""
        data = self.to_diff_dict() if use_diff else self.to_dict()
        data = legacy_config_dict(data)
        if use_diff and self._name_or_path:
            data["_name_or_path"] = self._name_or_path
        for key in SIZE_FIELDS:
            if key in data and data[key] == getattr(ETChatFieldsConfig, key):
                del data[key]
        # Stage-1/2 files have no match_token_id key at all.
        if data.get("match_token_id", 0) is None:
            del data["match_token_id"]
        return json.dumps(data, indent=2, sort_keys=True) + "\n"


def legacy_config_dict(data: dict[str, Any]) -> dict[str, Any]:
    """Rename transformers-5 config keys to their 4.44 names (`torch_dtype`, `rope_theta`, `rope_scaling`)."""
    data = dict(data)
    if "dtype" in data:
        dtype = data.pop("dtype")
        data["torch_dtype"] = dtype if dtype is None or isinstance(dtype, str) else str(dtype).split(".")[-1]
    if "rope_parameters" in data:
        rope = dict(data.pop("rope_parameters") or {})
        data["rope_theta"] = rope.pop("rope_theta", 10000.0)
        if rope.get("partial_rotary_factor", 1.0) == 1.0:
            rope.pop("partial_rotary_factor", None)
        rope_type = rope.get("rope_type", "default")
        if rope_type == "default" and set(rope) <= {"rope_type"}:
            data["rope_scaling"] = None
        else:
            rope.setdefault("type", rope_type)
            data["rope_scaling"] = rope
    return data


class ETChatPhi3Config(ETChatFieldsConfig, Phi3Config):
    """Phi-3 backbone (the released E.T. Chat)."""

    model_type = "etchat_phi3"
    language_model: str | None = "phi3"


class ETChatLlamaConfig(ETChatFieldsConfig, LlamaConfig):
    """Llama backbone (the original defines it, never trained)."""

    model_type = "etchat_llama"
    language_model: str | None = "llama"


class ETChatQwen2Config(ETChatFieldsConfig, Qwen2Config):
    """Qwen2 backbone (the original defines it, never trained)."""

    model_type = "etchat_qwen2"
    language_model: str | None = "qwen2"


CONFIG_CLASSES: dict[str, type[ETChatFieldsConfig]] = {
    "phi3": ETChatPhi3Config,
    "llama": ETChatLlamaConfig,
    "qwen2": ETChatQwen2Config,
}
