"""Stand-ins for the base-weight files of the paper preset: the real files' key names, shapes and dtypes, random
values. They let the stage-1 loading path run at full size where the real files cannot be downloaded.

Written into OUT_DIR, as `model_zoo/` holds the real ones (`model.llm_dir`, `model.eva_vit`, `model.qformer`):

- `eva_vit_g.pth`: LAVIS's EVA-CLIP ViT-g/14 (BLIP-2) state dict: patch embedding, class token, position
  embedding and all 40 blocks (E.T. Chat keeps 39), float16, flat (no wrapper dict).
- `instruct_blip_vicuna7b_trimmed.pth`: LAVIS's InstructBLIP (Vicuna-7B) checkpoint with the LLM trimmed away:
  `{"model": {...}}` holding `Qformer.*` (BERT-base with cross-attention every other layer, its text
  embeddings, no LM head), `ln_vision.*`, `query_tokens` and `llm_proj.*` (768 -> 4096, unused by E.T. Chat),
  float32.
- `Phi-3-mini-4k-instruct/`: `config.json` and `generation_config.json` of microsoft/Phi-3-mini-4k-instruct,
  its weights as bfloat16 safetensors shards of at most 5 GB with `model.safetensors.index.json` (`metadata.
  total_size`, `weight_map`), and its tokenizer files (scripts/tokenizer_reference/phi3_files.py, the files as
  released in April 2024).

Key names and shapes come from the original model's layout (tests/fixtures/etchat_phi3_stage2_layout.json.gz:
the released stage-2 checkpoint's keys, recorded from the original code), mapped back to each file's own names;
`--size tiny` uses the tiny layout instead (EVA 3 blocks of which 2 are kept, Q-Former 2 layers, a 2-layer LLM),
for tests. Values: N(0, 0.02) for weights, ones for norm scales, zeros for biases, so a forward pass stays finite.

Usage: python scripts/standins.py OUT_DIR [--size full|tiny] [--seed 0]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
LAYOUTS = {"full": "etchat_phi3_stage2_layout.json.gz", "tiny": "etchat_phi3_tiny_stage2_layout.json.gz"}
EVA_PREFIX, BERT_PREFIX, LN_PREFIX = "model.vision_tower.vision_tower.", "model.qformer_bert.", "model.qformer_ln."
LLM_PREFIXES = ("model.embed_tokens.", "model.layers.", "model.norm.", "lm_head.")
# E.T. Chat keeps the EVA blocks below its output layer; the file has the whole EVA-g (40 blocks at full size).
EVA_FILE_BLOCKS = {"full": 40, "tiny": 3}
LLM_PROJ = {"full": (4096, 768), "tiny": (16, 64)}  # InstructBLIP's Q-Former -> Vicuna projection
MAX_SHARD_BYTES = 5 * 10**9  # save_pretrained's default max_shard_size, as Phi-3's two shards

# microsoft/Phi-3-mini-4k-instruct config.json (the public file's fields; sliding_window as published, 2047).
PHI3_CONFIG: dict[str, Any] = {
    "_name_or_path": "Phi-3-mini-4k-instruct",
    "architectures": ["Phi3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "embd_pdrop": 0.0,
    "eos_token_id": 32000,
    "hidden_act": "silu",
    "hidden_size": 3072,
    "initializer_range": 0.02,
    "intermediate_size": 8192,
    "max_position_embeddings": 4096,
    "model_type": "phi3",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "original_max_position_embeddings": 4096,
    "pad_token_id": 32000,
    "resid_pdrop": 0.0,
    "rms_norm_eps": 1e-05,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "sliding_window": 2047,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "vocab_size": 32064,
}
PHI3_GENERATION_CONFIG = {"bos_token_id": 1, "eos_token_id": [32000, 32001, 32007], "pad_token_id": 32000}


def layout(size: str) -> dict[str, Any]:
    with gzip.open(REPO / "tests" / "fixtures" / LAYOUTS[size], "rt") as handle:
        return json.load(handle)


def _shapes(size: str) -> dict[str, list[int]]:
    return {entry["key"]: entry["shape"] for entry in layout(size)["checkpoint_keys"]}


def eva_keys(size: str) -> dict[str, list[int]]:
    """eva_vit_g.pth's keys and shapes: the tower's, plus the blocks E.T. Chat drops (named like the last kept)."""
    tower = {k.removeprefix(EVA_PREFIX): s for k, s in _shapes(size).items() if k.startswith(EVA_PREFIX)}
    kept = 1 + max(int(m.group(1)) for k in tower if (m := re.match(r"blocks\.(\d+)\.", k)))
    last = {k.removeprefix(f"blocks.{kept - 1}."): s for k, s in tower.items() if k.startswith(f"blocks.{kept - 1}.")}
    for block in range(kept, EVA_FILE_BLOCKS[size]):
        tower.update({f"blocks.{block}.{k}": s for k, s in last.items()})
    return tower


def qformer_keys(size: str) -> dict[str, list[int]]:
    """instruct_blip_vicuna7b_trimmed.pth's `model` keys and shapes."""
    out: dict[str, list[int]] = {}
    for key, shape in _shapes(size).items():
        if key.startswith(BERT_PREFIX):
            out["Qformer." + key.removeprefix(BERT_PREFIX)] = shape
        elif key.startswith(LN_PREFIX):
            out["ln_vision." + key.removeprefix(LN_PREFIX)] = shape
        elif key == "model.qformer_query":
            out["query_tokens"] = shape
    rows, cols = LLM_PROJ[size]
    out["llm_proj.weight"], out["llm_proj.bias"] = [rows, cols], [rows]
    return out


