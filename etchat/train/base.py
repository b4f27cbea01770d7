"""`etchat build-base`: the demo's stage-1 start, a tiny randomly initialised E.T. Chat and its tokenizer.

The tokenizer is a byte-level BPE trained locally on the training conversations (`build_demo_tokenizer`: Phi-3's
chat tokens and `<vid>` as special tokens, bos `<s>`, pad = eos = `<|endoftext|>`). The model is
`tiny_config(model.demo_size)` with stage-1 fields, the demo transform (`clip_center_<image size>`), and two
options of the demo: fan-in initialised matching heads (used from stage 3 on) and the Q-Former's dropout.
Real runs start stage 1 from the original base weights instead (`model.init: base`), inside `etchat train`.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from etchat.config import validate_config
from etchat.data.conversation import PHI3
from etchat.data.records import iter_records
from etchat.io import atomic_dir

log = logging.getLogger(__name__)


def corpus(annotation_files: Sequence[str | Path]) -> Iterator[str]:
    """Every conversation turn of the annotation files, plus the chat template's fixed strings."""
    yield PHI3.system
    for path in annotation_files:
        for record in iter_records(path):
            for turn in record.get("conversations") or []:
                if isinstance(turn, dict) and isinstance(turn.get("value"), str):
                    yield turn["value"]


def build_base(model_settings: dict, annotation_files: Sequence[str | Path], out: str | Path) -> Path:
    from etchat.model import build_demo_tokenizer, build_model, save_checkpoint, tiny_config_for
    from etchat.model.presets import TINY_PRESETS

    out = Path(out)
    with tempfile.TemporaryDirectory() as scratch, atomic_dir(out) as tmp:
        tokenizer = build_demo_tokenizer(
            list(corpus(annotation_files)), Path(scratch) / "tokenizer", vocab_size=model_settings["demo_vocab_size"]
        )
        size = model_settings["demo_size"]
        image_size = TINY_PRESETS[size]["vision_image_size"]
        config = tiny_config_for(
            tokenizer,
            size,
            stage=1,
            fan_in_heads=model_settings["fan_in_heads"],
            vision_processor=f"clip_center_{image_size}",
            qformer_dropout=model_settings["demo_qformer_dropout"],
        )
        torch.manual_seed(model_settings["seed"])
        model = build_model(config)
        save_checkpoint(model, tmp, tokenizer, dtype=torch.float32)
    log.info("demo base model (%s, %d tokens) in %s", model_settings["demo_size"], len(tokenizer), out)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-settings", required=True, help="the model: config section, JSON")
    parser.add_argument("--annotations", nargs="+", required=True, help="checked annotation files (the corpus)")
    parser.add_argument("--out", required=True, help="checkpoint directory to write")


def run(args: argparse.Namespace) -> int:
    settings = json.loads(args.model_settings)
    validate_config(settings, section="model")
    torch.set_num_threads(1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    build_base(settings, args.annotations, args.out)
    return 0
