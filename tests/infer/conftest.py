"""Fixtures for the inference tests: a tiny random E.T. Chat checkpoint, real short videos, annotation lists."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from infer_helpers import etbench_records, make_checkpoint, write_videos
from transformers.utils import logging as hf_logging

from etchat.infer.engine import Engine
from etchat.infer.settings import InferSettings

# One thread: on a shared 2-core machine two threads oversubscribe and run several times slower.
torch.set_num_threads(1)
hf_logging.disable_progress_bar()


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt"), seed=0)


@pytest.fixture(scope="session")
def other_checkpoint(tmp_path_factory) -> Path:
    """Same architecture and tokenizer, other weights."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt2"), seed=1)


@pytest.fixture(scope="session")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    write_videos(root)
    return root


@pytest.fixture
def etbench_file(tmp_path) -> Callable[..., Path]:
    """`etbench_file(extra=[...])`: the records above (plus extra ones) written to a JSON file."""

    def write(extra: list[dict] | None = None, name: str = "etbench_vid.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(etbench_records() + (extra or [])))
        return path

    return write


@pytest.fixture
def charades_file(tmp_path) -> Path:
    path = tmp_path / "charades_sta_test.txt"
    path.write_text("a 1.0 4.5##a red square appears.\nb 6.2 2.0##a blue circle moves left.\nc 0 3##nothing.\n")
    return path


@pytest.fixture(scope="session")
def engine_for(checkpoint) -> Callable[..., Engine]:
    """`engine_for(**settings)`: an Engine on the tiny checkpoint (loaded once per distinct settings)."""
    cache: dict[str, Engine] = {}

    def make(path: Path | None = None, **settings) -> Engine:
        settings.setdefault("max_new_tokens", 8)
        key = json.dumps([str(path or checkpoint), settings], sort_keys=True)
        if key not in cache:
            cache[key] = Engine(path or checkpoint, InferSettings(**settings))
        return cache[key]

    return make
