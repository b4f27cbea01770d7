"""LLM tokenizers: loading one as the original did, checking it, adding `<vid>`, and the demo's own.

`load_tokenizer` is the one way a tokenizer directory is loaded (a Phi-3 directory for stage 1, a checkpoint's for
later stages and inference). The original loaded every training tokenizer with `add_prefix_space=False,
legacy=False` (transformers 4.44 then converts Phi-3's SentencePiece model into a fast tokenizer that never puts
`▁` before a text); transformers 5 honours the two flags directly, and with them gives the original's token ids
on Phi-3's files and on the files the original saved into its checkpoints (tests/test_tokenizer_fidelity.py).
Without them, transformers 5 prepends `▁` to every `<image>`-separated chunk of a Phi-3 prompt.
`check_tokenizer` refuses a tokenizer that would silently feed the model other ids: one that splits a chat token
or `<vid>`, or prepends `▁` to a text.

The demo tokenizer behaves like Phi-3's where the pipeline depends on it: it prepends `<s>` (bos) to every
encoded text and adds no eos, it keeps Phi-3's chat tokens as single special tokens, and pads with
`<|endoftext|>` (which is also its eos). `<vid>` is a special token from the start.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from etchat.errors import UserFacingError

from .constants import MATCH_TOKEN, PHI3_CHAT_TOKENS

logger = logging.getLogger(__name__)

# What the original passed to every AutoTokenizer.from_pretrained of training (inference passed none; the
# checkpoints' saved tokenizer_config.json holds the same two flags).
ORIGINAL_LOAD_ARGS: dict[str, Any] = {"add_prefix_space": False, "legacy": False}
# Where the pieces of a tokenizer mark a leading space: SentencePiece's "▁", byte-level BPE's "Ġ".
SPACE_MARKS = ("\u2581", "\u0120")


class TokenizerError(UserFacingError, ValueError):
    """A tokenizer would give the model other token ids than the original's (a split special token, a prefix space)."""


def load_tokenizer(path: str | Path, match_token: bool = False) -> Any:
    """The tokenizer of `path` loaded as the original loaded it, checked by `check_tokenizer`.

    The class is the one `tokenizer_config.json` names (Phi-3's: LlamaTokenizer), as transformers 4.44 chose it:
    transformers 5's AutoTokenizer goes by `config.json`'s model type first, and for `phi3` takes a generic class
    that reads `tokenizer.json` as it is and ignores the two flags (a `▁` before every text). No pad token falls
    back to eos (as the original). `match_token`: `<vid>` must be there (a stage-3 checkpoint).
    """
    tokenizer = _tokenizer_class(Path(path)).from_pretrained(path, **ORIGINAL_LOAD_ARGS)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    check_tokenizer(tokenizer, path, match_token=match_token)
    return tokenizer


def _tokenizer_class(path: Path) -> Any:
    from transformers.models.auto.tokenization_auto import tokenizer_class_from_name

    config = path / "tokenizer_config.json"
    name = json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class") if config.is_file() else None
    cls = tokenizer_class_from_name(name) if name else None
    return cls or AutoTokenizer


def check_tokenizer(tokenizer: Any, where: str | Path, match_token: bool = False) -> None:
    """Raise `TokenizerError` unless every chat token (and `<vid>` when `match_token`) is one token, also next to
    text, and a text chunk gets no leading `▁` (the original's prompts begin chunks without one)."""
    tokens = [*PHI3_CHAT_TOKENS] + ([MATCH_TOKEN] if match_token else [])
    for token in tokens:
        token_id = tokenizer.convert_tokens_to_ids(token)
        for text in (token, f"at{token}3.", f"\n{token}\n"):
            ids = tokenizer(text, add_special_tokens=False).input_ids
            if token_id is None or token_id == tokenizer.unk_token_id or ids.count(token_id) != 1:
                pieces = tokenizer.convert_ids_to_tokens(ids)
                raise TokenizerError(
                    f"{where}: the tokenizer does not keep {token} as one token ({text!r} -> {pieces}); E.T. Chat's "
                    f"prompts need it as a single special token. Use the model's own tokenizer files (the Phi-3 "
                    f"directory, or the checkpoint's){'; stage 3 adds <vid> itself' if token == MATCH_TOKEN else ''}."
                )
    pieces = tokenizer.convert_ids_to_tokens(tokenizer("Hello", add_special_tokens=False).input_ids)
    if pieces and pieces[0].startswith(SPACE_MARKS):
        raise TokenizerError(
            f"{where}: the tokenizer puts a space before every text ('Hello' -> {pieces}); the original never does "
            "(it loads tokenizers with add_prefix_space=False, legacy=False), so every <image>-separated chunk of a "
            'prompt would get other ids than the model was trained on. Set "add_prefix_space": false and '
            '"legacy": false in tokenizer_config.json, or use the checkpoint\'s own tokenizer files.'
        )
    logger.info(
        "tokenizer %s: %d tokens, %s<s> on every text", where, len(tokenizer), "" if _adds_bos(tokenizer) else "no "
    )


def _adds_bos(tokenizer: Any) -> bool:
    ids = tokenizer("a").input_ids
    return bool(ids) and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id


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
