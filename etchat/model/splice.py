"""Build the LLM input sequence: frame tokens spliced in at `<image>`, frame tokens added to `<vid>` (spec §2.1).

Each `IMAGE_TOKEN_INDEX` in a sample's `input_ids` is replaced by one frame block (`T` tokens, one per frame).
With matching on, the k-th `<vid>` of a sample gets `V[clamp(round(t_k), 0, T-1)]` added to its embedding, where
`t_k` is the k-th of `src + tgt` (seconds = frame index at 1 fps) and `V` the frame tokens of the block the
`<vid>` refers to (the next `<image>` after it, or the last one when none follows), as the original does.
Padding tokens of the text are dropped and each sample is then padded on the requested side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .constants import IGNORE_INDEX, IMAGE_TOKEN_INDEX

logger = logging.getLogger(__name__)


@dataclass
class SplicedBatch:
    """A padded batch of expanded sequences and where its frame blocks are."""

    inputs_embeds: torch.Tensor  # [B, L, d]
    valid: torch.Tensor  # [B, L] bool, False at padding
    frame_block: torch.Tensor  # [B, L] long, index of the frame block at each position, -1 for text/padding
    token_ids: torch.Tensor  # [B, L] long, text ids; IMAGE_TOKEN_INDEX at frames; IGNORE_INDEX at padding
    labels: torch.Tensor | None  # [B, L] long, IGNORE_INDEX at frames and padding
    last_block: list[tuple[int, int] | None]  # [start, end) of each sample's last frame block
    last_block_tokens: list[torch.Tensor | None]  # the frame tokens V of that block, [T, d]
    lengths: list[int]


def _vid_additions(
    ids: torch.Tensor,
    image_pos: torch.Tensor,
    visual: torch.Tensor | None,
    times: Sequence[float] | None,
    match_token_id: int,
    sample: int,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Positions of the `<vid>` tokens and the frame tokens to add to them, or None."""
    vid_pos = torch.nonzero(ids == match_token_id).flatten()
    if not times:
        if vid_pos.numel() and visual is not None:
            raise ValueError(
                f"sample {sample}: {vid_pos.numel()} <vid> token(s) in the input but no timestamps (src/tgt) for them"
            )
        return None
    if visual is None:
        raise ValueError(f"sample {sample}: timestamps given for <vid> tokens but the sample has no video")
    if vid_pos.numel() != len(times):
        raise ValueError(
            f"sample {sample}: {vid_pos.numel()} <vid> token(s) in the input but {len(times)} timestamps (src + tgt); "
            "was the text truncated?"
        )
    num_blocks, num_frames = visual.shape[:2]
    block = (image_pos[None, :] < vid_pos[:, None]).sum(1).clamp(max=num_blocks - 1)
    # The original rounds in the frame tokens' dtype (fp16 in practice) before indexing.
    frame = visual.new_tensor(list(times)).round().long().clamp(0, num_frames - 1)
    return vid_pos, visual[block, frame]


