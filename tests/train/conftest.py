"""Fixtures for the training tests: a demo tokenizer built from the synthetic corpus, tiny videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from etchat.model import build_demo_tokenizer

# One thread: on a shared 2-core machine two threads oversubscribe and run several times slower.
torch.set_num_threads(1)

CORPUS = [
    "<|system|>\nYou are a helpful AI assistant.<|end|>\n<|user|>\nWhen does the red square appear?<|end|>\n"
    "<|assistant|>\nThe red square appears in <vid> - <vid> seconds.<|end|>",
    "a red square and a blue circle on a grey background. Describe the video briefly.",
    "What happens at <vid> seconds? Best Option: (A) a green triangle moves left",
]


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    return build_demo_tokenizer(CORPUS * 4, tmp_path_factory.mktemp("tok"), vocab_size=320)


@pytest.fixture(scope="session")
def make_video():
    """`make_video(path, seconds, fps=10)`: a real H.264 file of noise frames (ffmpeg), 64x48."""
    from etchat.video.ffmpeg import encode_frames

    def make(path: Path, seconds: int, fps: int = 10) -> Path:
        rng = np.random.default_rng(seconds)
        n = seconds * fps
        frames = (rng.integers(0, 255, (n, 48, 64, 3))).astype(np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        encode_frames(path, iter(frames), 64, 48, fps, n, fps)
        return path

    return make
