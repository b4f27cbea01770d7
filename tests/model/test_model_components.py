"""Vision tower, Q-Former and frame compressor at tiny size: shapes, one token per frame, frozen tower."""

from __future__ import annotations

import pytest
import torch

from etchat.errors import ConfigError
from etchat.model import load_qformer_tokenizer
from etchat.model.qformer import check_bert_vocab, default_bert_vocab_path


def test_vision_tower_shapes_and_frozen(make_model, make_frames):
    model = make_model()
    tower = model.model.vision_tower
    spec = tower.spec
    images = make_frames(3, seed=1).requires_grad_(True)
    out = tower(images)
    # CLS + (16/8)^2 patches, width 32, no final norm: the last block's output is returned as is.
    assert out.shape == (3, 1 + spec.num_patches, spec.width)
    assert not out.requires_grad, "the vision tower must run without gradients (frozen)"
    assert all(not p.requires_grad for p in tower.parameters())
    assert len(tower.vision_tower.blocks) == model.config.vision_depth == 1
    # Chunking frames through the tower changes nothing but memory.
    torch.testing.assert_close(tower(images, chunk_size=2), out)


def test_trainable_vision_tower_gets_gradients(make_model, make_frames):
    model = make_model(vision_trainable=True)
    out = model.model.vision_tower(make_frames(2, seed=1))
    out.sum().backward()
    assert model.model.vision_tower.vision_tower.patch_embed.proj.weight.grad is not None


def test_one_token_per_frame_per_query(make_model, make_frames):
    model = make_model()
    frames = [make_frames(5, seed=1), None, make_frames(1, seed=2)]
    queries = [["when does it start?", "and the end?"], None, ["an image is a 1-frame video"]]
    out = model.encode_frames(frames, queries)
    assert out[0].shape == (2, 5, model.config.hidden_size)  # 2 human turns x 5 frames
    assert out[1] is None
    assert out[2].shape == (1, 1, model.config.hidden_size)
    # The question conditions the tokens (Q-Former is text-conditioned) ...
    assert not torch.allclose(out[0][0], out[0][1])
    # ... and each frame's token depends on that frame only.
    changed = make_frames(5, seed=1)
    changed[3] += 1.0
    again = model.encode_frames([changed], [queries[0]])[0]
    torch.testing.assert_close(again[:, [0, 1, 2, 4]], out[0][:, [0, 1, 2, 4]])
    assert not torch.allclose(again[:, 3], out[0][:, 3])


def test_precomputed_patch_features_give_the_same_tokens(make_model, make_frames):
    model = make_model()
    frames = make_frames(4, seed=3)
    patches = model.model.encode_patches(frames)
    assert patches.shape == (4, model.model.vision_tower.num_patches, model.config.vision_width)
    from_pixels = model.encode_frames([frames], [["q"]])[0]
    from_patches = model.encode_frames([patches], [["q"]])[0]
    torch.testing.assert_close(from_patches, from_pixels)


def test_qformer_text_is_left_truncated(make_model, make_frames):
    model = make_model(qformer_max_text_length=8)
    tokenizer = load_qformer_tokenizer(None, 8)
    model.model.set_qformer_tokenizer(tokenizer)
    frames = make_frames(2, seed=4)
    long_a = "alpha beta gamma delta " + "the red square appears near the end"
    long_b = "one two three four " + "the red square appears near the end"
    # Only the last 6 words survive (8 tokens with [CLS]/[SEP]): the differing starts are cut off.
    torch.testing.assert_close(
        model.encode_frames([frames], [[long_a]])[0], model.encode_frames([frames], [[long_b]])[0]
    )


def test_sdpa_and_eager_visual_attention_agree(make_model, make_frames):
    model = make_model()
    frames, queries = [make_frames(3, seed=5)], [["where is the circle"]]
    eager = model.encode_frames(frames, queries)[0]
    model.model.set_visual_attn_implementation("sdpa")
    torch.testing.assert_close(model.encode_frames(frames, queries)[0], eager, atol=1e-5, rtol=1e-4)


def test_qformer_tokenizer_is_bert_base_uncased_plus_dec():
    path = default_bert_vocab_path()
    check_bert_vocab(path)  # sha256 of bert-base-uncased/vocab.txt
    tokenizer = load_qformer_tokenizer()
    assert len(tokenizer) == 30523
    assert tokenizer.convert_tokens_to_ids("[DEC]") == tokenizer.bos_token_id == 30522
    assert (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id) == (101, 102, 0)
    assert tokenizer("Hello World").input_ids == [101, 7592, 2088, 102]
    assert tokenizer.truncation_side == "left"


def test_wrong_vocabulary_is_refused(tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n")
    with pytest.raises(ConfigError, match="not the bert-base-uncased vocabulary"):
        load_qformer_tokenizer(vocab)


def test_real_vision_and_qformer_dimensions_run():
    """EVA at its real geometry (224 px, patch 14, width 1408, 16 heads of 88, MLP 6144) truncated to 2 blocks, with
    a small Q-Former and LLM (the original tiny fixture's configuration): one token per 224-px frame."""
    from etchat.model import build_model, original_tiny_config

    torch.manual_seed(0)
    model = build_model(original_tiny_config(3)).eval()
    tower = model.model.vision_tower.vision_tower
    assert (tower.pos_embed.shape, tower.blocks[0].mlp.fc1.out_features) == ((1, 257, 1408), 6144)
    assert tower.blocks[0].attn.head_dim == 88
    ids = torch.tensor([[1, 5, -200, 7, 500, 8]])
    frames = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(input_ids=ids, frames=[frames], queries=[["what happens at <vid>?"]], src=[[1.0]])
    assert out.logits.shape == (1, 6 - 1 + 2, 512)
