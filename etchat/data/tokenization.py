"""Tokenization with `<image>` placeholders and label masking (spec §3.5), failing loudly on a mismatch.

`tokenize_prompt` splits the text on `<image>`, tokenizes each chunk on its own, keeps the first chunk's BOS,
drops the BOS of later chunks and puts one `IMAGE_TOKEN_INDEX` between chunks (LLaVA's `tokenizer_image_token`).

Labels supervise only the assistant text and its `<|end|>` (phi3), or the caption and its trailing newline
(plain). The original finds the boundaries by re-tokenizing each round's substrings and only *warns* when the
lengths do not add up, training on a fully masked sample. Here every round's tokens are compared with the tokens
of the whole prompt at the position the arithmetic puts them; any difference raises `TokenizationError`, which
stops the run (a tokenizer or template problem, not a data problem).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from etchat.data.conversation import PHI3, Conversation
from etchat.errors import UserFacingError
from etchat.model.constants import IGNORE_INDEX, IMAGE_TOKEN, IMAGE_TOKEN_INDEX


class TokenizationError(UserFacingError):
    """The label boundaries computed by re-tokenizing a round disagree with the prompt's tokens."""


@dataclass
class TokenizedSample:
    input_ids: list[int]
    labels: list[int]

    @property
    def num_supervised(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def tokenize_prompt(text: str, tokenizer: Any) -> list[int]:
    """Token ids of `text` with `IMAGE_TOKEN_INDEX` for each `<image>` (LLaVA's arithmetic)."""
    chunks = [tokenizer(chunk).input_ids for chunk in text.split(IMAGE_TOKEN)]
    bos = tokenizer.bos_token_id
    offset = 1 if chunks and chunks[0] and bos is not None and chunks[0][0] == bos else 0
    ids: list[int] = [chunks[0][0]] if offset else []
    for k, chunk in enumerate(chunks):
        if k:
            ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(chunk[offset:])
    return ids


def tokenize_conversation(conversation: Conversation, tokenizer: Any, where: str = "") -> TokenizedSample:
    """Input ids and labels of a built conversation; `where` names the record in errors."""
    ids = tokenize_prompt(conversation.prompt, tokenizer)
    if conversation.template == "plain":
        return _plain_labels(ids, tokenizer, where)
    if conversation.template == "phi3":
        return _multi_row_labels(conversation.prompt, ids, tokenizer, where)
    raise ValueError(f"unknown conversation template {conversation.template!r}")


def _plain_labels(ids: list[int], tokenizer: Any, where: str) -> TokenizedSample:
    head = tokenize_prompt(IMAGE_TOKEN, tokenizer)  # [BOS, -200]: never supervised
    if ids[: len(head)] != head:
        raise TokenizationError(f"{where}: plain prompt does not start with {head} (got {ids[: len(head)]})")
    labels = [IGNORE_INDEX] * len(head) + ids[len(head) :]
    return TokenizedSample(ids, labels)


def _multi_row_labels(prompt: str, ids: list[int], tokenizer: Any, where: str) -> TokenizedSample:
    """phi3 masking: rounds split on `<|end|>` (system + first exchange, then one exchange per round)."""
    sep, assistant = PHI3.sep, PHI3.roles[1]
    end_ids = tokenizer(sep, add_special_tokens=False).input_ids
    if len(end_ids) != 1:
        raise TokenizationError(f"{where}: {sep!r} is not a single token of this tokenizer ({end_ids})")
    rounds = prompt.split(sep)
    grouped = [sep.join(rounds[:3])] + [sep.join(rounds[k : k + 2]) for k in range(3, len(rounds), 2)]
    has_bos = bool(ids) and tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id
    labels = list(ids)
    cur = 0
    for k, text in enumerate(grouped):
        if text == "":
            break
        parts = text.split(assistant)
        if len(parts) != 2:
            raise TokenizationError(f"{where}: round {k} has {len(parts) - 1} assistant headers, expected 1")
        round_ids = tokenize_prompt(text, tokenizer) + end_ids
        ins_ids = tokenize_prompt(parts[0] + assistant, tokenizer)
        if k > 0 and has_bos:  # later rounds were tokenized with a BOS of their own
            round_ids, ins_ids = round_ids[1:], ins_ids[1:]
        found = ids[cur : cur + len(round_ids)]
        if found != round_ids or round_ids[: len(ins_ids)] != ins_ids:
            raise TokenizationError(
                f"{where}: tokenization mismatch in round {k}: the round re-tokenized alone gives "
                f"{_show(tokenizer, round_ids)} but the prompt has {_show(tokenizer, found)} at tokens {cur}.."
                "; the tokenizer does not split the template where the label masking assumes "
                "(use the checkpoint's own tokenizer files)"
            )
        labels[cur : cur + len(ins_ids)] = [IGNORE_INDEX] * len(ins_ids)
        cur += len(round_ids)
    if cur != len(ids):
        raise TokenizationError(f"{where}: tokenization mismatch: rounds cover {cur} of {len(ids)} tokens")
    return TokenizedSample(ids, labels)


def _show(tokenizer: Any, ids: Sequence[int], limit: int = 12) -> str:
    shown = [tokenizer.convert_ids_to_tokens(i) if i >= 0 else "<image>" for i in ids[:limit]]
    return repr(shown) + ("..." if len(ids) > limit else "")
