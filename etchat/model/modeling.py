"""The E.T. Chat model: vision tower + frame compressor + an HF decoder + matching heads (spec §1-2).

Layout (parameter names as in the released checkpoints):
- `model` is the HF base decoder (`Phi3Model`, `LlamaModel` or `Qwen2Model`) extended with `vision_tower`,
  `qformer_bert`, `qformer_query`, `qformer_ln`, `qformer_proj`, `qformer_{q,k,v}_proj`;
- `lm_head`, and with `use_matching` the two matching heads `frm_head` and `vid_head`.

The wrapper builds `inputs_embeds`, an explicit 4-D attention mask and position ids, and calls the backbone's
public `forward`. It reads two hidden states the backbone does not return (the input of the last decoder layer and
the input of the final norm) through forward pre-hooks registered for the duration of one call, so no state stays
on the module between calls. The only HF method overridden besides `forward`/`generate` is `_init_weights`, the
documented hook for initialising the parameters a model adds.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, GenerationMixin
from transformers import initialization as init
from transformers.models.llama.modeling_llama import LlamaModel, LlamaPreTrainedModel
from transformers.models.phi3.modeling_phi3 import Phi3Model, Phi3PreTrainedModel
from transformers.models.qwen2.modeling_qwen2 import Qwen2Model, Qwen2PreTrainedModel
from transformers.utils import ModelOutput

from etchat.errors import ConfigError

from .config import ETChatFieldsConfig, ETChatLlamaConfig, ETChatPhi3Config, ETChatQwen2Config
from .constants import IGNORE_INDEX
from .masks import build_attention_mask, position_ids_from_valid
from .matching import MatchingHead, match_logits, matching_loss, sample_matching_loss
from .qformer import QFormer, QFormerEmbeddings, QFormerSpec, load_qformer_tokenizer
from .splice import SplicedBatch, splice_batch
from .vision import EVAAttention, EVAVisionTower, EVAVisionTransformer, VisionSpec

logger = logging.getLogger(__name__)

FrameInput = torch.Tensor | None


def vision_spec(config: ETChatFieldsConfig) -> VisionSpec:
    return VisionSpec(
        image_size=config.vision_image_size,
        patch_size=config.vision_patch_size,
        width=config.vision_width,
        depth=config.vision_depth,
        num_heads=config.vision_num_heads,
        mlp_hidden_size=config.vision_mlp_hidden_size,
    )


def qformer_spec(config: ETChatFieldsConfig) -> QFormerSpec:
    return QFormerSpec(
        hidden_size=config.qformer_hidden_size,
        num_hidden_layers=config.qformer_num_hidden_layers,
        num_attention_heads=config.qformer_num_attention_heads,
        intermediate_size=config.qformer_intermediate_size,
        vocab_size=config.qformer_vocab_size,
        max_position_embeddings=config.qformer_max_position_embeddings,
        dropout=config.qformer_dropout,
        encoder_width=config.vision_width,
        cross_attention_freq=config.qformer_cross_attention_freq,
    )


class ETChatInitMixin:
    """Initialisation of the parameters E.T. Chat adds to an HF model (runs for missing keys only)."""

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)  # type: ignore[misc]
        config = self.config  # type: ignore[attr-defined]
        if isinstance(module, EVAVisionTransformer):
            init.trunc_normal_(module.cls_token, std=0.02)
            init.trunc_normal_(module.pos_embed, std=0.02)
        elif isinstance(module, EVAAttention):
            init.zeros_(module.q_bias)
            init.zeros_(module.v_bias)
        elif isinstance(module, QFormerEmbeddings):
            init.copy_(module.position_ids, torch.arange(module.position_ids.shape[1]).expand((1, -1)))
        elif isinstance(module, nn.Linear) and getattr(module, "etchat_fan_in_init", False):
            init.normal_(module.weight, std=module.in_features**-0.5)
            init.zeros_(module.bias)
        elif isinstance(module, ETChatVisualMixin):
            init.normal_(module.qformer_query, std=config.qformer_initializer_range)


class ETChatVisualMixin:
    """Vision tower and frame compressor, added to an HF base decoder model (they live under `model.`)."""

    config: ETChatFieldsConfig

    def __init__(self, config: ETChatFieldsConfig) -> None:
        super().__init__(config)  # type: ignore[call-arg]  # the HF base decoder
        width, q_width = config.vision_width, config.qformer_hidden_size
        # A direct parameter: it comes first in the state dict, as in the released files.
        self.qformer_query = nn.Parameter(torch.zeros(1, config.qformer_num_query_tokens, q_width))
        # Initialised here: HF's post_init skips the already-initialised base model module it is attached to.
        nn.init.normal_(self.qformer_query, std=config.qformer_initializer_range)
        self.vision_tower = EVAVisionTower(vision_spec(config), trainable=config.vision_trainable)
        self.qformer_bert = QFormer(qformer_spec(config))
        self.qformer_ln = nn.LayerNorm(width)  # BLIP-2's ln_vision; feeds only the Q-Former's cross-attention
        self.qformer_proj = nn.Linear(q_width, width)
        self.qformer_q_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width))
        self.qformer_k_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width))
        self.qformer_v_proj = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, config.hidden_size))
        self.post_init()  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ Q-Former tokenizer (not a module, not saved)
    @property
    def qformer_tokenizer(self):
        tokenizer = self.__dict__.get("_qformer_tokenizer")
        if tokenizer is None:
            tokenizer = load_qformer_tokenizer(None, self.config.qformer_max_text_length)
            self.set_qformer_tokenizer(tokenizer)
        return tokenizer

    def set_qformer_tokenizer(self, tokenizer: Any) -> None:
        """Use `tokenizer` (e.g. `load_qformer_tokenizer(path)`) for the Q-Former's text."""
        if len(tokenizer) > self.config.qformer_vocab_size:
            raise ConfigError(
                f"Q-Former tokenizer has {len(tokenizer)} tokens but qformer_vocab_size is "
                f"{self.config.qformer_vocab_size}"
            )
        self.__dict__["_qformer_tokenizer"] = tokenizer

    def set_visual_attn_implementation(self, implementation: str) -> None:
        """'eager' (faithful) or 'sdpa' for the vision tower and the Q-Former."""
        self.vision_tower.set_attn_implementation(implementation)
        self.qformer_bert.set_attn_implementation(implementation)

    @property
    def visual_dtype(self) -> torch.dtype:
        return self.qformer_ln.weight.dtype

    # ------------------------------------------------------------------ compression
    def encode_patches(self, frames: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
        """`[T, 3, H, W]` frames -> `[T, num_patches, width]` patch features (CLS dropped), in the visual dtype."""
        features = self.vision_tower(frames, chunk_size=chunk_size)[:, 1:]
        return features.to(self.visual_dtype)

    def compress_frames(self, patches: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """One token per frame per text: `[T, N, C]` patches -> `[len(texts), T, hidden_size]` (spec §1.3)."""
        return self.compress_groups([(patches, texts)])[0]

    def compress_groups(self, groups: Sequence[tuple[torch.Tensor, Sequence[str]]]) -> list[torch.Tensor]:
        """`compress_frames` for several videos at once: one Q-Former/aggregator pass over all (text, frame) pairs.

        Per group, every text conditions every frame: the Q-Former sees `[queries ; text]` and cross-attends to
        `LN(X)`; the aggregator pools the raw `X` with the projected queries; `v_proj(mean(E + P))` is the token.
        Texts are padded to the longest of the call; padded keys are masked (BERT's -10000), as per sample.
        """
        device, dtype = self.qformer_ln.weight.device, self.visual_dtype
        all_texts = [t for _, texts in groups for t in texts]
        text = self.qformer_tokenizer(
            all_texts,
            padding="longest",
            truncation=True,
            max_length=self.config.qformer_max_text_length,
            return_tensors="pt",
        )
        x = torch.cat([p for p, _ in groups]).to(device=device, dtype=dtype)  # all frames of all groups
        # For each (group, text, frame) row: which text and which frame it pairs (text-major within a group).
        text_index, frame_index = [], []
        text_offset, frame_offset = 0, 0
        for patches, texts in groups:
            n_frames = patches.shape[0]
            for t in range(len(texts)):
                text_index += [text_offset + t] * n_frames
                frame_index += range(frame_offset, frame_offset + n_frames)
            text_offset += len(texts)
            frame_offset += n_frames
        rows_t = torch.tensor(text_index, device=device)
        rows_f = torch.tensor(frame_index, device=device)
        ids = text.input_ids.to(device)[rows_t]
        mask = text.attention_mask.to(device)[rows_t]
        queries = self.qformer_query.expand(len(text_index), -1, -1)
        hidden = self.qformer_bert(ids, mask, queries, self.qformer_ln(x)[rows_f])  # [rows, Q, Dq]
        # Aggregator: single-head attention pooling of the raw patches with the projected queries.
        p = self.qformer_proj(hidden)  # [rows, Q, C]
        q = self.qformer_q_proj(p)
        k = self.qformer_k_proj(x)[rows_f]
        x_rows = x[rows_f]
        att = (q @ k.transpose(-1, -2) / x.shape[-1] ** 0.5).softmax(-1)
        tokens = self.qformer_v_proj((att @ x_rows + p).mean(1))  # [rows, hidden]
        sizes = [len(texts) * patches.shape[0] for patches, texts in groups]
        return [
            chunk.view(len(texts), patches.shape[0], -1)
            for chunk, (patches, texts) in zip(tokens.split(sizes), groups, strict=True)
        ]

    def encode_frames(
        self,
        frames: Sequence[FrameInput],
        queries: Sequence[Sequence[str] | None] | None,
        chunk_size: int | None = None,
    ) -> list[torch.Tensor | None]:
        """Per sample, `[n_queries, T, hidden]` frame tokens (one block per human turn), or None without video.

        A frame tensor is `[T, 3, H, W]` pixels (normalised) or `[T, num_patches, width]` precomputed patch
        features. Pixels of all samples go through the vision tower together.
        """
        if queries is None or len(queries) != len(frames):
            raise ValueError("queries must give one list of question strings per sample with frames")
        if self.config.use_time_tag:
            # Unused in every released stage (spec §1.8); it would need the frame times in every call.
            raise ConfigError("config key 'use_time_tag' = True is not supported; allowed values: [False]")
        pixel = [f for f in frames if f is not None and f.dim() == 4]
        patches: Iterator[torch.Tensor] = iter(())
        if pixel:
            patches = iter(self.encode_patches(torch.cat(pixel), chunk_size).split([f.shape[0] for f in pixel]))
        groups: list[tuple[torch.Tensor, Sequence[str]]] = []
        for b, sample_frames in enumerate(frames):
            if sample_frames is None:
                continue
            if sample_frames.dim() not in (3, 4) or sample_frames.shape[0] == 0:
                raise ValueError(f"sample {b}: frames must be [T, 3, H, W] or [T, N, C] with T >= 1")
            feats = next(patches) if sample_frames.dim() == 4 else sample_frames
            texts = queries[b]
            if not texts:
                raise ValueError(f"sample {b}: frames without a query (one question string per human turn)")
            if isinstance(texts, str):
                raise ValueError(f"sample {b}: queries must be a list of strings per sample, got a string")
            groups.append((feats, texts))
        tokens = iter(self.compress_groups(groups)) if groups else iter(())
        return [None if f is None else next(tokens) for f in frames]


class ETChatPhi3Model(ETChatInitMixin, ETChatVisualMixin, Phi3Model):
    config: ETChatPhi3Config
    config_class = ETChatPhi3Config
    _no_split_modules = ["Phi3DecoderLayer", "EVABlock", "QFormerLayer"]


class ETChatLlamaModel(ETChatInitMixin, ETChatVisualMixin, LlamaModel):
    config: ETChatLlamaConfig
    config_class = ETChatLlamaConfig
    _no_split_modules = ["LlamaDecoderLayer", "EVABlock", "QFormerLayer"]


class ETChatQwen2Model(ETChatInitMixin, ETChatVisualMixin, Qwen2Model):
    config: ETChatQwen2Config
    config_class = ETChatQwen2Config
    _no_split_modules = ["Qwen2DecoderLayer", "EVABlock", "QFormerLayer"]


@dataclass
class ETChatCausalLMOutput(ModelOutput):
    """`loss = lm_loss + match_loss` (1:1); `match_logits[b]`: `[n_vid, T]` when asked for."""

    loss: torch.Tensor | None = None
    lm_loss: torch.Tensor | None = None
    match_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    match_logits: list[torch.Tensor | None] | None = None


@dataclass
class CapturedStates:
    """Hidden states read by the matching heads during one backbone call."""

    before_last_layer: torch.Tensor | None = None  # = hidden_states[-2]: input of the last decoder layer
    before_norm: torch.Tensor | None = None  # output of the last decoder layer, before the final norm


@contextlib.contextmanager
def capture_matching_states(backbone: nn.Module, enabled: bool = True) -> Iterator[CapturedStates]:
    """Record the two states through forward pre-hooks removed on exit (nothing stays on the module).

    Hooks sit on the module call, outside gradient checkpointing of the layer, so they fire once per forward.
    """
    states = CapturedStates()
    if not enabled:
        yield states
        return

    def before_last(module: nn.Module, args: tuple, kwargs: dict) -> None:
        if states.before_last_layer is None:
            states.before_last_layer = args[0] if args else kwargs["hidden_states"]

    def before_norm(module: nn.Module, args: tuple) -> None:
        if states.before_norm is None:
            states.before_norm = args[0]

    handles = [
        backbone.layers[-1].register_forward_pre_hook(before_last, with_kwargs=True),
        backbone.norm.register_forward_pre_hook(before_norm),
    ]
    try:
        yield states
    finally:
        for handle in handles:
            handle.remove()


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Token-mean cross-entropy of next-token prediction over supervised labels, in float32.

    Pinned on purpose: the mean is over this micro-batch's supervised tokens (the 4.44 behaviour), never a sum
    normalised by `num_items_in_batch` (transformers >= 4.46 Trainer), so the 1:1 weight with the matching loss
    holds. With no supervised token it is 0 (connected to the graph), not NaN.
    """
    shift_logits = logits[:, :-1].float().flatten(0, 1)
    shift_labels = labels[:, 1:].flatten().to(shift_logits.device)
    if not (shift_labels != IGNORE_INDEX).any():
        return shift_logits.sum() * 0.0
    return F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX)


class ETChatCausalLMMixin:
    """Forward, loss and generation of E.T. Chat on top of an HF `PreTrainedModel` subclass."""

    config: ETChatFieldsConfig
    model: Any
    lm_head: nn.Linear
    base_model_class: type[nn.Module]  # the backbone's ETChat*Model, set by each model class
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    # The loss is normalised here (token mean + sample mean); the Trainer must not pass num_items_in_batch.
    accepts_loss_kwargs = False
    _supports_flash_attn = False  # the frame mask is an explicit 4-D mask
    _supports_flex_attn = False

    def __init__(self, config: ETChatFieldsConfig) -> None:
        super().__init__(config)  # type: ignore[call-arg]  # the HF PreTrainedModel
        self.model = self.base_model_class(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.use_matching:
            fan_in = config.matching_head_init == "fan_in"
            self.frm_head = MatchingHead(config.hidden_size, fan_in_init=fan_in)
            self.vid_head = MatchingHead(config.hidden_size, fan_in_init=fan_in)
        self.post_init()  # type: ignore[attr-defined]

    @property
    def match_token_id(self) -> int | None:
        """The `<vid>` id when matching is on (stage 3 and inference), else None."""
        if not self.config.use_matching:
            return None
        if self.config.match_token_id is None:
            raise ConfigError("use_matching is on but config.match_token_id (the <vid> id) is not set")
        return self.config.match_token_id

    def encode_frames(
        self,
        frames: Sequence[FrameInput],
        queries: Sequence[Sequence[str] | None] | None,
        chunk_size: int | None = None,
    ) -> list[torch.Tensor | None]:
        return self.model.encode_frames(frames, queries, chunk_size)

    def splice(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
        visual: Sequence[torch.Tensor | None],
        times: Sequence[Sequence[float] | None] | None,
        padding_side: str,
    ) -> SplicedBatch:
        embed = self.get_input_embeddings()  # type: ignore[attr-defined]
        return splice_batch(
            input_ids,
            attention_mask,
            labels,
            visual,
            times,
            embed,
            self.match_token_id,
            padding_side=padding_side,
            allow_missing_images=self.training,  # type: ignore[attr-defined]
        )

    def run_backbone(
        self,
        batch: SplicedBatch,
        capture: bool,
        cache: Any = None,
    ) -> tuple[Any, CapturedStates]:
        """One full pass of the decoder over a spliced batch with the explicit mask."""
        dtype = batch.inputs_embeds.dtype
        mask = build_attention_mask(batch.valid, batch.frame_block, self.config.bi_attention, dtype)
        positions = position_ids_from_valid(batch.valid)
        return self.backbone_pass(batch.inputs_embeds, mask, positions, capture, cache)

    def backbone_pass(
        self,
        inputs_embeds: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        capture: bool,
        cache: Any = None,
    ) -> tuple[Any, CapturedStates]:
        """The HF decoder's public forward, with the matching states captured when asked (prefill and decode)."""
        with capture_matching_states(self.model, capture) as states:
            outputs = self.model(
                inputs_embeds=inputs_embeds,
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=cache is not None,
            )
        return outputs, states

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        frames: Sequence[FrameInput] | None = None,
        queries: Sequence[Sequence[str] | None] | None = None,
        src: Sequence[Sequence[float] | None] | None = None,
        tgt: Sequence[Sequence[float] | None] | None = None,
        inputs_embeds: torch.Tensor | None = None,
        return_match_logits: bool = False,
        vision_chunk_size: int | None = None,
        **kwargs: Any,
    ) -> ETChatCausalLMOutput:
        """Training / scoring pass.

        Args:
            input_ids: `[B, L]` text ids with `IMAGE_TOKEN_INDEX` (-200) where a video's frame tokens go.
            attention_mask: `[B, L]`, 0 at padding.
            labels: `[B, L]`, `IGNORE_INDEX` (-100) where not supervised (aligned with `input_ids`, unshifted).
            frames: per sample, `[T, 3, H, W]` frames (or `[T, N, C]` patch features), or None (text only).
            queries: per sample, one question string per `<image>` (human turn), for the Q-Former.
            src / tgt: per sample, seconds of the `<vid>`s in the question / the answer (frame index at 1 fps).
                Every `<vid>` gets its frame token added (src then tgt, in order); `tgt` are the matching targets.
            return_match_logits: also return, per sample, the scaled similarities of every position that is
                followed by a `<vid>` after the last frame block with the frames of that block.
        """
        if inputs_embeds is not None:
            raise ValueError("E.T. Chat builds inputs_embeds itself; pass input_ids, frames and queries")
        if "num_items_in_batch" in kwargs:
            raise ValueError(
                "num_items_in_batch is not supported: E.T. Chat pins its loss normalisation (token-mean LM loss + "
                "sample-mean matching loss per micro-batch); the Trainer must divide by gradient accumulation"
            )
        # Wrappers (peft, Trainer) pass these HF arguments; they are meaningless here unless set to something.
        ignored = {"return_dict", "use_cache"}
        unsupported_if_set = {"output_attentions", "output_hidden_states"}
        unexpected = sorted(k for k, v in kwargs.items() if k not in ignored and (k not in unsupported_if_set or v))
        if unexpected:
            raise TypeError(f"unexpected arguments to E.T. Chat's forward: {unexpected}")
        if input_ids is None:
            raise ValueError("input_ids is required")

        batch_size = input_ids.shape[0]
        visual = self.encode_frames(frames, queries, vision_chunk_size) if frames is not None else [None] * batch_size
        use_matching = self.config.use_matching
        times = None
        if use_matching:
            src_list = src if src is not None else [None] * batch_size
            tgt_list = tgt if tgt is not None else [None] * batch_size
            times = [list(s or []) + list(t or []) for s, t in zip(src_list, tgt_list, strict=True)]
        batch = self.splice(input_ids, attention_mask, labels, visual, times, padding_side="right")

        # Without labels, tgt only feeds the <vid> input embeddings (teacher forcing), it is not a loss target.
        has_targets = use_matching and labels is not None and tgt is not None and any(t for t in tgt)
        capture = use_matching and (has_targets or return_match_logits or self.training)  # type: ignore[attr-defined]
        outputs, states = self.run_backbone(batch, capture)
        logits = self.lm_head(outputs.last_hidden_state)

        lm_loss = causal_lm_loss(logits, batch.labels) if batch.labels is not None else None
        match_loss = None
        if has_targets:
            match_loss = self.matching_loss(batch, states, tgt)
        loss = lm_loss
        if loss is not None and match_loss is not None:
            loss = loss + match_loss
        elif loss is not None and self.training:  # type: ignore[attr-defined]
            # Keep every trainable parameter in the graph (DeepSpeed ZeRO expects a gradient for each).
            loss = loss + self.graph_anchor(visual, states)

        match_out = self.match_logits_for(batch, states) if return_match_logits and use_matching else None
        return ETChatCausalLMOutput(
            loss=loss, lm_loss=lm_loss, match_loss=match_loss, logits=logits, match_logits=match_out
        )

    def matching_loss(
        self, batch: SplicedBatch, states: CapturedStates, tgt: Sequence[Sequence[float] | None]
    ) -> torch.Tensor | None:
        """Soft-target matching loss averaged over the samples that have targets (spec §2.2)."""
        match_id = self.match_token_id
        if batch.labels is None:
            raise ValueError("matching targets (tgt) need labels to locate the supervised <vid> tokens")
        per_sample = []
        for b, times in enumerate(tgt):
            if not times:
                continue
            span = batch.last_block[b]
            if span is None:
                raise ValueError(f"sample {b}: matching targets (tgt) but no frames")
            # The queries are the states that predict a supervised <vid>; the last len(tgt) of them.
            query_pos = torch.nonzero(batch.labels[b, 1:] == match_id).flatten()
            if query_pos.numel() < len(times):
                raise ValueError(f"sample {b}: {len(times)} targets but {query_pos.numel()} supervised <vid> tokens")
            query_pos = query_pos[query_pos.numel() - len(times) :]
            frames = self.frm_head(states.before_norm[b, span[0] : span[1]])
            queries = self.vid_head(states.before_last_layer[b, query_pos])
            target = torch.tensor([float(t) for t in times], device=frames.device)
            per_sample.append(sample_matching_loss(queries, frames, target, self.config.alpha))
        return matching_loss(per_sample)

    def graph_anchor(self, visual: Sequence[torch.Tensor | None], states: CapturedStates) -> torch.Tensor:
        """A zero that depends on the compressor and the matching heads when a batch does not use them."""
        anchor = self.lm_head.weight.new_zeros(())
        if all(v is None for v in visual):
            # Text-only batch: run the compressor on one blank frame, as the original does with a dummy image.
            spec = self.model.vision_tower.spec
            blank = torch.zeros(1, spec.num_patches, spec.width, device=anchor.device)
            anchor = anchor + self.model.compress_frames(blank, [""]).sum() * 0.0
            if self.model.vision_tower.trainable:
                pixels = torch.zeros(1, 3, spec.image_size, spec.image_size, device=anchor.device)
                anchor = anchor + self.model.encode_patches(pixels).sum() * 0.0
        if self.config.use_matching and states.before_norm is not None:
            anchor = anchor + self.frm_head(states.before_norm[:, :1]).sum() * 0.0
            anchor = anchor + self.vid_head(states.before_last_layer[:, :1]).sum() * 0.0
        return anchor

    def match_logits_for(self, batch: SplicedBatch, states: CapturedStates) -> list[torch.Tensor | None]:
        match_id = self.match_token_id
        result: list[torch.Tensor | None] = []
        for b, span in enumerate(batch.last_block):
            if span is None:
                result.append(None)
                continue
            nxt = torch.nonzero(batch.token_ids[b, 1:] == match_id).flatten()
            nxt = nxt[nxt >= span[1] - 1]
            frames = self.frm_head(states.before_norm[b, span[0] : span[1]])
            result.append(match_logits(self.vid_head(states.before_last_layer[b, nxt]), frames))
        return result

    def generate(self, *args: Any, **kwargs: Any):
        """Batched generation with `<vid>` matching; see `etchat.model.generation.generate`."""
        from .generation import generate

        return generate(self, *args, **kwargs)


class ETChatPhi3ForCausalLM(ETChatCausalLMMixin, ETChatInitMixin, Phi3PreTrainedModel, GenerationMixin):
    config: ETChatPhi3Config
    config_class = ETChatPhi3Config
    _no_split_modules = ["Phi3DecoderLayer", "EVABlock", "QFormerLayer"]
    base_model_class = ETChatPhi3Model


class ETChatLlamaForCausalLM(ETChatCausalLMMixin, ETChatInitMixin, LlamaPreTrainedModel, GenerationMixin):
    config: ETChatLlamaConfig
    config_class = ETChatLlamaConfig
    _no_split_modules = ["LlamaDecoderLayer", "EVABlock", "QFormerLayer"]
    base_model_class = ETChatLlamaModel


class ETChatQwen2ForCausalLM(ETChatCausalLMMixin, ETChatInitMixin, Qwen2PreTrainedModel, GenerationMixin):
    config: ETChatQwen2Config
    config_class = ETChatQwen2Config
    _no_split_modules = ["Qwen2DecoderLayer", "EVABlock", "QFormerLayer"]
    base_model_class = ETChatQwen2Model


MODEL_CLASSES: dict[str, type[nn.Module]] = {
    "etchat_phi3": ETChatPhi3ForCausalLM,
    "etchat_llama": ETChatLlamaForCausalLM,
    "etchat_qwen2": ETChatQwen2ForCausalLM,
}
# The common base of the three model classes (isinstance checks, type hints).
ETChatForCausalLM = ETChatCausalLMMixin


def build_model(
    config: ETChatFieldsConfig,
    dtype: torch.dtype | None = None,
    attn_implementation: str = "eager",
) -> ETChatCausalLMMixin:
    """A randomly initialised model of `config`'s backbone (weights: `load_base_weights` / `load_checkpoint`)."""
    if config.model_type not in MODEL_CLASSES:
        raise ConfigError(f"model_type {config.model_type!r}; expected one of {sorted(MODEL_CLASSES)}")
    return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation)


def register_auto_classes() -> None:
    """Make `AutoConfig`/`AutoModelForCausalLM` resolve the etchat_* model types (idempotent)."""
    for model_cls in MODEL_CLASSES.values():
        config_cls = model_cls.config_class
        with contextlib.suppress(ValueError):
            AutoConfig.register(config_cls.model_type, config_cls)
        with contextlib.suppress(ValueError):
            AutoModelForCausalLM.register(config_cls, model_cls)


register_auto_classes()