def splice_batch(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor | None,
    visual: Sequence[torch.Tensor | None],
    times: Sequence[Sequence[float] | None] | None,
    embed: Callable[[torch.Tensor], torch.Tensor],
    match_token_id: int | None,
    padding_side: str = "right",
    allow_missing_images: bool = False,
) -> SplicedBatch:
    """Expand `input_ids` `[B, L_text]` into embeddings with the frame blocks of `visual` (`[n_blocks, T, d]`).

    `match_token_id` None disables the `<vid>` additions (stages 1-2). `allow_missing_images` tolerates fewer
    `<image>` than blocks (the original only warns about this during training).
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    batch = input_ids.shape[0]
    if len(visual) != batch:
        raise ValueError(f"{len(visual)} videos for a batch of {batch}")
    text_valid = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    text_embeds = embed(input_ids.clamp(min=0))

    pieces: list[dict[str, torch.Tensor]] = []
    blocks: list[list[tuple[int, int]]] = []
    for b in range(batch):
        keep = text_valid[b]
        ids, emb = input_ids[b][keep], text_embeds[b][keep]
        lab = labels[b][keep] if labels is not None else None
        vis = visual[b]
        image_pos = torch.nonzero(ids == IMAGE_TOKEN_INDEX).flatten()
        num_blocks = 0 if vis is None else vis.shape[0]
        if image_pos.numel() and vis is None:
            raise ValueError(f"sample {b}: {image_pos.numel()} <image> token(s) but no frames")
        if vis is not None and image_pos.numel() != num_blocks:
            if not (allow_missing_images and image_pos.numel() < num_blocks):
                raise ValueError(
                    f"sample {b}: {image_pos.numel()} <image> token(s) but {num_blocks} frame block(s) (one per query)"
                )
            logger.warning("sample %d: %d <image> tokens for %d frame blocks", b, image_pos.numel(), num_blocks)

        if match_token_id is not None:
            sample_times = times[b] if times is not None else None
            added = _vid_additions(ids, image_pos, vis, sample_times, match_token_id, b)
            if added is not None:
                emb = emb.index_add(0, added[0], added[1].to(emb.dtype))

        parts: dict[str, list[torch.Tensor]] = {"emb": [], "ids": [], "lab": [], "blk": []}
        spans: list[tuple[int, int]] = []
        cursor, length = 0, 0
        for k, pos in enumerate(image_pos.tolist()):
            frames = vis[k].to(emb.dtype)
            parts["emb"] += [emb[cursor:pos], frames]
            parts["ids"] += [ids[cursor:pos], ids.new_full((frames.shape[0],), IMAGE_TOKEN_INDEX)]
            if lab is not None:
                parts["lab"] += [lab[cursor:pos], lab.new_full((frames.shape[0],), IGNORE_INDEX)]
            parts["blk"] += [ids.new_full((pos - cursor,), -1), ids.new_full((frames.shape[0],), k)]
            length += pos - cursor
            spans.append((length, length + frames.shape[0]))
            length += frames.shape[0]
            cursor = pos + 1
        parts["emb"].append(emb[cursor:])
        parts["ids"].append(ids[cursor:])
        if lab is not None:
            parts["lab"].append(lab[cursor:])
        parts["blk"].append(ids.new_full((ids.shape[0] - cursor,), -1))
        pieces.append({key: torch.cat(value) for key, value in parts.items() if value})
        blocks.append(spans)

    lengths = [p["emb"].shape[0] for p in pieces]
    max_len = max(lengths)
    hidden = text_embeds.shape[-1]
    valid = torch.zeros(batch, max_len, dtype=torch.bool, device=input_ids.device)
    block = torch.full((batch, max_len), -1, dtype=torch.long, device=input_ids.device)
    token_ids = torch.full((batch, max_len), IGNORE_INDEX, dtype=torch.long, device=input_ids.device)
    out_labels = torch.full_like(token_ids, IGNORE_INDEX) if labels is not None else None
    emb_rows = []
    last_block: list[tuple[int, int] | None] = []
    last_tokens: list[torch.Tensor | None] = []
    for b, piece in enumerate(pieces):
        n = lengths[b]
        offset = max_len - n if padding_side == "left" else 0
        sl = slice(offset, offset + n)
        pad = text_embeds.new_zeros(max_len - n, hidden)
        emb_rows.append(torch.cat((pad, piece["emb"])) if padding_side == "left" else torch.cat((piece["emb"], pad)))
        valid[b, sl] = True
        block[b, sl] = piece["blk"]
        token_ids[b, sl] = piece["ids"]
        if out_labels is not None:
            out_labels[b, sl] = piece["lab"]
        if blocks[b]:
            start, end = blocks[b][-1]
            last_block.append((start + offset, end + offset))
            last_tokens.append(visual[b][len(blocks[b]) - 1])
        else:
            last_block.append(None)
            last_tokens.append(None)
    return SplicedBatch(torch.stack(emb_rows), valid, block, token_ids, out_labels, last_block, last_tokens, lengths)
