"""scripts/standins.py writes the base-weight files with the real files' key names, shapes and dtypes, and the
stage-1 loader takes them with every key accounted for."""

from __future__ import annotations

import json

import torch
from helpers import load_script
from safetensors import safe_open

from etchat.model import build_from_base, original_tiny_config, phi3_mini_config

standins = load_script("scripts/standins.py")


def _model_keys(layout: dict, prefix: str) -> dict[str, list[int]]:
    return {e["key"].removeprefix(prefix): e["shape"] for e in layout["checkpoint_keys"] if e["key"].startswith(prefix)}


def test_full_size_key_lists_are_the_real_files(layout_fixture):
    """Facts of the public files, independent of the fixture, and the fixture's whole key lists."""
    layout = layout_fixture("stage2")
    eva = standins.eva_keys("full")
    assert len([k for k in eva if k.endswith(".attn.qkv.weight")]) == 40  # eva_vit_g.pth holds all 40 blocks
    assert eva["pos_embed"] == [1, 257, 1408] and eva["blocks.39.mlp.fc1.weight"] == [6144, 1408]
    assert {k: v for k, v in eva.items() if not k.startswith("blocks.39.")} == _model_keys(
        layout, "model.vision_tower.vision_tower."
    )
    qformer = standins.qformer_keys("full")
    assert qformer["query_tokens"] == [1, 32, 768] and qformer["llm_proj.weight"] == [4096, 768]
    assert qformer["Qformer.bert.encoder.layer.10.crossattention.self.key.weight"] == [768, 1408]
    assert "Qformer.bert.encoder.layer.11.crossattention.self.key.weight" not in qformer  # every other layer
    assert {k.removeprefix("Qformer."): v for k, v in qformer.items() if k.startswith("Qformer.")} == _model_keys(
        layout, "model.qformer_bert."
    )
    llm = standins.llm_keys("full")
    assert len(llm) == 2 + 32 * 6 + 1 and llm["model.layers.31.self_attn.qkv_proj.weight"] == [9216, 3072]
    assert sum(torch.Size(s).numel() for s in llm.values()) == 3_821_079_552  # Phi-3-mini's parameter count


def test_tiny_standins_are_written_in_the_real_formats_and_load_with_every_key(tmp_path, layout_fixture):
    paths = standins.write_standins(tmp_path, "tiny")
    eva = torch.load(paths["eva_vit"], weights_only=True)
    assert {k: list(v.shape) for k, v in eva.items()} == standins.eva_keys("tiny")
    assert {v.dtype for v in eva.values()} == {torch.float16}
    qformer = torch.load(paths["qformer"], weights_only=True)
    assert list(qformer) == ["model"]
    assert {k: list(v.shape) for k, v in qformer["model"].items()} == standins.qformer_keys("tiny")
    assert {v.dtype for k, v in qformer["model"].items() if not k.endswith("position_ids")} == {torch.float32}
    llm_dir = paths["llm_dir"]
    with safe_open(llm_dir / "model.safetensors", "pt") as handle:
        assert {k: list(handle.get_slice(k).get_shape()) for k in handle.keys()} == standins.llm_keys("tiny")
        assert handle.get_tensor("lm_head.weight").dtype == torch.bfloat16
    assert json.loads((llm_dir / "config.json").read_text())["model_type"] == "phi3"
    assert (llm_dir / "tokenizer.model").is_file() and (llm_dir / "tokenizer_config.json").is_file()

    config = original_tiny_config(stage=1)
    model = build_from_base(llm_dir, config, paths["eva_vit"], paths["qformer"], dtype=torch.float32)
    tower = model.model.vision_tower.vision_tower.state_dict()
    assert set(tower) == {k for k in eva if not k.startswith("blocks.2.")}
    for key in tower:
        assert torch.equal(tower[key], eva[key].float()), key
    assert torch.equal(model.model.qformer_query, qformer["model"]["query_tokens"])
    with safe_open(llm_dir / "model.safetensors", "pt") as handle:
        assert torch.equal(model.lm_head.weight, handle.get_tensor("lm_head.weight").float())


def test_full_size_phi3_shards_follow_the_five_gigabyte_rule():
    """Two shards as Phi-3-mini's own (bf16, 7.64 GB), split in key order; nothing is written here."""
    keys = standins.llm_keys("full")
    sizes = [2 * torch.Size(s).numel() for s in keys.values()]
    total = sum(sizes)
    assert total == 7_642_159_104
    first, running = 0, 0
    for size in sizes:
        if running + size > standins.MAX_SHARD_BYTES:
            break
        running += size
        first += 1
    assert 0 < first < len(keys) and total - running <= standins.MAX_SHARD_BYTES  # two shards
    assert phi3_mini_config(1).vocab_size == standins.PHI3_CONFIG["vocab_size"]
