"""Inference prompts as E.T. Chat builds them (spec §3.4, §5.2, §5.4).

The phi3 prompt of a single question is
`<|system|>\nYou are a helpful AI assistant.<|end|>\n<|user|>\n<image>\n{question}<|end|>\n<|assistant|>\n`;
the multiple-choice tasks (rar, eca, rvq) append `Best Option: (`. The templates and the tokenization (`<image>` ->
`IMAGE_TOKEN_INDEX`, LLaVA's arithmetic) are training's (`etchat.data.conversation`, `etchat.data.tokenization`),
so a prompt is tokenized exactly as the model saw it in training.
"""

from __future__ import annotations

from dataclasses import asdict

from etchat.data.conversation import PHI3, Template
from etchat.data.tokenization import tokenize_prompt
from etchat.errors import ConfigError
from etchat.etbench import MULTIPLE_CHOICE_TASKS
from etchat.model import IMAGE_TOKEN

from .settings import fingerprint

__all__ = ["BEST_OPTION", "TEMPLATES", "build_prompt", "is_multiple_choice", "template_digest", "template_for",
           "tokenize_prompt"]  # fmt: skip

# Appended after the assistant header for the multiple-choice tasks (infer_etbench.py; the branch with a leading
# space is unreachable because the phi3 prompt always ends in "\n").
BEST_OPTION = "Best Option: ("

# Only phi3 is used by the released checkpoints (and by every stage >= 2 here); other backbones' templates
# (llama3, qwen2, ...) can be added once a checkpoint that uses them exists to check them against.
TEMPLATES: dict[str, Template] = {"phi3": PHI3}


def template_for(conv_type: str | None) -> Template:
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


def template_digest(template: Template) -> str:
    return fingerprint(asdict(template))  # all str fields: default=str never applies


def is_multiple_choice(task: str | None) -> bool:
    return task in MULTIPLE_CHOICE_TASKS


def build_prompt(template: Template, question: str, task: str | None = None) -> str:
    """The generation prompt for one question about one video (`<image>` first, as the original); multiple-choice
    tasks end in `Best Option: (`."""
    user, assistant = template.roles
    prompt = template.render([(user, f"{IMAGE_TOKEN}\n{question}"), (assistant, None)])
    return prompt + (BEST_OPTION if is_multiple_choice(task) else "")
