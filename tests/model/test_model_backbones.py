"""Llama and Qwen2 backbones by config, the demo tokenizer, the demo preset, LoRA wrapping."""

from __future__ import annotations

import pytest
import torch

from etchat.model import (
    IMAGE_TOKEN_INDEX,
    MODEL_CLASSES,
    ETChatLlamaForCausalLM,
    ETChatQwen2ForCausalLM,
    match_token_id,
    tiny_config,
)


@pytest.mark.parametrize(("backbone", "cls"), [("llama", ETChatLlamaForCausalLM), ("qwen2", ETChatQwen2ForCausalLM)])
def test_other_backbones_train_and_generate(tokenizer, encode, make_frames, backbone, cls, tmp_path):
    torch.manual_seed(0)
    config = tiny_config(
        "test",
        vocab_size=len(tokenizer),
        match_token_id=match_token_id(tokenizer),
        language_model=backbone,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    assert config.model_type == f"etchat_{backbone}"
    model = MODEL_CLASSES[config.model_type](config)
    assert isinstance(model, cls)
    prompt = encode("<|user|>\n<image>\nWhen?<|end|>\n<|assistant|>\n")
    answer = tokenizer("From <vid> to <vid>.<|end|>", add_special_tokens=False).input_ids
    ids = torch.tensor([prompt + answer])
    labels = torch.tensor([[-100] * len(prompt) + answer])
    out = model(input_ids=ids, labels=labels, frames=[make_frames(4, seed=0)], queries=[["When?"]], tgt=[[0.0, 3.0]])
    assert out.match_loss is not None and torch.isfinite(out.loss)
    out.loss.backward()
    generated = model.eval().generate([prompt], [make_frames(4, seed=0)], [["When?"]], max_new_tokens=3)
    assert len(generated.sequences[0]) == 3
    model.save_pretrained(tmp_path)
    assert type(MODEL_CLASSES[config.model_type].from_pretrained(tmp_path)) is cls


def test_demo_tokenizer_is_phi3_like(tokenizer):
    ids = tokenizer("<|user|>\nhi<|end|>\n<|assistant|>\nat <vid>").input_ids
    assert ids[0] == tokenizer.bos_token_id  # bos prepended, no eos appended
    for token in ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<vid>"):
        assert tokenizer.convert_tokens_to_ids(token) in ids or token == "<|system|>"
    assert tokenizer.pad_token == tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.decode(ids, skip_special_tokens=False) == "<s><|user|>\nhi<|end|>\n<|assistant|>\nat <vid>"
    assert IMAGE_TOKEN_INDEX < 0  # never a vocabulary id


def test_demo_preset_sizes(tokenizer):
    config = tiny_config("demo", vocab_size=len(tokenizer), match_token_id=match_token_id(tokenizer))
    model = MODEL_CLASSES[config.model_type](config)
    groups = {"vision": 0, "qformer_bert": 0, "aggregator": 0, "llm": 0, "heads": 0}
    for name, param in model.named_parameters():
        if "vision_tower" in name:
            groups["vision"] += param.numel()
        elif "qformer_bert.bert.embeddings.word" in name:
            continue  # the 30,523-row BERT vocabulary (looked up, not computed)
        elif "qformer_bert" in name:
            groups["qformer_bert"] += param.numel()
        elif "qformer" in name:
            groups["aggregator"] += param.numel()
        elif name.startswith(("frm_head", "vid_head")):
            groups["heads"] += param.numel()
        else:
            groups["llm"] += param.numel()
    # demo_learnability.md: ViT ~113 k, Q-Former + aggregator ~159 k, LM ~792 k (with vocab), heads 17 k each.
    assert 90_000 < groups["vision"] < 130_000
    assert groups["heads"] == 2 * (2 * 128 + 128 * 64 + 64 + 64 * 128 + 128)
    assert config.vision_num_patches == 16 and config.hidden_size == 128 and config.num_hidden_layers == 4
    assert config.matching_head_init == "normal"
    fan_in = tiny_config("demo", vocab_size=len(tokenizer), match_token_id=0, fan_in_heads=True)
    torch.manual_seed(0)
    heads = MODEL_CLASSES[fan_in.model_type](fan_in).vid_head
    assert (
        abs(float(heads[1].weight.detach().std()) - 128**-0.5) < 0.01
        and abs(float(heads[3].weight.detach().std()) - 64**-0.5) < 0.02
    )


def test_lora_wrapping_keeps_forward_working(make_model, tokenizer, encode, make_frames):
    peft = pytest.importorskip("peft")
    model = make_model()
    lora = peft.get_peft_model(
        model, peft.LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["qkv_proj", "o_proj"])
    )
    prompt = encode("<|user|>\n<image>\nWhen?<|end|>\n<|assistant|>\n")
    answer = tokenizer("At <vid>.<|end|>", add_special_tokens=False).input_ids
    out = lora(
        input_ids=torch.tensor([prompt + answer]),
        labels=torch.tensor([[-100] * len(prompt) + answer]),
        frames=[make_frames(3, seed=0)],
        queries=[["When?"]],
        src=[None],
        tgt=[[1.0]],
    )
    out.loss.backward()
    assert any(p.grad is not None for n, p in lora.named_parameters() if "lora_" in n)
    merged = lora.merge_and_unload()
    assert set(merged.state_dict()) == set(make_model().state_dict())
