"""Frame tokens attend to each other both ways exactly when `bi_attention` is on; text stays causal."""

from __future__ import annotations

import pytest
import torch

from etchat.model.masks import allowed_attention, build_attention_mask


def test_mask_structure():
    valid = torch.tensor([[False, True, True, True, True, True]])
    block = torch.tensor([[-1, -1, 0, 0, 0, -1]])
    bi = allowed_attention(valid, block, bi_attention=True)[0]
    causal = allowed_attention(valid, block, bi_attention=False)[0]
    # Frames 2..4 see each other both ways only with bi attention.
    assert bi[2, 4] and bi[3, 4] and not causal[2, 4]
    # Text is causal in both; nobody attends to the padding (except the pad row to itself).
    assert not bi[1, 2] and not bi[5, 0] and bi[5, 4] and bi[0, 0]
    assert torch.equal(
        bi & ~causal,
        torch.zeros_like(bi).index_put_((torch.tensor([2, 2, 3]), torch.tensor([3, 4, 4])), torch.tensor(True)),
    )
    additive = build_attention_mask(valid, block, True, torch.float16)
    assert additive.shape == (1, 1, 6, 6) and additive[0, 0, 2, 4] == 0
    assert additive[0, 0, 1, 2] == torch.finfo(torch.float16).min


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
@pytest.mark.parametrize("bi_attention", [True, False])
def test_first_frame_sees_later_frames_only_with_bi_attention(make_model, make_frames, encode, attn, bi_attention):
    model = make_model(bi_attention=bi_attention)
    model.set_attn_implementation(attn)
    assert model.config._attn_implementation == attn
    prompt = encode("<|user|>\n<image>\nWhat happens?<|end|>\n<|assistant|>\n")
    ids = torch.tensor([prompt])
    start = prompt.index(-200)
    frames = make_frames(6, seed=7)
    changed = frames.clone()
    changed[-1] += 2.0  # only the last frame differs (its token changes, the others do not)
    queries = [["What happens?"]]

    with torch.no_grad():
        a = model(input_ids=ids, frames=[frames], queries=queries).logits[0]
        b = model(input_ids=ids, frames=[changed], queries=queries).logits[0]
    first_frame, last_frame = start, start + 5
    # Text before the video never sees it; text after it sees every frame in both modes.
    torch.testing.assert_close(a[:start], b[:start], rtol=0, atol=0)
    assert not torch.allclose(a[last_frame + 1 :], b[last_frame + 1 :])
    if bi_attention:
        assert (a[first_frame] - b[first_frame]).abs().max() > 1e-4
    else:
        torch.testing.assert_close(a[first_frame:last_frame], b[first_frame:last_frame], rtol=0, atol=0)


def test_eager_and_sdpa_give_the_same_logits(make_model, make_frames, encode):
    model = make_model()
    ids = torch.tensor([encode("<|user|>\n<image>\nWhen?<|end|>\n<|assistant|>\n")])
    kwargs = dict(input_ids=ids, frames=[make_frames(4, seed=1)], queries=[["When?"]])
    with torch.no_grad():
        model.set_attn_implementation("eager")
        eager = model(**kwargs).logits
        model.set_attn_implementation("sdpa")
        sdpa = model(**kwargs).logits
    torch.testing.assert_close(eager, sdpa, atol=1e-5, rtol=1e-4)
