"""Scaled dot-product attention used by the vision tower and the Q-Former.

"eager" reproduces the original (explicit softmax of q·kᵀ·scale in the module dtype); "sdpa" calls
`torch.nn.functional.scaled_dot_product_attention`, which is faster and numerically close.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ATTN_IMPLEMENTATIONS: tuple[str, ...] = ("eager", "sdpa")


def dot_product_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    scale: float,
    additive_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    implementation: str = "eager",
    scale_query: bool = True,
) -> torch.Tensor:
    """Attention over `[batch, heads, length, head_dim]` tensors; `additive_mask` broadcasts to the scores.

    `scale_query` mirrors where the originals apply the scale in eager mode: EVA scales q before q·kᵀ, BERT
    divides the scores after it (the same maths, different fp16 rounding).
    """
    if implementation == "sdpa":
        mask = None if additive_mask is None else additive_mask.to(query.dtype)
        return F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout_p, scale=scale)
    if implementation != "eager":
        raise ValueError(f"attention implementation {implementation!r}; allowed: {list(ATTN_IMPLEMENTATIONS)}")
    if scale_query:
        scores = torch.matmul(query * scale, key.transpose(-1, -2))
    else:
        scores = torch.matmul(query, key.transpose(-1, -2)) / (1.0 / scale)
    if additive_mask is not None:
        scores = scores + additive_mask.to(scores.dtype)
    probs = scores.softmax(dim=-1)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p, training=True)
    return torch.matmul(probs, value)
