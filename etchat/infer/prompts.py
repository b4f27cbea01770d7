"""Inference prompts as E.T. Chat builds them (spec §3.4, §5.2, §5.4), and their tokenization.

The phi3 prompt of a single question is
`<|system|>\\nYou are a helpful AI assistant.<|end|>\\n<|user|>\\n<image>\\n{question}<|end|>\\n<|assistant|>\\n`;
the multiple-choice tasks (rar, eca, rvq) append `Best Option: (`. `<image>` becomes `IMAGE_TOKEN_INDEX` with the
LLaVA `tokenizer_image_token` arithmetic the original uses: each chunk around `<image>` is tokenized on its own and,
when the first chunk starts with BOS, the first token of every chunk is dropped and one BOS kept at the front.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from etchat.errors import ConfigError
from etchat.etbench import MULTIPLE_CHOICE_TASKS
from etchat.model import IMAGE_TOKEN, IMAGE_TOKEN_INDEX

# Appended after the assistant header for the multiple-choice tasks (infer_etbench.py; the branch with a leading
# space is unreachable because the phi3 prompt always ends in "\n").
BEST_OPTION = "Best Option: ("


@dataclass(frozen=True)
class ChatTemplate:
    """A single-turn chat template: system text, role headers and separators (spec §3.4)."""

    name: str
    system: str
    user: str
    assistant: str
    sep: str  # after the system text and after each message
    stop: str  # the string generation stops at

    def render(self, question: str, suffix: str = "") -> str:
        """The generation prompt for one question asked about one video (`<image>` first, as the original)."""
        system = f"{self.system}{self.sep}" if self.system else ""
        text = f"{system}{self.user}{IMAGE_TOKEN}\n{question}{self.sep}{self.assistant}{suffix}"
        return text.lstrip("\n")

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


# Only phi3 is used by the released checkpoints (and by every stage >= 2 here); other backbones' templates
# (llama3, qwen2, ...) can be added once a checkpoint that uses them exists to check them against.
TEMPLATES: dict[str, ChatTemplate] = {
    "phi3": ChatTemplate(
        "phi3", "<|system|>\nYou are a helpful AI assistant.", "\n<|user|>\n", "\n<|assistant|>\n", "<|end|>", "<|end|>"
    ),
}


def template_for(conv_type: str | None) -> ChatTemplate:
    """The template of a checkpoint's `conv_type` (phi3 when unset)."""
    name = conv_type or "phi3"
    if name not in TEMPLATES:
        hint = (
            " (a stage-1 checkpoint only captions: evaluate a stage-2 or stage-3 checkpoint)" if name == "plain" else ""
        )
        raise ConfigError(
            f"chat template {name!r} is not supported for inference{hint}; allowed: {', '.join(sorted(TEMPLATES))}"
        )
    return TEMPLATES[name]


def is_multiple_choice(task: str | None) -> bool:
    return task in MULTIPLE_CHOICE_TASKS


def build_prompt(template: ChatTemplate, question: str, task: str | None = None) -> str:
    """The full prompt text; multiple-choice tasks end in `Best Option: (`."""
    return template.render(question, BEST_OPTION if is_multiple_choice(task) else "")


def tokenize_prompt(tokenizer: Any, text: str) -> list[int]:
    """Token ids with `IMAGE_TOKEN_INDEX` for each `<image>` (LLaVA's `tokenizer_image_token`)."""
    chunks = [tokenizer(chunk).input_ids for chunk in text.split(IMAGE_TOKEN)]
    ids: list[int] = []
    offset = 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        ids.append(chunks[0][0])
    for i, chunk in enumerate(chunks):
        if i > 0:
            ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(chunk[offset:])
    return ids
