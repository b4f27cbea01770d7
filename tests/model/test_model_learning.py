"""End to end: the tiny demo model learns to point `<vid>` at the right frame (train, generate, detokenize)."""

from __future__ import annotations

import random

import pytest
import torch

from etchat.model import IMAGE_TOKEN_INDEX, build_model, detokenize, tiny_config_for

QUESTION = "When is the bright frame?"


@pytest.mark.slow
def test_tiny_model_learns_to_match_the_bright_frame(tokenizer):
    torch.manual_seed(0)
    rng = random.Random(0)
    config = tiny_config_for(
        tokenizer,
        "demo",
        fan_in_heads=True,
    )
    model = build_model(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    prompt = tokenizer("<|user|>\n").input_ids + [IMAGE_TOKEN_INDEX]
    prompt += tokenizer(f"\n{QUESTION}<|end|>\n<|assistant|>\n", add_special_tokens=False).input_ids
    answer = tokenizer("At <vid>.<|end|>", add_special_tokens=False).input_ids

    def clips(n: int) -> tuple[list[torch.Tensor], list[int]]:
        frames, times = [], []
        for _ in range(n):
            num_frames = rng.randint(8, 24)
            t = rng.randrange(num_frames)
            video = torch.randn(num_frames, 3, 32, 32) * 0.5
            video[t] += 1.5  # the event: one bright frame
            frames.append(video)
            times.append(t)
        return frames, times

    first = None
    for _ in range(100):
        frames, times = clips(16)
        out = model(
            input_ids=torch.tensor([prompt + answer] * 16),
            labels=torch.tensor([[-100] * len(prompt) + answer] * 16),
            frames=frames,
            queries=[[QUESTION]] * 16,
            tgt=[[float(t)] for t in times],
        )
        first = first if first is not None else out.match_loss.item()
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert out.match_loss.item() < first - 1.0

    model.eval()
    frames, times = clips(32)
    end = tokenizer.convert_tokens_to_ids("<|end|>")
    result = model.generate([prompt] * 32, frames, [[QUESTION]] * 32, max_new_tokens=6, eos_token_id=end)
    predicted = [m[0] if m else -1 for m in result.matched_frames]
    accuracy = sum(p == t for p, t in zip(predicted, times, strict=True)) / 32
    assert accuracy > 0.8, (accuracy, predicted, times)  # chance is about 1/16
    assert detokenize(tokenizer, result.sequences[0], result.matched_frames[0]) == f"At {predicted[0]}."
