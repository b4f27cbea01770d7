"""Shared fixtures for the model tests: a demo tokenizer built locally and tiny random models."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers.utils import logging as hf_logging

from etchat.data.tokenization import tokenize_prompt
from etchat.model import (
    ETChatPhi3ForCausalLM,
    build_demo_tokenizer,
    match_token_id,
    tiny_config_for,
)

# One thread: on a shared 2-core machine two threads oversubscribe and run several times slower.
torch.set_num_threads(1)

# The original model's parameter layouts (names, shapes), gzipped copies of shared/fixtures/.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
hf_logging.disable_progress_bar()

CORPUS = [
    "<|system|>\nYou are a helpful AI assistant.<|end|>\n<|user|>\nWhen does the red square appear?<|end|>\n"
    "<|assistant|>\nThe red square appears from <vid> to <vid> seconds.<|end|>",
    "<|user|>\nWhat happens at <vid> seconds in the video?<|end|>\n<|assistant|>\nA blue circle moves left.<|end|>",
    "Localize the video moment according to the query 'a green triangle enters the scene'.",
    "Describe the video. There is a yellow circle, then a red triangle, then nothing.",
]


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    return build_demo_tokenizer(CORPUS * 4, tmp_path_factory.mktemp("tok"), vocab_size=320)


@pytest.fixture(scope="session")
def vid_id(tokenizer) -> int:
    return match_token_id(tokenizer)


@pytest.fixture
def make_model(tokenizer) -> Callable[..., ETChatPhi3ForCausalLM]:
    def make(seed: int = 0, **overrides) -> ETChatPhi3ForCausalLM:
        torch.manual_seed(seed)
        config = tiny_config_for(
            tokenizer,
            "test",
            **overrides,
        )
        # Dropout off so that two passes can be compared exactly.
        config.qformer_dropout = 0.0
        return ETChatPhi3ForCausalLM(config).eval()

    return make


@pytest.fixture
def make_frames() -> Callable[..., torch.Tensor]:
    """`make_frames(T, seed)`: reproducible random normalised frames `[T, 3, 16, 16]` (the "test" tiny size)."""

    def make(num_frames: int, seed: int, size: int = 16) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(num_frames, 3, size, size, generator=generator)

    return make


@pytest.fixture
def encode(tokenizer) -> Callable[[str], list[int]]:
    """Token ids with IMAGE_TOKEN_INDEX for each `<image>`, as the data code makes them."""
    return lambda text: tokenize_prompt(text, tokenizer)


@pytest.fixture(scope="session")
def layout_fixture() -> Callable[[str], dict]:
    """`layout_fixture("stage3")`: the original model's layout (shared/fixtures/etchat_phi3_<name>_layout.json)."""

    def load(name: str) -> dict:
        with gzip.open(FIXTURES / f"etchat_phi3_{name}_layout.json.gz", "rt") as f:
            return json.load(f)

    return load
