"""Helpers shared by the inference tests (fixtures are in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from etchat.data.synth.scene import RENDER_RATE, make_scene, render_frames
from etchat.model import ETChatPhi3ForCausalLM, build_demo_tokenizer, save_checkpoint, tiny_config_for
from etchat.video.ffmpeg import encode_frames

CORPUS = [
    "<|system|>\nYou are a helpful AI assistant.<|end|>\n<|user|>\nWhen does the red square appear?<|end|>\n"
    "<|assistant|>\nThe red square appears from <vid> to <vid> seconds.<|end|>",
    "<|user|>\nWhat happens at <vid> seconds? Options: (A) a blue circle moves left (B) nothing<|end|>\n"
    "<|assistant|>\nBest Option: (A) a blue circle moves left<|end|>",
    "Localize the video moment according to the query 'a green triangle enters the scene'.",
]

# (name, seconds, fps, width, height)
VIDEOS = [("a.mp4", 9.0, 25, 320, 240), ("b.mp4", 12.0, 30, 240, 320), ("c.mp4", 8.0, 25, 320, 240)]


def make_checkpoint(out: Path, seed: int) -> Path:
    tokenizer = build_demo_tokenizer(CORPUS * 4, out / "tokenizer", vocab_size=300)
    torch.manual_seed(seed)
    config = tiny_config_for(
        tokenizer,
        "test",
    )
    model = ETChatPhi3ForCausalLM(config).eval()
    return save_checkpoint(model, out / "checkpoint", tokenizer, dtype=torch.float32)


def write_videos(root: Path) -> None:
    (root / "sub").mkdir(parents=True, exist_ok=True)
    for k, (name, seconds, fps, width, height) in enumerate(VIDEOS):
        scene = make_scene(np.random.default_rng(k), width, height, fps, seconds, 2, False)
        encode_frames(root / "sub" / name, render_frames(scene), width, height, fps, scene.n_frames, RENDER_RATE)
    (root / "sub" / "broken.mp4").write_bytes(b"not a video at all" * 100)


def etbench_records() -> list[dict]:
    """A small E.T. Bench vid list: multiple-choice with <vid> (rar, eca), grounding, captioning, a repeated idx."""
    opts = ["a blue circle moves left", "a red square appears", "nothing happens", "a green triangle moves"]
    return [
        {"version": 1.0, "idx": 0, "task": "rar", "source": "s", "video": "sub/a.mp4", "duration": 9.0, "src": [2.4],
         "p": 1, "o": opts, "q": "What is happening at <vid> seconds? Options: (A) x (B) y (C) z (D) w."},
        {"version": 1.0, "idx": 0, "task": "tvg", "source": "s", "video": "sub/b.mp4", "duration": 12.0,
         "tgt": [2.0, 5.5], "q": "When does the red square appear? Answer with the start and end timestamps."},
        {"version": 1.0, "idx": 0, "task": "eca", "source": "s", "video": "sub/c.mp4", "duration": 8.0,
         "src": [1.0, 3.0, 2.0, 4.0, 0.5, 1.5, 5.0, 7.0], "p": 0, "o": [[1.0, 3.0], [2.0, 4.0], [0.5, 1.5], [5, 7]],
         "q": "Which segment? (A) <vid> - <vid> (B) <vid> - <vid> (C) <vid> - <vid> (D) <vid> - <vid>."},
        {"version": 1.0, "idx": 1, "task": "tvg", "source": "s", "video": "sub/a.mp4", "duration": 9.0,
         "tgt": [1.0, 2.0], "q": "When does the blue circle move left?"},
        {"version": 1.0, "idx": 0, "task": "dvc", "source": "s", "video": "sub/c.mp4", "duration": 8.0,
         "tgt": [[0.0, 2.0]], "g": ["a thing"], "q": "Describe every event with its start and end time."},
        {"version": 1.0, "idx": 1, "task": "dvc", "source": "s", "video": "sub/b.mp4", "duration": 12.0,
         "tgt": [[0.0, 2.0]], "g": ["a thing"], "q": "Localize the events and describe them."},
    ]  # fmt: skip
