"""Batched generation with `<vid>` decoding: batch = batch of 1, teacher forcing agrees, feedback is used."""

from __future__ import annotations

import pytest
import torch
from helpers import force_vid

from etchat.model import ETChatGeneration, detokenize


@pytest.fixture
def setup(make_model, make_frames, encode):
    model = make_model(seed=1)
    prompts = [
        encode("<|user|>\n<image>\nWhen does the red square appear?<|end|>\n<|assistant|>\n"),
        encode("<|user|>\n<image>\nWhat happens at <vid> seconds in the video?<|end|>\n<|assistant|>\n"),
        encode("<image>\nDescribe the video."),
    ]
    frames = [make_frames(6, seed=1), make_frames(9, seed=2), make_frames(3, seed=3)]
    queries = [["When does the red square appear?"], ["What happens at <vid> seconds in the video?"], ["Describe."]]
    src = [None, [5.0], None]
    return model, prompts, frames, queries, src


def test_batch_outputs_equal_batch_of_one(setup, tokenizer, vid_id):
    model, prompts, frames, queries, src = setup
    hook = force_vid(vid_id, tokenizer.eos_token_id, end=7)
    batch = model.generate(prompts, frames, queries, src, max_new_tokens=12, logits_processor=hook)
    assert isinstance(batch, ETChatGeneration)
    for b in range(3):
        one = model.generate(
            [prompts[b]], [frames[b]], [queries[b]], [src[b]], max_new_tokens=12, logits_processor=hook
        )
        assert one.sequences[0] == batch.sequences[b]
        assert one.matched_frames[0] == batch.matched_frames[b]
        assert one.vid_positions[0] == batch.vid_positions[b] == [1, 3]
        assert batch.sequences[b][-1] == tokenizer.eos_token_id and len(batch.sequences[b]) == 8
        assert all(0 <= f < frames[b].shape[0] for f in batch.matched_frames[b])


def test_generation_agrees_with_teacher_forcing(setup, tokenizer, vid_id):
    model, prompts, frames, queries, src = setup
    b = 1
    out = model.generate(
        [prompts[b]],
        [frames[b]],
        [queries[b]],
        [src[b]],
        max_new_tokens=8,
        logits_processor=force_vid(vid_id, tokenizer.eos_token_id, end=7),
        return_match_probs=True,
    )
    generated, matched = out.sequences[0], out.matched_frames[0]
    # Re-run the whole sequence in one pass, the generated <vid>s getting their matched frames (as tgt).
    ids = torch.tensor([prompts[b] + generated])
    with torch.no_grad():
        forced = model(
            input_ids=ids,
            frames=[frames[b]],
            queries=[queries[b]],
            src=[src[b]],
            tgt=[[float(f) for f in matched]],
            return_match_logits=True,
        )
    start = len(prompts[b]) - 1 + frames[b].shape[0] - 1  # the state that predicts the first new token
    predicted = forced.logits[0, start : start + len(generated)].argmax(-1).tolist()
    steered = {1, 3, 7}  # steps where the processor overrode the model
    assert [p for i, p in enumerate(predicted) if i not in steered] == [
        g for i, g in enumerate(generated) if i not in steered
    ]
    # The matching of each generated <vid> (and of the prompt's <vid> first) is the argmax of the same logits.
    assert forced.match_logits[0].argmax(-1).tolist()[1:] == matched
    # Same probabilities too (the original's unscaled softmax): the second <vid> is matched from states that
    # saw the frame token fed back after the first one, so this fails if generation skips the feedback.
    scale = model.config.hidden_size**0.5
    probs = (forced.match_logits[0][1:] * scale).softmax(-1)
    torch.testing.assert_close(torch.stack(out.match_probs[0]), probs, atol=1e-5, rtol=1e-4)


def test_matched_frame_is_fed_back(setup, tokenizer, vid_id):
    """Zeroing the frame tokens fed back after a generated <vid> must change what comes next."""
    model, prompts, frames, queries, src = setup
    hook = force_vid(vid_id, tokenizer.eos_token_id, end=7)
    out = model.generate([prompts[0]], [frames[0]], [queries[0]], max_new_tokens=8, logits_processor=hook)
    ids = torch.tensor([prompts[0] + out.sequences[0]])
    with torch.no_grad():
        right = model(
            input_ids=ids, frames=[frames[0]], queries=[queries[0]], tgt=[[float(f) for f in out.matched_frames[0]]]
        ).logits
        other = [float((f + 2) % frames[0].shape[0]) for f in out.matched_frames[0]]
        wrong = model(input_ids=ids, frames=[frames[0]], queries=[queries[0]], tgt=[other]).logits
    first_vid = len(prompts[0]) - 1 + frames[0].shape[0] + 1
    assert torch.equal(right[0, :first_vid], wrong[0, :first_vid])
    assert not torch.allclose(right[0, first_vid:], wrong[0, first_vid:])


def test_sampling_with_seeds_is_batch_independent(setup):
    model, prompts, frames, queries, src = setup
    kwargs = dict(max_new_tokens=6, do_sample=True, temperature=0.7, top_p=0.9)
    batch = model.generate(prompts, frames, queries, src, seeds=[11, 12, 13], **kwargs)
    again = model.generate(prompts, frames, queries, src, seeds=[11, 12, 13], **kwargs)
    single = model.generate([prompts[2]], [frames[2]], [queries[2]], [src[2]], seeds=[13], **kwargs)
    assert batch.sequences == again.sequences
    assert single.sequences[0] == batch.sequences[2]


def test_repetition_penalty_discourages_repeats(setup):
    model, prompts, frames, queries, src = setup
    plain = model.generate([prompts[0]], [frames[0]], [queries[0]], max_new_tokens=12)
    penalised = model.generate([prompts[0]], [frames[0]], [queries[0]], max_new_tokens=12, repetition_penalty=50.0)
    seq = penalised.sequences[0]
    # A huge penalty forbids every token already in the prompt or the output (<vid> excepted).
    assert not set(seq) & set(t for t in prompts[0] if t >= 0)
    assert len(set(seq)) == len(seq) or model.config.match_token_id in seq
    assert plain.sequences[0] != seq


def test_detokenize_fills_vid_with_times(tokenizer, vid_id):
    ids = tokenizer("From <vid> to <vid> seconds.<|end|>", add_special_tokens=False).input_ids
    assert ids.count(vid_id) == 2
    assert detokenize(tokenizer, ids, [3, 12]) == "From 3 to 12 seconds."
    times = [i * 1.02 for i in range(20)]  # real frame times differ slightly from the index
    assert detokenize(tokenizer, ids, [3, 12], frame_times=times) == "From 3.1 to 12.2 seconds."
    with pytest.raises(ValueError, match="matched frames"):
        detokenize(tokenizer, ids, [3])
