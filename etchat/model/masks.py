"""Explicit attention masks for the LLM (spec §1.7), passed to the HF backbone as a 4-D tensor.

transformers 5 uses a 4-D `attention_mask` as given (no private mask builder is overridden). The mask is additive
(0 = may attend, dtype minimum = masked), which both the eager and the sdpa attention of transformers accept.
Text is causal; with `bi_attention` the tokens of one frame block also see each other in both directions.
Every position sees itself, so a padded row never has all of its keys masked (no NaN in the softmax).
"""

from __future__ import annotations

import torch


def allowed_attention(valid: torch.Tensor, frame_block: torch.Tensor, bi_attention: bool) -> torch.Tensor:
    """Boolean `[B, L, L]` (query, key): causal over valid keys, plus the frame blocks both ways when asked.

    `valid`: `[B, L]` bool, False at padding. `frame_block`: `[B, L]` long, the index of the frame block a
    position belongs to, -1 for text.
    """
    length = valid.shape[1]
    idx = torch.arange(length, device=valid.device)
    allowed = (idx[None, :] <= idx[:, None])[None] & valid[:, None, :]
    if bi_attention:
        same_block = (frame_block[:, :, None] == frame_block[:, None, :]) & (frame_block[:, :, None] >= 0)
        allowed = allowed | (same_block & valid[:, None, :] & valid[:, :, None])
    return allowed | torch.eye(length, dtype=torch.bool, device=valid.device)[None]


def to_additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean `[B, Q, K]` -> additive `[B, 1, Q, K]` in `dtype`."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None]


def build_attention_mask(
    valid: torch.Tensor, frame_block: torch.Tensor, bi_attention: bool, dtype: torch.dtype
) -> torch.Tensor:
    """The `[B, 1, L, L]` additive mask of a full (prefill or training) pass."""
    return to_additive(allowed_attention(valid, frame_block, bi_attention), dtype)


def decode_attention_mask(valid_keys: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The `[B, 1, 1, K]` additive mask of one decoding step (the new token is last and valid)."""
    return to_additive(valid_keys[:, None, :], dtype)


def position_ids_from_valid(valid: torch.Tensor) -> torch.Tensor:
    """Contiguous positions over valid tokens (0 for leading padding), as if each sample were alone."""
    return (valid.long().cumsum(-1) - 1).clamp(min=0)
