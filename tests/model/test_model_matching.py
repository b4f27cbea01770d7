"""Matching loss and LM loss against a hand computation; `<vid>` input embeddings; gradient flow."""

from __future__ import annotations

import math

import pytest
import torch

from etchat.model import IGNORE_INDEX
from etchat.model.matching import sample_matching_loss


def hand_soft_ce(g: torch.Tensor, f: torch.Tensor, times: list[float], alpha: float) -> float:
    """-sum_i alpha^-|i - t| log softmax_i(g.f / sqrt(d)), averaged over the queries, with plain loops."""
    g, f = g.detach(), f.detach()
    num_frames, dim = f.shape
    total = 0.0
    for j, t in enumerate(times):
        t = min(max(t, 0.0), num_frames - 1)
        logits = [float(g[j] @ f[i]) / math.sqrt(dim) for i in range(num_frames)]
        top = max(logits)
        log_z = top + math.log(sum(math.exp(x - top) for x in logits))
        total += -sum(alpha ** (-abs(i - t)) * (logits[i] - log_z) for i in range(num_frames))
    return total / len(times)


def test_sample_matching_loss_matches_the_formula():
    generator = torch.Generator().manual_seed(0)
    g, f = torch.randn(3, 16, generator=generator), torch.randn(9, 16, generator=generator)
    times = [0.0, 4.4, 11.0]  # unrounded, and one beyond the last frame (clamped to 8)
    loss = sample_matching_loss(g, f, torch.tensor(times), alpha=2.0)
    assert math.isclose(loss.item(), hand_soft_ce(g, f, times, 2.0), rel_tol=1e-5)


def build_batch(tokenizer, encode, make_frames):
    answer_a = "The red square appears from <vid> to <vid> seconds.<|end|>"
    prompt_a = "<|user|>\n<image>\nWhen does the red square appear?<|end|>\n<|assistant|>\n"
    prompt_b = "<|user|>\n<image>\nWhat happens at <vid> seconds?<|end|>\n<|assistant|>\n"
    answer_b = "A blue circle moves left.<|end|>"
    rows, labels = [], []
    for prompt, answer in ((prompt_a, answer_a), (prompt_b, answer_b)):
        p, full = encode(prompt), encode(prompt + answer)
        rows.append(full)
        labels.append([IGNORE_INDEX] * len(p) + full[len(p) :])
    length = max(map(len, rows))
    ids = torch.full((2, length), tokenizer.pad_token_id)
    lab = torch.full((2, length), IGNORE_INDEX)
    mask = torch.zeros((2, length), dtype=torch.long)
    for b, (row, label) in enumerate(zip(rows, labels, strict=True)):
        ids[b, : len(row)], lab[b, : len(row)], mask[b, : len(row)] = torch.tensor(row), torch.tensor(label), 1
    frames = [make_frames(7, seed=1), make_frames(5, seed=2)]
    queries = [["When does the red square appear?"], ["What happens at <vid> seconds?"]]
    return dict(
        input_ids=ids,
        attention_mask=mask,
        labels=lab,
        frames=frames,
        queries=queries,
        src=[None, [3.0]],
        tgt=[[1.0, 4.6], None],
    )


def test_forward_losses_match_a_hand_computation(make_model, tokenizer, encode, make_frames, vid_id):
    model = make_model(fan_in_heads=True)  # bigger logits make the comparison meaningful
    batch = build_batch(tokenizer, encode, make_frames)
    # Independent taps: the outputs of the last two decoder layers (not the model's own pre-hooks).
    taps = {}
    layers = model.model.layers
    handles = [
        layers[-2].register_forward_hook(lambda m, a, o: taps.__setitem__("second_last", o)),
        layers[-1].register_forward_hook(lambda m, a, o: taps.__setitem__("last", o)),
    ]
    with torch.no_grad():
        out = model(**batch)
    for h in handles:
        h.remove()

    # LM loss: token mean over all supervised next tokens of the batch (frames and prompt excluded).
    ids0 = batch["input_ids"][0].tolist()
    image_at = ids0.index(-200)
    num_frames = 7
    expanded_labels = []
    for b in range(2):
        lab = batch["labels"][b][batch["attention_mask"][b].bool()].tolist()
        frames = batch["frames"][b].shape[0]
        at = batch["input_ids"][b].tolist().index(-200)
        expanded_labels.append(lab[:at] + [IGNORE_INDEX] * frames + lab[at + 1 :])
    nll, count = 0.0, 0
    for b, lab in enumerate(expanded_labels):
        log_probs = out.logits[b].float().log_softmax(-1)
        for pos in range(len(lab) - 1):
            if lab[pos + 1] != IGNORE_INDEX:
                nll -= float(log_probs[pos, lab[pos + 1]])
                count += 1
    assert math.isclose(out.lm_loss.item(), nll / count, rel_tol=1e-5)

    # Matching loss: only sample 0 has targets; frames at [image_at, image_at + 7), queries at the positions
    # whose next label is <vid>.
    lab0 = expanded_labels[0]
    query_pos = [p for p in range(len(lab0) - 1) if lab0[p + 1] == vid_id]
    assert len(query_pos) == 2
    f = model.frm_head(taps["last"][0, image_at : image_at + num_frames])
    g = model.vid_head(taps["second_last"][0, query_pos])
    expected = hand_soft_ce(g, f, [1.0, 4.6], model.config.alpha)
    assert math.isclose(out.match_loss.item(), expected, rel_tol=1e-5)
    assert math.isclose(out.loss.item(), out.lm_loss.item() + out.match_loss.item(), rel_tol=1e-6)