def llm_keys(size: str) -> dict[str, list[int]]:
    """The Phi-3 directory's weight names and shapes."""
    return {k: s for k, s in _shapes(size).items() if k.startswith(LLM_PREFIXES)}


def _value(key: str, shape: list[int], dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    if key.endswith("position_ids"):
        return torch.arange(shape[-1]).reshape(shape)
    name = key.rsplit(".", 1)[-1]
    if re.search(r"(norm|ln|LayerNorm)[^.]*\.weight$", key):  # norm1, input_layernorm, LayerNorm, ln_vision
        return torch.ones(shape, dtype=dtype)
    if name in ("bias", "q_bias", "v_bias"):
        return torch.zeros(shape, dtype=dtype)
    return (torch.randn(shape, generator=generator) * 0.02).to(dtype)


def _tensors(keys: dict[str, list[int]], dtype: torch.dtype, seed: int) -> Iterator[tuple[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    for key, shape in keys.items():
        yield key, _value(key, shape, torch.int64 if key.endswith("position_ids") else dtype, generator)


def write_eva(out: Path, size: str, seed: int) -> Path:
    path = out / "eva_vit_g.pth"
    torch.save(dict(_tensors(eva_keys(size), torch.float16, seed)), path)
    return path


def write_qformer(out: Path, size: str, seed: int) -> Path:
    path = out / "instruct_blip_vicuna7b_trimmed.pth"
    torch.save({"model": dict(_tensors(qformer_keys(size), torch.float32, seed + 1))}, path)
    return path


def write_phi3(out: Path, size: str, seed: int) -> Path:
    """The Phi-3 directory, one shard in memory at a time."""
    folder = out / "Phi-3-mini-4k-instruct"
    folder.mkdir(parents=True, exist_ok=True)
    keys = llm_keys(size)
    shards: list[list[str]] = [[]]
    shard_bytes = 0
    for key, shape in keys.items():
        nbytes = 2 * int(torch.Size(shape).numel())
        if shards[-1] and shard_bytes + nbytes > MAX_SHARD_BYTES:
            shards.append([])
            shard_bytes = 0
        shards[-1].append(key)
        shard_bytes += nbytes
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    if len(shards) == 1:
        names = ["model.safetensors"]  # as save_pretrained writes one shard: no index
    tensors = _tensors(keys, torch.bfloat16, seed + 2)
    weight_map, total = {}, 0
    for name, shard in zip(names, shards, strict=True):
        state = dict(next(tensors) for _ in shard)
        save_file(state, str(folder / name), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in state.values())
        weight_map.update(dict.fromkeys(state, name))
        del state
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    config = dict(PHI3_CONFIG)
    if size == "tiny":
        cfg = layout("tiny")["config"]
        config.update({k: cfg[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                           "num_attention_heads", "num_key_value_heads", "vocab_size")})  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "generation_config.json").write_text(json.dumps(PHI3_GENERATION_CONFIG, indent=2) + "\n")
    _phi3_files().write_phi3_tokenizer(folder, "2024-04")
    return folder


def _phi3_files() -> Any:
    path = REPO / "scripts" / "tokenizer_reference" / "phi3_files.py"
    spec = importlib.util.spec_from_file_location("phi3_files", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_standins(out: str | Path, size: str = "full", seed: int = 0) -> dict[str, Path]:
    """All three stand-ins in `out`; returns their paths (`llm_dir`, `eva_vit`, `qformer`, the config keys)."""
    if size not in LAYOUTS:
        raise ValueError(f"size {size!r}; expected one of {sorted(LAYOUTS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return {"eva_vit": write_eva(out, size, seed), "qformer": write_qformer(out, size, seed),
            "llm_dir": write_phi3(out, size, seed)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--size", choices=sorted(LAYOUTS), default="full")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for key, path in write_standins(args.out_dir, args.size, args.seed).items():
        print(f"model.{key}: {path}")


if __name__ == "__main__":
    main()
