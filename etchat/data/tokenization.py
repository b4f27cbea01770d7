"""Tokenization with `<image>` placeholders and label masking, as the original E.T. Chat does it.

`tokenize_prompt` splits the text on `<image>`, tokenizes each chunk on its own, keeps the first chunk's BOS,
drops the BOS of later chunks and puts one `IMAGE_TOKEN_INDEX` between chunks (LLaVA's arithmetic).

Labels supervise the assistant text and its `<|end|>` (phi3), or the caption and its trailing newline (plain).
How the round boundaries are found is `label_masks`:

- `original` (default): the original's arithmetic. The prompt is split into rounds on `<|end|>`; each round and
  its instruction part (up to the assistant header) are tokenized on their own, their lengths (one token less
  after the first round, for the BOS of a separate tokenization) mask the instruction and advance the cursor.
  With Phi-3's real tokenizer this does not add up for every conversation of several rounds: a round tokenized on
  its own begins with the newline before `<|user|>`, which in the whole prompt the `rstrip` of the preceding
  `<|end|>` swallows. With Phi-3's first tokenizer files (a BOS on every text) each later round then starts one
  token late, so some answer tokens of later rounds are masked and some question tokens supervised; with the
  July 2024 files (no BOS) the one-token allowance happens to cancel the newline. The original only warned
  ("Tokenization mismatch") and trained on the masks as computed; so does this default (`TokenizedSample.mismatch`
  flags such records; training reports their share at start-up).
- `exact`: each answer is located in the token stream by tokenizing the prompt up to its assistant header and up
  to its `<|end|>`; exactly those tokens are supervised in every round. A prompt whose tokens do not start with
  the tokens of such a prefix raises `TokenizationError` (a tokenizer that merges across the template's
  boundaries).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from etchat.data.conversation import PHI3, Conversation
from etchat.errors import UserFacingError
from etchat.model.constants import IGNORE_INDEX, IMAGE_TOKEN, IMAGE_TOKEN_INDEX


class TokenizationError(UserFacingError):
    """The prompt cannot be masked: no plain prefix, or (`exact`) a boundary the tokenizer merges across."""


LABEL_MASKS: tuple[str, ...] = ("original", "exact")


@dataclass
class TokenizedSample:
    input_ids: list[int]
    labels: list[int]
    mismatch: bool = False  # the original's round arithmetic does not add up (it warned "Tokenization mismatch")

    @property
    def num_supervised(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def tokenize_prompt(text: str, tokenizer: Any) -> list[int]:
    """Token ids of `text` with `IMAGE_TOKEN_INDEX` for each `<image>` (LLaVA's arithmetic): the chunks between
    `<image>`s tokenized on their own, the first chunk's BOS kept and the later chunks' dropped."""
    chunks = [tokenizer(chunk).input_ids for chunk in text.split(IMAGE_TOKEN)]
    bos = tokenizer.bos_token_id
    offset = 1 if chunks[0] and bos is not None and chunks[0][0] == bos else 0
    ids: list[int] = [chunks[0][0]] if offset else []
    for k, chunk in enumerate(chunks):
        if k:
            ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(chunk[offset:])
    return ids


def tokenize_conversation(
    conversation: Conversation, tokenizer: Any, where: str = "", label_masks: str = "original"
) -> TokenizedSample:
    """Input ids and labels of a built conversation; `where` names the record in errors."""
    if label_masks not in LABEL_MASKS:
        raise ValueError(f"label_masks {label_masks!r}; allowed: {list(LABEL_MASKS)}")
    ids = tokenize_prompt(conversation.prompt, tokenizer)
    if conversation.template == "plain":
        return _plain_labels(ids, tokenizer, where)
    if conversation.template != "phi3":
        raise ValueError(f"unknown conversation template {conversation.template!r}")
    if label_masks == "exact":
        return _exact_labels(conversation.prompt, ids, tokenizer, where)
    return _original_labels(conversation.prompt, ids, tokenizer)


def _plain_labels(ids: list[int], tokenizer: Any, where: str) -> TokenizedSample:
    head = tokenize_prompt(IMAGE_TOKEN, tokenizer)  # [BOS, -200] (or [-200] without BOS): never supervised
    if ids[: len(head)] != head:
        raise TokenizationError(f"{where}: plain prompt does not start with {head} (got {ids[: len(head)]})")
    labels = [IGNORE_INDEX] * len(head) + ids[len(head) :]
    return TokenizedSample(ids, labels)


def _original_labels(prompt: str, ids: list[int], tokenizer: Any) -> TokenizedSample:
    """The original's round arithmetic (module doc), including where it does not add up."""
    sep, header = PHI3.sep, PHI3.sep + PHI3.roles[1]
    parts = [part + sep for part in prompt.split(sep)][:-1]  # the last part is the prompt's empty tail
    rounds = ["".join(parts[:3])] + ["".join(parts[k : k + 2]) for k in range(3, len(parts), 2)]
    labels, cur = list(ids), 0
    for k, text in enumerate(rounds):
        if not text:
            break
        instruction = header.join(text.split(header)[:-1]) + header
        round_len = len(tokenize_prompt(text, tokenizer))
        instruction_len = len(tokenize_prompt(instruction, tokenizer))
        if k > 0:  # the BOS of the round's own tokenization
            round_len, instruction_len = round_len - 1, instruction_len - 1
        end = min(cur + instruction_len, len(labels))  # a tensor slice: never past the end
        labels[cur:end] = [IGNORE_INDEX] * max(end - cur, 0)
        cur += round_len
    return TokenizedSample(ids, labels, mismatch=cur != len(ids))


def _exact_labels(prompt: str, ids: list[int], tokenizer: Any, where: str) -> TokenizedSample:
    """Every answer and its `<|end|>` supervised, located by tokenizing the prompt up to each boundary."""
    sep, assistant = PHI3.sep, PHI3.roles[1]
    labels = [IGNORE_INDEX] * len(ids)
    pos = 0
    while (start := prompt.find(assistant, pos)) >= 0:
        answer_start = start + len(assistant)
        stop = prompt.find(sep, answer_start)
        if stop < 0:
            raise TokenizationError(f"{where}: an answer without {sep!r} after it")
        answer_end = stop + len(sep)
        begin, end = (_prefix_len(prompt[:cut], ids, tokenizer, where) for cut in (answer_start, answer_end))
        labels[begin:end] = ids[begin:end]
        pos = answer_end
    return TokenizedSample(ids, labels)


def _prefix_len(prefix: str, ids: list[int], tokenizer: Any, where: str) -> int:
    prefix_ids = tokenize_prompt(prefix, tokenizer)
    if ids[: len(prefix_ids)] != prefix_ids:
        raise TokenizationError(
            f"{where}: the prompt's tokens do not start with those of the prompt up to {prefix[-30:]!r}: "
            f"{_show(tokenizer, prefix_ids[-6:])} vs {_show(tokenizer, ids[len(prefix_ids) - 6 : len(prefix_ids)])}; "
            "this tokenizer merges across the template's boundaries (train.label_masks: original does not need them)"
        )
    return len(prefix_ids)


def _show(tokenizer: Any, ids: Sequence[int], limit: int = 12) -> str:
    shown = [tokenizer.convert_ids_to_tokens(i) if i >= 0 else "<image>" for i in ids[:limit]]
    return repr(shown) + ("..." if len(ids) > limit else "")
