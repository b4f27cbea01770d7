"""Per-stage trainable sets (spec §4.3, at the real size on the meta device) and the global-batch arithmetic."""

from __future__ import annotations

import pytest
import torch

from etchat.errors import ConfigError
from etchat.model import phi3_mini_config
from etchat.model.modeling import build_model
from etchat.train.run import TrainSettings, add_lora, deepspeed_config
from etchat.train.stages import PAPER_HYPER, STAGES, plan_batch, set_trainable, trainable_names

# Spec §1.10 / §4.3: aggregator + projector 9,387,392; Q-Former BERT 185,660,160 + queries 24,576 + ln_vision 2,816;
# LoRA r=128 on qkv_proj/o_proj 75,497,472; stage 3 adds the Q-Former attention blocks (48,448,512 of the BERT),
# embed_tokens and lm_head (98,500,608 each) and the two matching heads (18,895,872).
AGGREGATOR = 9_387_392
QFORMER = 185_660_160 + 24_576 + 2_816
LORA = 75_497_472
QFORMER_ATTENTION = 12 * 2_363_904 + 6 * 3_346_944  # self-attention per layer, cross-attention every 2nd
EMBED = LM_HEAD = 32064 * 3072
HEADS = 18_895_872
EXPECTED = {
    1: AGGREGATOR,
    2: QFORMER + AGGREGATOR + LORA,  # ~270.6 M
    3: QFORMER_ATTENTION + 24_576 + 2_816 + AGGREGATOR + LORA + EMBED + LM_HEAD + HEADS,  # ~349 M
}


@pytest.fixture(scope="module")
def real_size_models():
    """The released Phi-3-mini E.T. Chat per stage, on the meta device (no memory), LoRA added as in training."""
    models = {}
    for stage, spec in STAGES.items():
        with torch.device("meta"):
            model = build_model(phi3_mini_config(stage=stage))
            if spec.lora:
                model = add_lora(model, TrainSettings(stages=[1, 2, 3]))
        models[stage] = model
    return models


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_trainable_parameter_counts_match_the_paper(real_size_models, stage):
    counts = set_trainable(real_size_models[stage], STAGES[stage])
    assert counts["trainable"] == EXPECTED[stage]
    assert counts["lora"] == (LORA if STAGES[stage].lora else 0)
    assert abs(counts["trainable"] - {1: 9.39e6, 2: 270.6e6, 3: 349e6}[stage]) < 0.5e6


def test_trainable_sets_by_name(real_size_models):
    names = {stage: set_trainable_names(real_size_models[stage], stage) for stage in STAGES}
    # Stage 1: only the aggregator and the projector.
    assert {n.split(".")[1] for n in names[1]} == {"qformer_proj", "qformer_q_proj", "qformer_k_proj", "qformer_v_proj"}
    # Never the vision tower (EVA is frozen in every stage), never the LLM's own weights except via LoRA / stage 3.
    for stage in STAGES:
        assert not any("vision_tower" in n for n in names[stage])
        llm = [n for n in names[stage] if ".layers." in n and "qformer" not in n]
        assert all("lora_" in n for n in llm), llm[:3]
    # Stage 2: the whole Q-Former, including its word embeddings and FFNs.
    assert any("qformer_bert.bert.embeddings.word_embeddings" in n for n in names[2])
    assert any("intermediate_query" in n for n in names[2])
    # Stage 3: Q-Former attention only (no FFN, no embeddings), plus embeddings, lm_head and matching heads.
    q3 = [n for n in names[3] if "qformer_bert" in n]
    assert q3 and all(".attention." in n or ".crossattention." in n for n in q3)
    for key in ("model.embed_tokens.weight", "lm_head.weight", "frm_head.1.weight", "vid_head.3.weight"):
        assert any(n.endswith(key) for n in names[3]), key
    assert not any("frm_head" in n or "embed_tokens" in n for n in names[2])
    # LoRA sits on qkv_proj and o_proj of every decoder layer only.
    lora_modules = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in names[3] if "lora_" in n}
    assert lora_modules == {"qkv_proj", "o_proj"}


def set_trainable_names(model, stage):
    set_trainable(model, STAGES[stage])
    return trainable_names(model)


def test_demo_vision_tower_is_trainable_only_when_asked(real_size_models):
    model = real_size_models[1]
    set_trainable(model, STAGES[1], vision_trainable=True)
    assert any("vision_tower" in n for n in trainable_names(model))
    set_trainable(model, STAGES[1])
    assert not any("vision_tower" in n for n in trainable_names(model))


@pytest.mark.parametrize(
    ("stage", "workers", "per_device", "accumulation"),
    [
        (1, 1, 4, 64),
        (1, 2, 4, 32),
        (1, 8, 4, 8),  # 256 = 4 x GA x workers (the paper: 4 x 8 x 8)
        (2, 1, 1, 128),
        (2, 2, 1, 64),
        (2, 8, 1, 16),  # 128
        (3, 1, 1, 32),
        (3, 2, 1, 16),
        (3, 8, 1, 4),  # 32
    ],
)
def test_global_batch_is_kept_for_1_2_and_8_workers(stage, workers, per_device, accumulation):
    hyper = PAPER_HYPER[stage]
    plan = plan_batch(hyper.global_batch, hyper.per_device_batch, workers, stage)
    assert (plan.per_device, plan.grad_accum) == (per_device, accumulation)
    assert plan.per_device * plan.grad_accum * plan.world_size == hyper.global_batch


def test_batch_plan_lowers_the_per_device_batch_and_refuses_what_cannot_divide():
    # 16 samples on 8 workers with 4 each would be 32 per step: 2 per device, no accumulation.
    assert plan_batch(16, 4, 8).per_device == 2
    assert plan_batch(16, 4, 8).grad_accum == 1
    with pytest.raises(ConfigError, match="not divisible by the 3 workers"):
        plan_batch(32, 1, 3, stage=3)
    with pytest.raises(ConfigError, match="train.stage1.per_device_batch"):
        plan_batch(24, 5, 2, stage=1)


def test_deepspeed_config_clips_only_when_asked(tmp_path):
    config = deepspeed_config(None, 0.0)
    assert config["gradient_clipping"] == 0.0  # explicit: DeepSpeed 0.19 would clip at 1.0 without the key
    assert config["zero_optimization"]["stage"] == 2
    assert deepspeed_config(None, 1.0)["gradient_clipping"] == 1.0


def test_stage3_starts_from_a_stage2_tokenizer_without_vid(tmp_path):
    """The real path: Phi-3's tokenizer has no <vid> until stage 3 adds it in the free row after the last token."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from etchat.model import match_token_id, save_checkpoint, tiny_config
    from etchat.train.run import load_start

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<unk>", "<s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    bpe.train_from_iterator(
        ["when does the red square appear"] * 4,
        trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<s>", eos_token="<|endoftext|>", unk_token="<unk>", pad_token="<unk>"
    )
    size = len(tokenizer)
    config = tiny_config("test", vocab_size=size + 8, stage=2, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    save_checkpoint(build_model(config), tmp_path / "stage2", tokenizer)

    model, loaded = load_start(3, str(tmp_path / "stage2"), {}, TrainSettings(stages=[3]), use_matching=True)
    assert match_token_id(loaded) == size == model.config.match_token_id and model.config.use_matching
    assert model.get_input_embeddings().weight.shape[0] == size + 8  # a free row: nothing resized
