"""What the GPU benchmarks share: the model they build, E.T. Instruct-shaped token ids, and where figures go."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from etchat.model import IMAGE_TOKEN_INDEX, phi3_mini_config, tiny_config

# Token ids of the tiny test model when no tokenizer is built (the scripts feed random ids).
TINY_IDS = dict(vocab_size=512, match_token_id=500, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def bench_config(tiny: bool, **ids: int) -> Any:
    """The full-size stage-3 E.T. Chat (Phi-3-mini), or with `tiny` the tiny test model (to check a script on a CPU)."""
    if tiny:
        return tiny_config("test", **(ids or TINY_IDS))
    return phi3_mini_config(3, **ids)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def conversation(config: Any, text_tokens: int, num_vids: int, generator: torch.Generator) -> tuple[list, list]:
    """Random ids shaped like an E.T. Instruct sample: a prompt with <image>, an answer with `num_vids` <vid>s."""
    vocab = min(config.vocab_size, 32000)
    prompt_len = text_tokens // 2
    prompt = torch.randint(3, vocab, (prompt_len,), generator=generator).tolist()
    prompt[2] = IMAGE_TOKEN_INDEX
    answer = torch.randint(3, vocab, (text_tokens - prompt_len,), generator=generator).tolist()
    for i in range(num_vids):
        answer[4 + 6 * i] = config.match_token_id
    return prompt, answer


def write_figures(results: dict[str, Any], path: str | None, name: str) -> None:
    """The figures as JSON to `path` (--json), else to $OUT/`name` on a lent GPU machine, else only to stdout."""
    out = path or (os.path.join(os.environ["OUT"], name) if os.environ.get("OUT") else None)
    if out:
        Path(out).write_text(json.dumps(results, indent=2))
        print(f"figures written to {out}")
