"""Checkpoint directories (save/load, released format) and the original base weight files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, Phi3Config, Phi3ForCausalLM

from etchat.model import (
    CheckpointError,
    ETChatPhi3ForCausalLM,
    build_from_base,
    load_base_weights,
    load_checkpoint,
    match_token_id,
    save_checkpoint,
    tiny_config,
)


@pytest.fixture
def inputs(make_frames, encode):
    ids = torch.tensor([encode("<|user|>\n<image>\nWhat happens at <vid> seconds?<|end|>\n<|assistant|>\n")])
    return dict(
        input_ids=ids, frames=[make_frames(5, seed=9)], queries=[["What happens at <vid> seconds?"]], src=[[2.0]]
    )


def logits_of(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def test_save_load_round_trip_gives_equal_logits(make_model, tokenizer, inputs, tmp_path):
    model = make_model(seed=5)
    expected = logits_of(model, inputs)
    save_checkpoint(model, tmp_path / "ckpt", tokenizer=tokenizer, dtype=None)
    loaded, loaded_tokenizer = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config._attn_implementation == "eager"
    torch.testing.assert_close(logits_of(loaded.eval(), inputs), expected, atol=1e-5, rtol=1e-5)
    assert match_token_id(loaded_tokenizer) == loaded.config.match_token_id
    # Plain HF loading works too (the etchat_* types are registered with the Auto classes).
    auto = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt", attn_implementation="eager").eval()
    torch.testing.assert_close(logits_of(auto, inputs), expected, atol=1e-5, rtol=1e-5)


def test_fp16_checkpoint_has_the_released_format(make_model, tokenizer, inputs, tmp_path):
    model = make_model(seed=6)
    out = save_checkpoint(model, tmp_path / "ckpt", tokenizer=tokenizer)  # float16 by default, as released
    assert next(model.parameters()).dtype == torch.float32, "saving must not cast the model itself"
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "etchat_phi3" and config["torch_dtype"] == "float16"
    assert config["load_base_models"] is False and config["architectures"] == ["ETChatPhi3ForCausalLM"]
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
        assert set(f.keys()) == set(model.state_dict())
    assert dtypes.pop("model.qformer_bert.bert.embeddings.position_ids") == "I64"
    assert set(dtypes.values()) == {"F16"}
    loaded, _ = load_checkpoint(out, dtype=torch.float32)
    torch.testing.assert_close(logits_of(loaded.eval(), inputs), logits_of(model, inputs), atol=5e-2, rtol=5e-2)


def test_released_style_directory_loads(make_model, layout_fixture, tmp_path):
    """A directory with a released-style config (4.44 keys, Phi-3 auto_map, torch_dtype) loads with our classes."""
    model = make_model(seed=7)
    save_checkpoint(model, tmp_path / "ckpt", dtype=None)
    config_path = tmp_path / "ckpt" / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = layout_fixture("stage3")["config"]["auto_map"]
    config["_name_or_path"] = "work_dirs/etchat-stage-2"
    config["transformers_version"] = "4.44.2"
    config_path.write_text(json.dumps(config))
    loaded, _ = load_checkpoint(tmp_path / "ckpt", load_tokenizer=False)
    auto = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt")
    assert type(loaded).__name__ == type(auto).__name__ == "ETChatPhi3ForCausalLM"
    loaded.save_pretrained(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert set(again) == set(config)


def test_stage3_from_a_stage2_directory(make_model, tokenizer, tmp_path):
    stage2 = make_model(seed=8, stage=2)
    assert not hasattr(stage2, "frm_head")
    save_checkpoint(stage2, tmp_path / "s2", tokenizer=tokenizer, dtype=None)
    overrides = {"use_matching": True, "bi_attention": True, "match_token_id": match_token_id(tokenizer)}
    with pytest.raises(CheckpointError, match="s2.*missing.*frm_head"):
        load_checkpoint(tmp_path / "s2", config_overrides=overrides)
    model, _ = load_checkpoint(tmp_path / "s2", config_overrides=overrides, allow_missing=("frm_head.", "vid_head."))
    # The new heads are initialised as the original (N(0, 0.02) linears, unit LayerNorm), not left empty.
    assert 0.015 < model.frm_head[1].weight.std() < 0.025
    assert torch.equal(model.vid_head[0].weight, torch.ones_like(model.vid_head[0].weight))
    torch.testing.assert_close(model.model.layers[0].mlp.down_proj.weight, stage2.model.layers[0].mlp.down_proj.weight)


# ------------------------------------------------------------------------------------------ original base weights
def base_config(tokenizer):
    """Tiny sizes, but the structure of the original tiny fixture: EVA keeps 2 of 3 blocks, Q-Former 2 layers."""
    config = tiny_config(
        "test",
        vocab_size=len(tokenizer),
        match_token_id=match_token_id(tokenizer),
        stage=1,
        vision_output_layer=1,
        vision_full_depth=3,
        pad_token_id=tokenizer.pad_token_id,
    )
    return config


def original_names(layout_fixture) -> list[str]:
    """Key names of the original model (tiny fixture: EVA depth 2, Q-Former 2 layers)."""
    return [e["key"] for e in layout_fixture("tiny_stage2")["checkpoint_keys"]]


def write_original_base_files(names: list[str], model, folder: Path) -> tuple[Path, Path, dict, dict]:
    """EVA and InstructBLIP files whose key names come from the original layout (fixture), shapes from `model`."""
    own = model.state_dict()
    generator = torch.Generator().manual_seed(0)

    def rand_like(key: str) -> torch.Tensor:
        ref = own[key]
        return ref.clone() if not ref.is_floating_point() else torch.randn(ref.shape, generator=generator)

    eva = {
        k.removeprefix("model.vision_tower.vision_tower."): rand_like(k)
        for k in names
        if k.startswith("model.vision_tower.vision_tower.")
    }
    # eva_vit_g.pth has all blocks of EVA-g; the tower keeps fewer: the extra block must be ignored.
    for key in [k for k in eva if k.startswith("blocks.1.")]:
        eva[key.replace("blocks.1.", "blocks.2.")] = torch.randn(eva[key].shape, generator=generator)
    qformer: dict[str, torch.Tensor] = {"llm_proj.weight": torch.randn(8, 4), "llm_proj.bias": torch.randn(8)}
    for key in names:
        if key.startswith("model.qformer_bert."):
            qformer["Qformer." + key.removeprefix("model.qformer_bert.")] = rand_like(key)
        elif key.startswith("model.qformer_ln."):
            qformer["ln_vision." + key.removeprefix("model.qformer_ln.")] = rand_like(key)
    qformer["query_tokens"] = rand_like("model.qformer_query")
    eva_path, qformer_path = folder / "eva_vit_g.pth", folder / "instruct_blip_vicuna7b_trimmed.pth"
    torch.save(eva, eva_path)
    torch.save({"model": qformer}, qformer_path)
    return eva_path, qformer_path, eva, qformer


def test_original_base_checkpoints_load_with_every_key_accounted_for(tokenizer, layout_fixture, tmp_path):
    torch.manual_seed(0)
    model = ETChatPhi3ForCausalLM(base_config(tokenizer))
    eva_path, qformer_path, eva, qformer = write_original_base_files(original_names(layout_fixture), model, tmp_path)
    eva_report, qformer_report = load_base_weights(model, eva_path, qformer_path)
    assert sorted(eva_report.loaded + eva_report.ignored) == sorted(eva)
    assert eva_report.ignored and all(k.startswith("blocks.2.") for k in eva_report.ignored)
    assert sorted(qformer_report.loaded + qformer_report.ignored) == sorted(qformer)
    assert qformer_report.ignored == ["llm_proj.bias", "llm_proj.weight"]
    tower = model.model.vision_tower.vision_tower.state_dict()
    for key in eva_report.loaded:
        assert torch.equal(tower[key], eva[key]), key
    bert = model.model.qformer_bert.state_dict()
    for key in qformer_report.loaded:
        if key.startswith("Qformer."):
            assert torch.equal(bert[key.removeprefix("Qformer.")], qformer[key]), key
    assert torch.equal(model.model.qformer_query, qformer["query_tokens"])
    assert torch.equal(model.model.qformer_ln.weight, qformer["ln_vision.weight"])


def test_incomplete_base_checkpoint_names_the_file(tokenizer, layout_fixture, tmp_path):
    model = ETChatPhi3ForCausalLM(base_config(tokenizer))
    eva_path, qformer_path, eva, qformer = write_original_base_files(original_names(layout_fixture), model, tmp_path)
    del eva["blocks.0.attn.q_bias"]
    torch.save(eva, eva_path)
    with pytest.raises(CheckpointError, match=r"eva_vit_g\.pth.*missing \['blocks\.0\.attn\.q_bias'\]"):
        load_base_weights(model, eva_path=eva_path)
    qformer["Qformer.bert.encoder.layer.1.crossattention.self.key.weight"] = torch.zeros(1)
    torch.save({"model": qformer}, qformer_path)
    with pytest.raises(CheckpointError, match=r"instruct_blip_vicuna7b_trimmed\.pth.*unexpected.*crossattention"):
        load_base_weights(model, qformer_path=qformer_path)


def test_stage1_model_from_a_phi3_directory_and_base_files(tokenizer, layout_fixture, tmp_path):
    config = base_config(tokenizer)
    torch.manual_seed(1)
    phi3 = Phi3ForCausalLM(
        Phi3Config(
            **{
                k: getattr(config, k)
                for k in (
                    "vocab_size",
                    "hidden_size",
                    "intermediate_size",
                    "num_hidden_layers",
                    "num_attention_heads",
                    "num_key_value_heads",
                    "pad_token_id",
                )
            }
        )
    )
    phi3.save_pretrained(tmp_path / "phi3")
    eva_path, qformer_path, eva, _ = write_original_base_files(
        original_names(layout_fixture), ETChatPhi3ForCausalLM(config), tmp_path
    )
    model = build_from_base(tmp_path / "phi3", config, eva_path, qformer_path)
    assert model.config.load_base_models and model.config.pretrain_qformer == str(qformer_path)
    for key, value in phi3.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert torch.equal(model.model.vision_tower.vision_tower.pos_embed, eva["pos_embed"])
    # Saved checkpoints record that the base weights are inside (as the original's gather_and_save_model).
    save_checkpoint(model, tmp_path / "stage1", dtype=None)
    assert json.loads((tmp_path / "stage1" / "config.json").read_text())["load_base_models"] is False
