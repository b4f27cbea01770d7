"""Conversation templates for training: `plain` (stage 1 captions) and `phi3` (stages 2-3), spec §3.4.

A LLaMA-VID / E.T. Instruct record holds `conversations: [{"from": "human"|"gpt", "value": ...}, ...]`.
`build_conversation` turns it into the prompt text the LLM sees (with `<image>` where the frames go) and the
Q-Former queries (one per `<image>`), or raises `ConversationError` saying why the record cannot be used.

Multi-row templates strip every message (a turn left empty is refused), as the original does; `plain` keeps the
caption as it is. `<image>` insertion (multi-row templates): in a record with an image or video, every human turn
that lacks `<image>` gets one, before (`<image>\\n` + msg) or after (msg + `\\n<image>`) the text. The original
flips a coin with Python's global `random` inside dataloader workers, so the data depended on the worker count;
here the coin is drawn from a generator seeded by (seed, record index): the same in every run and on every rank.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass, field
from typing import Any

from etchat.errors import DataError
from etchat.model.constants import IMAGE_TOKEN

HUMAN, GPT = "human", "gpt"


class ConversationError(DataError):
    """A record's conversation cannot be turned into a training prompt (turn order, `<image>` placement)."""


@dataclass(frozen=True)
class Template:
    """A chat template: `system + sep`, then `role + message + sep` per turn (spec §3.4)."""

    name: str
    system: str
    roles: tuple[str, str]  # (user header, assistant header)
    sep: str
    reserved: tuple[str, ...] = ()  # strings the label masking splits on: never inside a message

    def render(self, messages: list[tuple[str, str | None]]) -> str:
        """The prompt of (role, message) pairs; a None message yields the bare role (generation prompt)."""
        text = self.system + self.sep if self.system else ""
        for role, message in messages:
            if message is None:
                text += role
                continue
            text += role + message
            if not message.endswith(self.sep):
                text += self.sep
        return text.lstrip("\n")


PHI3 = Template(
    "phi3",
    "<|system|>\nYou are a helpful AI assistant.",
    ("\n<|user|>\n", "\n<|assistant|>\n"),
    "<|end|>",
    reserved=("<|end|>", "<|system|>", "<|user|>", "<|assistant|>"),
)
# `plain` (stage 1, `preprocess_plain`): "<image>" + caption + "\n"; the human text only feeds the Q-Former.
PLAIN_SEP = "\n"
TEMPLATES: tuple[str, ...] = ("plain", "phi3")


@dataclass
class Conversation:
    """What the tokenizer and the model need from one record."""

    template: str
    prompt: str  # the full text, with `<image>` where each frame block goes
    queries: list[str] = field(default_factory=list)  # one Q-Former text per `<image>`, in order
    first_answer: str = ""  # the first gpt reply (the word-count filter reads it)


def check_turns(turns: Any) -> list[tuple[str, str]]:
    """(speaker, text) pairs of a conversation that alternates human/gpt, starting with human."""
    if not isinstance(turns, list) or not turns:
        raise ConversationError("conversations must be a non-empty list of turns")
    pairs = []
    for k, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise ConversationError(f"turn {k} must be a dict with a string 'value'")
        speaker = turn.get("from")
        expected = HUMAN if k % 2 == 0 else GPT
        if speaker != expected:
            raise ConversationError(f"turn {k} is from {speaker!r}, expected {expected!r} (turns must alternate)")
        pairs.append((speaker, turn["value"]))
    if len(pairs) % 2:
        raise ConversationError("the conversation ends with a human turn (no answer to train on)")
    return pairs


def build_conversation(
    record: dict, template: str, has_media: bool, seed: int = 0, index: int = 0, placement: bool = True
) -> Conversation:
    """The prompt and Q-Former queries of `record` in `template` (`plain` or `phi3`).

    `placement=False` puts every inserted `<image>` before its text without drawing the coin: the prompt then has
    the real one's length and `<image>`/`<vid>` counts (all that start-up checks read), without the cost of seeding
    a generator per record."""
    turns = check_turns(record.get("conversations"))
    if template == "plain":
        return _plain(turns, has_media)
    if template == "phi3":
        return _multi_row(turns, has_media, PHI3, _Coin(f"{seed}:{index}" if placement else None))
    raise ValueError(f"unknown conversation template {template!r}; allowed: {list(TEMPLATES)}")


class _Coin:
    """The `<image>` placement coin of one record: a generator seeded by `key`, made on its first draw (a record
    whose human turns all hold their `<image>` never draws); no key: always "before"."""

    def __init__(self, key: str | None) -> None:
        self.key, self.rng = key, None

    def before(self) -> bool:
        if self.key is None:
            return True
        if self.rng is None:
            self.rng = random.Random(self.key)
        return self.rng.random() < 0.5


def _plain(turns: list[tuple[str, str]], has_media: bool) -> Conversation:
    if len(turns) != 2:
        raise ConversationError(
            f"the plain (stage-1) template needs exactly one human and one gpt turn, got {len(turns)}"
        )
    human, caption = turns[0][1], turns[1][1]
    if not has_media or IMAGE_TOKEN not in human:
        raise ConversationError("the plain (stage-1) template needs an image or video and <image> in the human turn")
    if IMAGE_TOKEN in caption:
        raise ConversationError("<image> in a gpt turn")
    query = human.replace(IMAGE_TOKEN, "").strip()
    return Conversation("plain", IMAGE_TOKEN + caption + PLAIN_SEP, [query], caption)


def _multi_row(turns: list[tuple[str, str]], has_media: bool, template: Template, coin: _Coin) -> Conversation:
    messages: list[tuple[str, str | None]] = []
    queries: list[str] = []
    for speaker, text in turns:
        text = text.strip()  # as the original, which also refuses a turn left empty
        if not text:
            raise ConversationError(f"an empty {speaker} turn")
        # The label masking splits the prompt on these strings: inside a message they would misplace the labels.
        if template.reserved and _reserved_pattern(template.reserved).search(text):
            reserved = [s for s in template.reserved if s in text]
            raise ConversationError(f"a {speaker} turn contains the template's reserved string(s) {reserved}")
        count = text.count(IMAGE_TOKEN)
        if speaker == GPT:
            if count:
                raise ConversationError("<image> in a gpt turn")
            messages.append((template.roles[1], text))
            continue
        if count > 1:
            raise ConversationError(f"{count} <image> in one human turn (at most one)")
        if not has_media:
            if count:
                raise ConversationError("<image> in a record without image or video")
            messages.append((template.roles[0], text))
            continue
        query = text.replace(IMAGE_TOKEN, "").strip()
        if not count:
            text = f"{IMAGE_TOKEN}\n{text}" if coin.before() else f"{text}\n{IMAGE_TOKEN}"
        queries.append(query)
        messages.append((template.roles[0], text))
    return Conversation(template.name, template.render(messages), queries, turns[1][1])


@functools.cache
def _reserved_pattern(reserved: tuple[str, ...]) -> re.Pattern:
    """One search for all reserved strings (a message is checked once, not once per string)."""
    return re.compile("|".join(map(re.escape, reserved)))


def first_answer_words(record: dict) -> int:
    """Word count of the first gpt reply, split on spaces (the original's `max_num_words` filter)."""
    for turn in record.get("conversations") or []:
        if isinstance(turn, dict) and turn.get("from") == GPT:
            value = turn.get("value")
            return len(value.split(" ")) if isinstance(value, str) else 0
    return 0
