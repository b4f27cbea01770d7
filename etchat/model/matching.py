"""Timestamps as embedding matching (spec §1.5, §2.2, §2.3).

`frm_head` embeds each frame token (from the last decoder layer, before the final norm); `vid_head` embeds the
hidden state that predicts a `<vid>` token (from the output of the second-to-last layer). Their dot product picks
a frame. Training uses a soft-target cross-entropy with target `alpha^-|i - t|` and logits scaled by `1/sqrt(d)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class MatchingHead(nn.Sequential):
    """`LayerNorm(d) -> Linear(d, d/2) -> GELU -> Linear(d/2, d)`; keys `.0`, `.1`, `.3` as released."""

    def __init__(self, hidden_size: int, fan_in_init: bool = False) -> None:
        super().__init__(
            nn.LayerNorm(hidden_size),
            nn.Linear(hidden_size, hidden_size // 2),
            nn.GELU(),
            nn.Linear(hidden_size // 2, hidden_size),
        )
        # Read by the model's weight init: std 1/sqrt(fan_in) instead of initializer_range (an option).
        for module in (self[1], self[3]):
            module.etchat_fan_in_init = fan_in_init


def soft_match_target(num_frames: int, times: torch.Tensor, alpha: float) -> torch.Tensor:
    """`w[j, i] = alpha ** -|i - clamp(t_j, 0, T-1)|`, unnormalised (peak 1), t not rounded."""
    t = times.clamp(0, num_frames - 1)
    idx = torch.arange(num_frames, device=times.device, dtype=t.dtype)
    return torch.pow(torch.as_tensor(alpha, dtype=t.dtype, device=t.device), -(idx[None] - t[:, None]).abs())


def match_logits(vid_embeds: torch.Tensor, frame_embeds: torch.Tensor) -> torch.Tensor:
    """`[J, d] x [T, d] -> [J, T]` similarity divided by sqrt(d), in float32."""
    vid, frm = vid_embeds.float(), frame_embeds.float()
    return vid @ frm.t() / vid.shape[-1] ** 0.5


def sample_matching_loss(
    vid_embeds: torch.Tensor, frame_embeds: torch.Tensor, times: torch.Tensor, alpha: float
) -> torch.Tensor:
    """One sample's loss: mean over its `<vid>` queries of `-sum_i w_ji log softmax_i(s_j)`."""
    logits = match_logits(vid_embeds, frame_embeds)
    target = soft_match_target(frame_embeds.shape[0], times.to(logits.device, torch.float32), alpha)
    return F.cross_entropy(logits, target)


def matching_loss(per_sample: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """Mean over the samples that have targets (the original's `loss_match / avg_factor`)."""
    if not per_sample:
        return None
    return torch.stack(list(per_sample)).mean()
