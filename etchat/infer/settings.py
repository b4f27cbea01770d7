"""Inference settings (the `infer:` config section) and the fingerprint of what produces an answer.

Faithful defaults (spec §5.2): temperature-0.2 sampling (seeded here, per sample), 1.2 repetition penalty for the
multiple-choice tasks, up to 2048 new tokens, 1 fps, no frame cap, `<vid>` written as the matched frame index.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any

from etchat.errors import ConfigError

DECODING_MODES = ("paper", "greedy")
VID_TIMES = ("index", "seconds")
DTYPES = ("auto", "float16", "bfloat16", "float32")
DEVICES = ("auto", "cpu", "cuda")
ATTENTION = ("eager", "sdpa")
ON_ERROR = ("empty", "fail")

# Bumped when the code that turns a sample into a prompt or an answer changes meaning: old lines become stale.
ANSWER_FORMAT_VERSION = 1


@dataclass(frozen=True)
class InferSettings:
    """How answers are produced. Every field that can change an answer is part of `answer_settings()`."""

    # `paper`: sampling at `temperature` (no top-k/top-p), seeded per sample; `greedy`: argmax.
    decoding: str = "paper"
    temperature: float = 0.2
    seed: int = 0
    max_new_tokens: int = 2048
    # Applied to rar/eca/rvq only, to every prompt or output token except <vid> and the frames (as the original).
    repetition_penalty: float = 1.2
    fps: float = 1.0
    # Frames kept at most per video (uniformly subsampled), None: no cap (the original).
    max_frames: int | None = None
    # Positions the model may use (None: the checkpoint's max_position_embeddings, 4096 for Phi-3).
    context_length: int | None = None
    # Positions kept free for the answer when fitting a long video into the context.
    answer_reserve: int = 512
    # How a generated <vid> is written: `index` (the matched frame index, = seconds at 1 fps: the original) or
    # `seconds` (the real time of the matched frame, to 0.1 s). Forced to `seconds` when index != seconds.
    vid_times: str = "index"
    batch_size: int = 1
    device: str = "auto"
    dtype: str = "auto"
    attn_implementation: str = "eager"
    # Frames per vision-tower call (None: all frames of a batch at once).
    vision_chunk_size: int | None = None
    # decord threads per video (the original: 1), and videos decoded ahead of the model.
    video_threads: int = 1
    loader_workers: int = 2
    # Answer only the first N samples of the list (smoke runs); None: all.
    limit: int | None = None

    def __post_init__(self) -> None:
        checks = {
            "decoding": (self.decoding, DECODING_MODES),
            "vid_times": (self.vid_times, VID_TIMES),
            "dtype": (self.dtype, DTYPES),
            "device": (self.device, DEVICES),
            "attn_implementation": (self.attn_implementation, ATTENTION),
        }
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise ConfigError(f"infer.{key}: value {value!r} is not allowed; allowed: {', '.join(allowed)}")
        positive = {
            "temperature": self.temperature,
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
            "fps": self.fps,
            "batch_size": self.batch_size,
            "video_threads": self.video_threads,
            "loader_workers": self.loader_workers,
        }
        for key in ("max_frames", "context_length", "vision_chunk_size", "limit"):
            if getattr(self, key) is not None:
                positive[key] = getattr(self, key)
        for key, value in positive.items():
            if not value > 0:
                raise ConfigError(f"infer.{key}: value {value!r} must be > 0")
        if self.answer_reserve < 1:
            raise ConfigError(f"infer.answer_reserve: value {self.answer_reserve!r} must be >= 1")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InferSettings:
        """From the `infer:` config section (keys that are not settings, e.g. `checkpoint`, are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes: Any) -> InferSettings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def sampling(self) -> bool:
        return self.decoding == "paper"

    def answer_settings(self) -> dict[str, Any]:
        """The settings an answer depends on (batch size, device and loader settings do not change answers)."""
        out: dict[str, Any] = {
            "decoding": self.decoding,
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
            "fps": self.fps,
            "max_frames": self.max_frames,
            "context_length": self.context_length,
            "answer_reserve": self.answer_reserve,
            "vid_times": self.vid_times,
            "dtype": self.dtype,
            "attn_implementation": self.attn_implementation,
            "format_version": ANSWER_FORMAT_VERSION,
        }
        if self.sampling:
            out.update(temperature=self.temperature, seed=self.seed)
        return out


def fingerprint(parts: dict[str, Any]) -> str:
    """A short digest of a JSON-able description (sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
