"""What the GPU benchmarks share: the model they build, E.T. Instruct-shaped token ids, and where figures go."""

from __future__ import annotations

import csv
import json
import os
import sys
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


# The JSON files run_all.sh has the benchmarks write, by benchmark name.
FIGURE_FILES = {"model": "model.json", "train": "train.json", "infer": "infer.json"}


def _flat(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [row for key, inner in value.items() for row in _flat(f"{prefix}.{key}" if prefix else key, inner)]
    if isinstance(value, list):
        return [(prefix, " ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in value))]
    return [(prefix, f"{value:.6g}" if isinstance(value, float) else value)]


def figures_tsv(folder: str | Path) -> Path:
    """DIR/figures.tsv from the benchmarks' JSON files in DIR; a benchmark that wrote none gets a `missing` row."""
    folder = Path(folder)
    rows = []
    for name, file in FIGURE_FILES.items():
        path = folder / file
        if not path.is_file():
            rows.append((name, "missing", f"{file} not written (the benchmark failed or ran out of time)"))
            continue
        rows += [(name, key, value) for key, value in _flat("", json.loads(path.read_text()))]
    out = folder / "figures.tsv"
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(("benchmark", "figure", "value"))
        writer.writerows(rows)
    return out


if __name__ == "__main__":
    print(f"figures written to {figures_tsv(sys.argv[1])}")
