"""LLM tokenizers: a local byte-level BPE for the demo (no hub), and adding `<vid>` to a real one.

The demo tokenizer behaves like Phi-3's where the pipeline depends on it: it prepends `<s>` (bos) to every
encoded text and adds no eos, it keeps Phi-3's chat tokens as single special tokens, and pads with
`<|endoftext|>` (which is also its eos). `<vid>` is a special token from the start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from .constants import MATCH_TOKEN, PHI3_CHAT_TOKENS

logger = logging.getLogger(__name__)

DEMO_SPECIAL_TOKENS: tuple[str, ...] = ("<unk>", "<s>", "</s>", "<|endoftext|>", *PHI3_CHAT_TOKENS, MATCH_TOKEN)


def build_demo_tokenizer(
    texts: Iterable[str], out_dir: str | Path, vocab_size: int = 512, min_frequency: int = 1
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts`, save it to `out_dir` (HF format) and return it loaded from there.

    Special tokens (ids 0..8): `<unk> <s> </s> <|endoftext|> <|system|> <|user|> <|assistant|> <|end|> <vid>`.
    Training is deterministic for a given corpus.
    """
    out = Path(out_dir)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(DEMO_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    bos_id = bpe.token_to_id("<s>")
    bpe.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]),
        ]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        unk_token="<unk>",
        additional_special_tokens=[*PHI3_CHAT_TOKENS, MATCH_TOKEN],
        padding_side="right",
        model_max_length=4096,
    )
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    loaded = AutoTokenizer.from_pretrained(out)
    logger.info("demo tokenizer: %d tokens, <vid> = %d, saved to %s", len(loaded), match_token_id(loaded), out)
    return loaded


def match_token_id(tokenizer: Any) -> int:
    """The id of `<vid>` in `tokenizer` (error if it is missing or split)."""
    ids = tokenizer.convert_tokens_to_ids([MATCH_TOKEN])
    unk = getattr(tokenizer, "unk_token_id", None)
    if not ids or ids[0] is None or ids[0] == unk:
        raise ValueError(f"the tokenizer has no {MATCH_TOKEN} token; add it with add_match_token()")
    return int(ids[0])


def add_match_token(tokenizer: Any, model: Any | None = None) -> int:
    """Add `<vid>` as a special token (as train.py does for stage 3) and return its id.

    With Phi-3 the tokenizer (32011 tokens) is smaller than the vocabulary (32064), so `<vid>` takes the unused row
    32011 and nothing is resized. When the tokenizer outgrows the model's vocabulary, the embedding and output rows
    are resized and the new rows set to the mean of the old ones (train.py L455-465). Sets `match_token_id`.
    """
    tokenizer.add_special_tokens({"additional_special_tokens": [MATCH_TOKEN]})
    token_id = match_token_id(tokenizer)
    if model is not None:
        old = model.get_input_embeddings().weight.shape[0]
        if len(tokenizer) > old:
            model.resize_token_embeddings(len(tokenizer))
            with torch.no_grad():
                for weight in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
                    weight[old:] = weight[:old].mean(0, keepdim=True)
        model.config.match_token_id = token_id
    return token_id
