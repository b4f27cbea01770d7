"""Batched generation with `<vid>` matching (spec §2.3), and `detokenize`.

At every step the state that emits a token is also matched against the frame embeddings (`vid_head` on the
second-to-last layer's output, `frm_head` on the prefill's frame tokens): when the emitted token is `<vid>`, the
matched frame index is recorded and the next step's input is `embed(<vid>) + V[matched]`. Prompts are left-padded
after splicing, each sample gets its own positions and padding mask, so a sample's greedy output does not depend on
the rest of the batch (up to floating-point noise). All per-generation state is local to the call.

Defaults are greedy; the paper's decoding is `do_sample=True, temperature=0.2` (no top-k/top-p), plus a 1.2
repetition penalty that ignores `<vid>` for the multiple-choice tasks. `seeds` gives each sample its own random
generator so that sampled outputs do not depend on the batch either.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from .constants import MATCH_TOKEN
from .masks import decode_attention_mask, position_ids_from_valid

logger = logging.getLogger(__name__)

LogitsHook = Callable[[list[list[int]], torch.Tensor], torch.Tensor]


@dataclass
class ETChatGeneration:
    """Generated token ids per sample (stop token included when emitted) and the frame matched by each `<vid>`."""

    sequences: list[list[int]]
    matched_frames: list[list[int]] = field(default_factory=list)  # frame index per <vid>, in order (-1: no video)
    vid_positions: list[list[int]] = field(default_factory=list)  # index of each <vid> in `sequences[b]`
    match_probs: list[list[torch.Tensor]] | None = None  # softmax over frames for each <vid> (when asked)


def _as_id_list(value: int | Sequence[int] | None) -> list[int]:
    if value is None:
        return []
    return [int(value)] if isinstance(value, int) else [int(v) for v in value]


def _pad_prompts(
    input_ids: torch.Tensor | Sequence[torch.Tensor | Sequence[int]], attention_mask: torch.Tensor | None, pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(input_ids, torch.Tensor):
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        return input_ids, mask
    rows = [torch.as_tensor(r, dtype=torch.long) for r in input_ids]
    length = max(r.numel() for r in rows)
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, : row.numel()] = row
        mask[b, : row.numel()] = 1
    return ids, mask


def _filter_top_k_top_p(scores: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    if top_k is not None and 0 < top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False, dim=-1)
        cumulative = sorted_scores.softmax(-1).cumsum(-1)
        remove_sorted = cumulative <= (1 - top_p)
        remove_sorted[..., -1] = False  # keep at least the best token
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        scores = scores.masked_fill(remove, float("-inf"))
    return scores


@torch.no_grad()
def generate(
    model: Any,
    input_ids: torch.Tensor | Sequence[torch.Tensor | Sequence[int]],
    frames: Sequence[torch.Tensor | None] | None = None,
    queries: Sequence[Sequence[str] | None] | None = None,
    src: Sequence[Sequence[float] | None] | None = None,
    attention_mask: torch.Tensor | None = None,
    *,
    max_new_tokens: int = 2048,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float | None = None,
    penalty_exclude_ids: Sequence[int] | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    seeds: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    logits_processor: LogitsHook | None = None,
    vision_chunk_size: int | None = None,
    return_match_probs: bool = False,
) -> ETChatGeneration:
    """Generate for a batch of prompts, each with its video (or None).

    Args:
        input_ids: prompts (`[B, L]` with `attention_mask`, or a list of unpadded id sequences), with
            `IMAGE_TOKEN_INDEX` where the frames go.
        frames / queries / src: as in `forward` (src: seconds of the `<vid>`s of the prompt).
        repetition_penalty: divides positive / multiplies negative logits of tokens already present in the
            prompt or the output, except `penalty_exclude_ids` (default: `<vid>`) and the frame placeholder.
        eos_token_id: stop ids (default: the generation config's, else the model config's).
        seeds: one seed per sample for sampling (batch-independent); else `generator` for the whole batch.
        logits_processor: `f(histories, scores) -> scores` applied after the penalty, before sampling.
    """
    config = model.config
    eos_ids = _as_id_list(eos_token_id)
    if not eos_ids:
        eos_ids = _as_id_list(getattr(getattr(model, "generation_config", None), "eos_token_id", None))
    if not eos_ids:
        eos_ids = _as_id_list(config.eos_token_id)
    if pad_token_id is None:
        pad_token_id = config.pad_token_id if config.pad_token_id is not None else (eos_ids[0] if eos_ids else 0)
    match_id = model.match_token_id
    device = model.lm_head.weight.device

    ids, mask = _pad_prompts(input_ids, attention_mask, pad_token_id)
    ids, mask = ids.to(device), mask.to(device)
    batch_size = ids.shape[0]
    if seeds is not None and len(seeds) != batch_size:
        raise ValueError(f"{len(seeds)} seeds for a batch of {batch_size}")
    generators = None
    if do_sample and seeds is not None:
        generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    visual = model.encode_frames(frames, queries, vision_chunk_size) if frames is not None else [None] * batch_size
    times = None
    if match_id is not None:
        times = [list(s or []) for s in (src or [None] * batch_size)]
    batch = model.splice(ids, mask, None, visual, times, padding_side="left")
    longest = max(batch.lengths) + max_new_tokens
    if longest > config.max_position_embeddings:
        # The original has no cap either (a 30-min video is ~1800 frame tokens); quality degrades past the context.
        logger.warning(
            "prompt + new tokens = %d positions exceeds the model's %d", longest, config.max_position_embeddings
        )

    # A cache without the config: with Phi-3's sliding_window set, a config-built cache would drop old keys.
    cache = DynamicCache()
    outputs, states = model.run_backbone(batch, capture=match_id is not None, cache=cache)
    logits = model.lm_head(outputs.last_hidden_state[:, -1]).float()
    frame_embeds: list[torch.Tensor | None] = [None] * batch_size
    vid_states = states.before_last_layer[:, -1] if match_id is not None else None
    if match_id is not None:
        for b, span in enumerate(batch.last_block):
            if span is not None:
                frame_embeds[b] = model.frm_head(states.before_norm[b, span[0] : span[1]]).float()

    positions = position_ids_from_valid(batch.valid)[:, -1] + 1
    valid_keys = batch.valid
    exclude = set(_as_id_list(penalty_exclude_ids)) if penalty_exclude_ids is not None else set(_as_id_list(match_id))
    vocab = logits.shape[-1]
    present = None
    if repetition_penalty is not None and repetition_penalty != 1.0:
        # Tokens already in the prompt (text only: not the frames) or the output, as the original's processor.
        present = torch.zeros(batch_size, vocab, dtype=torch.bool, device=device)
        keep = batch.token_ids >= 0
        for token in exclude:
            keep &= batch.token_ids != token
        rows = torch.arange(batch_size, device=device)[:, None].expand_as(keep)
        present[rows[keep], batch.token_ids[keep]] = True

    histories: list[list[int]] = [[] for _ in range(batch_size)]
    matched: list[list[int]] = [[] for _ in range(batch_size)]
    vid_positions: list[list[int]] = [[] for _ in range(batch_size)]
    probs_out: list[list[torch.Tensor]] | None = [[] for _ in range(batch_size)] if return_match_probs else None
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    embed = model.get_input_embeddings()

    for step in range(max_new_tokens):
        scores = logits
        if present is not None:
            penalised = torch.where(scores < 0, scores * repetition_penalty, scores / repetition_penalty)
            scores = torch.where(present, penalised, scores)
        if logits_processor is not None:
            scores = logits_processor(histories, scores)
        if do_sample:
            scores = _filter_top_k_top_p(scores / temperature, top_k, top_p)
            probs = scores.softmax(-1)
            if generators is not None:
                tokens = torch.cat([torch.multinomial(probs[b], 1, generator=g) for b, g in enumerate(generators)])
            else:
                tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            tokens = scores.argmax(-1)
        active = ~finished
        tokens = torch.where(active, tokens, torch.full_like(tokens, pad_token_id))
        is_vid = (tokens == match_id) & active if match_id is not None else torch.zeros_like(active)
        query = model.vid_head(vid_states).float() if bool(is_vid.any()) else None

        # One host transfer per step, then plain Python bookkeeping.
        feedback = torch.zeros(batch_size, batch.inputs_embeds.shape[-1], device=device)
        step_rows = zip(tokens.tolist(), active.tolist(), is_vid.tolist(), strict=True)
        for b, (token, was_active, vid_now) in enumerate(step_rows):
            if not was_active:
                continue
            histories[b].append(token)
            if vid_now:
                if frame_embeds[b] is None:
                    logger.warning("sample %d emitted <vid> without a video; matched frame -1", b)
                    matched[b].append(-1)
                else:
                    sim = query[b] @ frame_embeds[b].t()
                    frame = int(sim.argmax())
                    matched[b].append(frame)
                    feedback[b] = batch.last_block_tokens[b][frame].float()
                    if probs_out is not None:
                        probs_out[b].append(sim.softmax(0).cpu())
                vid_positions[b].append(len(histories[b]) - 1)
            if token in eos_ids:
                finished[b] = True
        if present is not None:
            add = active.clone()
            for token in exclude:
                add &= tokens != token
            present[torch.arange(batch_size, device=device)[add], tokens[add]] = True
        if bool(finished.all()) or step == max_new_tokens - 1:
            break

        inputs = embed(tokens[:, None])
        inputs = inputs + feedback[:, None].to(inputs.dtype)
        valid_keys = torch.cat((valid_keys, torch.ones(batch_size, 1, dtype=torch.bool, device=device)), 1)
        step_mask = decode_attention_mask(valid_keys, inputs.dtype)
        out, step_states = model.backbone_pass(inputs, step_mask, positions[:, None], match_id is not None, cache)
        logits = model.lm_head(out.last_hidden_state[:, -1]).float()
        if match_id is not None:
            vid_states = step_states.before_last_layer[:, -1]
        positions = positions + 1

    return ETChatGeneration(histories, matched, vid_positions, probs_out)


def vid_texts(
    matched_frames: Sequence[int],
    frame_times: Sequence[float] | None = None,
    time_format: Callable[[float], str] | None = None,
) -> list[str]:
    """What each `<vid>` is written as: its matched frame index, or with `frame_times` that frame's time (default
    format `{:g}` of the value rounded to 0.1 s); -1 (no frame to match) stays -1."""
    fmt = time_format or (lambda t: f"{round(t, 1):g}")
    return [str(f) if frame_times is None or f < 0 else fmt(float(frame_times[f])) for f in matched_frames]


def detokenize(
    tokenizer: Any,
    token_ids: Sequence[int],
    matched_frames: Sequence[int],
    frame_times: Sequence[float] | None = None,
    time_format: Callable[[float], str] | None = None,
    strip_suffixes: Sequence[str] = ("<|end|>", "<|endoftext|>"),
) -> str:
    """Decode generated ids and write each `<vid>` as its matched frame's time.

    Faithful default: the frame index itself (1 fps, so index k means k seconds). With `frame_times` (the real time
    of every sampled frame) the time of the matched frame is written instead, with `time_format` (default `{:g}`
    of the value rounded to 0.1 s). Trailing stop strings are removed.
    """
    text = tokenizer.decode(list(token_ids), skip_special_tokens=False).strip()
    parts = text.split(MATCH_TOKEN)
    if len(parts) - 1 != len(matched_frames):
        raise ValueError(f"{len(parts) - 1} {MATCH_TOKEN} in the text but {len(matched_frames)} matched frames")
    values = vid_texts(matched_frames, frame_times, time_format)
    out = parts[0] + "".join(v + p for v, p in zip(values, parts[1:], strict=True))
    changed = True
    while changed:
        changed = False
        for suffix in strip_suffixes:
            if suffix and out.endswith(suffix):
                out = out[: -len(suffix)].rstrip()
                changed = True
    return out
