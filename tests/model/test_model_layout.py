"""The real-size model has exactly the parameter layout of the original (fixtures from the original code)."""

from __future__ import annotations

import json

import pytest
import torch

from etchat.errors import ConfigError
from etchat.model import ETChatPhi3Config, ETChatPhi3ForCausalLM, original_tiny_config, phi3_mini_config


def layout(model: torch.nn.Module) -> list[tuple[str, list[int], str]]:
    return [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]


@pytest.mark.parametrize(
    ("name", "make_config"),
    [
        ("stage2", lambda: phi3_mini_config(2)),
        ("stage3", lambda: phi3_mini_config(3)),
        ("tiny_stage2", lambda: original_tiny_config(2)),
        ("tiny_stage3", lambda: original_tiny_config(3)),
    ],
)
def test_meta_model_has_the_released_layout(layout_fixture, name, make_config):
    expected = layout_fixture(name)
    with torch.device("meta"):
        model = ETChatPhi3ForCausalLM(make_config()).to(torch.float16)
    theirs = [(e["key"], e["shape"], e["dtype"]) for e in expected["checkpoint_keys"]]
    # Same keys, same order (hence the same shard split), same shapes and dtypes.
    assert layout(model) == theirs
    assert sum(p.numel() for p in model.parameters()) == expected["total_parameters"]
    groups = {g: 0 for g in expected["total_parameter_numel_by_group"]}
    for key, param in model.named_parameters():
        group = max((g for g in groups if key.startswith(g)), key=len)
        groups[group] += param.numel()
    assert groups == expected["total_parameter_numel_by_group"]


@pytest.mark.parametrize("stage", [2, 3])
def test_released_config_round_trip_keeps_the_keys(layout_fixture, tmp_path, stage):
    released = layout_fixture(f"stage{stage}")["config"]
    (tmp_path / "config.json").write_text(json.dumps(released))
    config = ETChatPhi3Config.from_pretrained(tmp_path)
    assert config.vision_depth == 39 and config.alpha == 2.0
    assert config.use_matching == (stage == 3) and config.bi_attention == (stage == 3)
    out = tmp_path / "out"
    config.save_pretrained(out)
    written = json.loads((out / "config.json").read_text())
    assert set(written) == set(released)
    differ = {k for k in released if written[k] != released[k]}
    assert differ == {"transformers_version"}


def test_fresh_real_config_writes_the_released_keys(layout_fixture, tmp_path):
    released = layout_fixture("stage3")["config"]
    config = phi3_mini_config(3)
    config.architectures = ["ETChatPhi3ForCausalLM"]
    config.dtype = torch.float16
    config.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    # Only what came from the training machine is absent: its paths and Phi-3's remote-code auto_map.
    assert set(released) - set(written) == {"_name_or_path", "auto_map"}
    assert set(written) - set(released) == set()
    same = {k for k in written if written[k] == released[k]}
    assert set(written) - same == {"transformers_version", "model_name_or_path"}


def test_invalid_config_values_name_the_key():
    with pytest.raises(ConfigError, match="mm_projector"):
        phi3_mini_config(3, mm_projector="mlp2x_gelu")
    with pytest.raises(ConfigError, match="vision_output_layer"):
        phi3_mini_config(3, vision_output_layer=-41)


@pytest.mark.parametrize("stage", [2, 3])
def test_fp16_shards_split_as_the_released_index(layout_fixture, stage):
    """save_checkpoint's 5GB fp16 shards of the (fp32, as trained) model put every tensor in the same file as the
    released model (3 shards). transformers 5's own save_pretrained would not: it orders the keys by name."""
    from etchat.model.weights import weight_shard_plan

    expected = layout_fixture(f"stage{stage}")["predicted_safetensors_index"]
    with torch.device("meta"):
        model = ETChatPhi3ForCausalLM(phi3_mini_config(stage))
    split = weight_shard_plan(model.state_dict(), torch.float16, "5GB")
    assert split.tensor_to_filename == expected["weight_map"]
    assert split.metadata["total_size"] == expected["metadata"]["total_size"]