def test_vid_embeddings_carry_the_frame_token(make_model, tokenizer, encode, make_frames):
    model = make_model()
    batch = build_batch(tokenizer, encode, make_frames)
    with torch.no_grad():
        base = model(**batch).logits
        moved = model(**{**batch, "tgt": [[1.0, 2.0], None]}).logits
    ids0 = batch["input_ids"][0].tolist()
    at = ids0.index(-200)
    expanded = ids0[:at] + [-200] * 7 + ids0[at + 1 :]
    second_vid = [i for i, x in enumerate(expanded) if x == model.config.match_token_id][1]
    # Changing the second target (4.6 -> 2.0, frame 5 -> 2) changes the logits from that <vid> on, not before.
    torch.testing.assert_close(base[0, :second_vid], moved[0, :second_vid], rtol=0, atol=0)
    assert not torch.allclose(base[0, second_vid], moved[0, second_vid])
    torch.testing.assert_close(base[1], moved[1], rtol=0, atol=0)


def test_gradients_reach_every_trainable_part(make_model, tokenizer, encode, make_frames):
    model = make_model().train()
    out = model(**build_batch(tokenizer, encode, make_frames))
    out.loss.backward()
    for name in (
        "frm_head.1.weight",
        "vid_head.3.weight",
        "model.qformer_query",
        "model.qformer_v_proj.1.weight",
        "model.qformer_bert.bert.encoder.layer.0.crossattention.self.key.weight",
        "lm_head.weight",
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert model.get_parameter("model.vision_tower.vision_tower.blocks.0.attn.qkv.weight").grad is None


def test_batches_without_targets_or_videos_keep_parameters_in_the_graph(make_model, tokenizer, encode):
    model = make_model().train()
    row = encode("<|user|>\nHello<|end|>\n<|assistant|>\nHi there.<|end|>")
    ids = torch.tensor([row])
    labels = ids.clone()
    labels[0, :5] = IGNORE_INDEX
    out = model(input_ids=ids, labels=labels)  # text only: no frames, no targets
    assert out.match_loss is None
    out.loss.backward()
    for name in ("frm_head.1.weight", "vid_head.1.weight", "model.qformer_query", "model.qformer_k_proj.1.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.count_nonzero(grad) == 0, name


@pytest.mark.parametrize("reentrant", [True, False])
def test_gradient_checkpointing_gives_the_same_gradients(make_model, tokenizer, encode, make_frames, reentrant):
    grads = []
    for checkpointing in (False, True):
        model = make_model(seed=3).train()
        if checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": reentrant})
            assert model.model.layers[-1].gradient_checkpointing
        out = model(**build_batch(tokenizer, encode, make_frames))
        out.loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in ("frm_head.1.weight", "vid_head.1.weight", "model.layers.0.self_attn.qkv_proj.weight"):
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-6, rtol=1e-5)


def test_loss_normalisation_is_pinned(make_model, tokenizer, encode, make_frames):
    """The HF Trainer must not rescale the loss by num_items_in_batch (it would shift the LM/matching weight)."""
    model = make_model()
    assert model.accepts_loss_kwargs is False  # read by transformers.Trainer
    with pytest.raises(ValueError, match="num_items_in_batch"):
        model(**build_batch(tokenizer, encode, make_frames), num_items_in_batch=torch.tensor(7))
    with pytest.raises(TypeError, match="unexpected arguments"):
        model(**build_batch(tokenizer, encode, make_frames), image=[make_frames(2, seed=0)])
