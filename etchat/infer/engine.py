"""One loaded E.T. Chat checkpoint that turns samples into answer lines: frames, prompt, batched generation, times.

Per sample (spec §5.2): frames at `fps` with the original index arithmetic, the checkpoint's transform, the phi3
prompt (`Best Option: (` and the 1.2 repetition penalty for rar/eca/rvq), generation until `<|end|>`, and each
generated `<vid>` written as its matched frame. Long videos are fitted into the context: frames are subsampled
uniformly when `max_frames` or the context (prompt + frames + `answer_reserve` <= context length) asks for it,
and the answer may never run past the context; each such sample is logged and flagged in its line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from etchat.errors import DataError
from etchat.model import MATCH_TOKEN, detokenize, load_checkpoint
from etchat.model.generation import vid_texts
from etchat.video.sampling import read_video
from etchat.video.transforms import get_transform

from .digest import checkpoint_digest
from .gpus import claim_gpu
from .prompts import build_prompt, is_multiple_choice, template_digest, template_for, tokenize_prompt
from .samples import InferSample
from .settings import InferSettings, fingerprint

log = logging.getLogger(__name__)

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass
class Prepared:
    """A sample ready for the model."""

    sample: InferSample
    prompt: str
    input_ids: list[int]
    frames: torch.Tensor  # [T, 3, S, S] in the model dtype, on the CPU
    frame_times: list[float]  # real time of each frame used
    src: list[float] | None  # what the model gets for the question's <vid>s (frame indices, maybe fractional)
    frames_sampled: int
    capped_by: str | None  # None, "max_frames" or "context"
    index_is_seconds: bool  # 1 fps and every frame kept: frame index k is k seconds (the original's setting)
    max_new_tokens: int
    seed: int | None
    video_bytes: int | None
    warnings: list[str] = field(default_factory=list)

    @property
    def multiple_choice(self) -> bool:
        return is_multiple_choice(self.sample.task)


def resolve_device(name: str) -> torch.device:
    """CPU, or the GPU this job claims (the current device; see `gpus.claim_gpu`)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DataError("infer.device is cuda but no CUDA device is visible; use device: auto or cpu")
    if name == "cuda":
        claim_gpu()
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        # The original runs fp16 on GPUs; fp16 matmuls on CPU are slow and inexact, so fp32 there.
        return torch.float16 if device.type == "cuda" else torch.float32
    return DTYPES[name]


def frame_transform(config: Any):
    """The checkpoint's `vision_processor`, at the vision tower's input size (the tiny models use 16-32 px)."""
    name, size = config.vision_processor, config.vision_image_size
    if name.startswith("clip_center_") and name != f"clip_center_{size}":
        name = f"clip_center_{size}"
    return get_transform(name)


def select_frames(total: int, keep: int) -> list[int]:
    """`keep` of `total` frame positions spread uniformly, first and last included."""
    if keep >= total:
        return list(range(total))
    if keep == 1:
        return [0]
    return np.linspace(0, total - 1, keep).round().astype(int).tolist()


def sample_seed(seed: int, key: str) -> int:
    """A per-sample seed from the run seed and the sample key: independent of batch, shard and order."""
    return int(fingerprint({"seed": seed, "key": key}), 16) % (2**63 - 1)


class Engine:
    """A checkpoint loaded for inference, with everything that identifies its answers (`fingerprint`)."""

    def __init__(self, checkpoint: str | Path, settings: InferSettings, digest_cache: str | Path | None = None) -> None:
        path = Path(checkpoint)
        if path.is_file():  # a rule may name a file of the checkpoint (e.g. its config.json)
            path = path.parent
        device = resolve_device(settings.device)
        dtype = resolve_dtype(settings.dtype, device)
        digest = checkpoint_digest(path, digest_cache)
        start = time.perf_counter()
        model, tokenizer = load_checkpoint(
            path, dtype=dtype, device=device, attn_implementation=settings.attn_implementation
        )
        if tokenizer is None:
            raise DataError(f"{path}: no tokenizer files in the checkpoint directory; save it with its tokenizer")
        if settings.attn_implementation == "sdpa":
            model.model.set_visual_attn_implementation("sdpa")
        self._setup(model, tokenizer, settings, path, digest)
        log.info("loaded %s in %.1f s", path, time.perf_counter() - start)

    @classmethod
    def from_model(
        cls, model: Any, tokenizer: Any, settings: InferSettings, name: str = "in-memory", digest: str = "in-memory"
    ) -> Engine:
        """An engine around a model already in memory (benchmarks); its device and dtype are the model's."""
        engine = cls.__new__(cls)
        engine._setup(model, tokenizer, settings, Path(name), digest)
        return engine

    def _setup(self, model: Any, tokenizer: Any, settings: InferSettings, path: Path, digest: str) -> None:
        self.checkpoint, self.settings, self.digest = path, settings, digest
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = model.lm_head.weight.device
        self.dtype = model.lm_head.weight.dtype
        config = model.config
        if not config.use_matching:
            log.warning("%s: use_matching is off (not a stage-3 checkpoint): answers will have no <vid> times", path)
        self.template = template_for(config.conv_type)
        self.transform = frame_transform(config)
        self.context_length = settings.context_length or int(config.max_position_embeddings)
        self.stop_ids = self._stop_ids()
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_ids[0]
        self.match_id = model.match_token_id
        answer = settings.answer_settings()
        answer.update(dtype=str(self.dtype).removeprefix("torch."), context_length=self.context_length)
        answer["stop_ids"] = self.stop_ids
        self.answer_settings = answer
        template = template_digest(self.template)
        self.fingerprint = fingerprint({"checkpoint": digest, "template": template, "settings": answer})
        log.info(
            "%s on %s (%s): template %s, context %d, stop ids %s, fingerprint %s",
            path,
            self.device,
            answer["dtype"],
            self.template.name,
            self.context_length,
            self.stop_ids,
            self.fingerprint,
        )

    def _stop_ids(self) -> list[int]:
        """`<|end|>` (the original's stopping keyword) plus the eos ids of the generation config and tokenizer."""
        ids: list[int] = []
        stop = self.tokenizer.convert_tokens_to_ids(self.template.sep)
        if stop is not None and stop != self.tokenizer.unk_token_id:
            ids.append(int(stop))
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for value in [eos] if isinstance(eos, int) else list(eos or []):
            ids.append(int(value))
        if self.tokenizer.eos_token_id is not None:
            ids.append(int(self.tokenizer.eos_token_id))
        if not ids:
            raise DataError(f"{self.checkpoint}: the tokenizer has no {self.template.sep} and no eos token")
        return sorted(set(ids))

    # ------------------------------------------------------------------ preparation (runs in loader threads)
    def prepare(self, sample: InferSample) -> Prepared:
        """Decode the video and build the prompt; raises DataError for a sample that cannot be answered."""
        s = self.settings
        prompt = build_prompt(self.template, sample.question, sample.task)
        input_ids = tokenize_prompt(prompt, self.tokenizer)
        text_len = len(input_ids) - 1  # the <image> placeholder becomes the frames
        video = read_video(sample.video_path, fps=s.fps, num_threads=s.video_threads)
        total = video.frames.shape[0]
        budget = self.context_length - text_len - s.answer_reserve
        if budget < 1:
            raise DataError(
                f"the prompt has {text_len} tokens: no room for frames within the context of {self.context_length} "
                f"(answer_reserve {s.answer_reserve})"
            )
        keep, capped_by, warnings = total, None, []
        if s.max_frames is not None and keep > s.max_frames:
            keep, capped_by = s.max_frames, "max_frames"
        if keep > budget:
            keep, capped_by = budget, "context"
        positions = select_frames(total, keep)
        if keep < total:
            message = (
                f"{sample.video}: {total} frames at {s.fps:g} fps, kept {keep} ({capped_by} cap; "
                f"prompt {text_len} tokens, context {self.context_length})"
            )
            log.warning("sample %s: %s", sample.key, message)
            warnings.append(message)
        frames = video.frames[positions]
        times = [video.times[i] for i in positions]
        pixels = self.transform(frames).to(self.dtype)
        index_is_seconds = keep == total and s.fps == 1
        src = None
        if sample.src:
            if index_is_seconds:
                src = [float(t) for t in sample.src]  # the model rounds seconds to frame indices (original)
            else:
                arr = np.asarray(times)
                src = [float(np.abs(arr - t).argmin()) for t in sample.src]
        max_new = min(s.max_new_tokens, self.context_length - (text_len + keep))
        if max_new < s.max_new_tokens:
            message = f"answer limited to {max_new} tokens by the context of {self.context_length}"
            log.warning("sample %s: %s", sample.key, message)
            warnings.append(message)
        return Prepared(
            sample=sample,
            prompt=prompt,
            input_ids=input_ids,
            frames=pixels,
            frame_times=times,
            src=src,
            frames_sampled=total,
            capped_by=capped_by,
            index_is_seconds=index_is_seconds,
            max_new_tokens=max_new,
            seed=sample_seed(s.seed, sample.key) if s.sampling else None,
            video_bytes=sample.video_bytes(),
            warnings=warnings,
        )

    # ------------------------------------------------------------------ generation
    def generate(self, batch: Sequence[Prepared]) -> list[dict[str, Any]]:
        """Answer lines for a batch (all multiple-choice or none: the repetition penalty is per call)."""
        s = self.settings
        if len({p.multiple_choice for p in batch}) > 1:
            raise ValueError("a batch mixes multiple-choice and other samples")
        penalty = s.repetition_penalty if batch[0].multiple_choice else None
        start = time.perf_counter()
        out = self.model.generate(
            [p.input_ids for p in batch],
            [p.frames.to(self.device) for p in batch],
            [[p.sample.question] for p in batch],
            [p.src for p in batch],
            # Each sample's own limit is applied below: a sample's tokens do not depend on the others.
            max_new_tokens=max(p.max_new_tokens for p in batch),
            do_sample=s.sampling,
            temperature=s.temperature,
            repetition_penalty=penalty,
            eos_token_id=self.stop_ids,
            pad_token_id=self.pad_id,
            seeds=[p.seed for p in batch] if s.sampling else None,
            vision_chunk_size=s.vision_chunk_size,
        )
        seconds = (time.perf_counter() - start) / len(batch)
        lines = []
        for b, p in enumerate(batch):
            ids = out.sequences[b][: p.max_new_tokens]
            n_vid = sum(pos < len(ids) for pos in out.vid_positions[b])
            lines.append(self._answer_line(p, ids, out.matched_frames[b][:n_vid], seconds, len(batch)))
        return lines

    def _answer_line(
        self, p: Prepared, ids: list[int], matched: list[int], seconds: float, batch_size: int
    ) -> dict[str, Any]:
        # Where frame index != seconds (fps != 1, subsampled frames) the real time is written whatever vid_times says.
        as_index = self.settings.vid_times == "index" and p.index_is_seconds
        values: list[float | int | None] = []
        for frame in matched:
            if frame < 0:
                values.append(None)
            elif as_index:
                values.append(int(frame))
            else:
                values.append(round(float(p.frame_times[frame]), 1))
        raw = self.tokenizer.decode(ids, skip_special_tokens=False)
        warnings = list(p.warnings)
        times = None if as_index else p.frame_times
        try:
            answer = detokenize(self.tokenizer, ids, matched, times)
        except ValueError:
            # The text spells "<vid>" with ordinary tokens too: fill in the real <vid> tokens one by one.
            answer = self._detokenize_by_token(ids, vid_texts(matched, times))
            warnings.append(f"the answer spells {MATCH_TOKEN} with ordinary tokens; filled token by token")
        stopped = bool(ids) and ids[-1] in self.stop_ids
        line = {
            **p.sample.identity(),
            "sample": p.sample.digest,
            "fingerprint": self.fingerprint,
            "status": "ok",
            "answer": answer,
            "raw": raw,
            "matched_frames": matched,
            "vid_values": values,
            "vid_seconds": [None if f < 0 else round(float(p.frame_times[f]), 3) for f in matched],
            "tokens": len(ids),
            "stopped": stopped,
            "truncated": not stopped
            and p.max_new_tokens < self.settings.max_new_tokens
            and len(ids) >= p.max_new_tokens,
            "frames": len(p.frame_times),
            "frames_sampled": p.frames_sampled,
            "fps": self.settings.fps,
            "capped_by": p.capped_by,
            "vid_times": "index" if as_index else "seconds",
            "max_new_tokens": p.max_new_tokens,
            "seed": p.seed,
            "prompt": p.prompt,
            "checkpoint": self.digest,
            "template": self.template.name,
            "decoding": self.answer_settings,
            "video_bytes": p.video_bytes,
            "batch": batch_size,
            "seconds": round(seconds, 4),
        }
        if warnings:
            line["warnings"] = warnings
        return line

    def _detokenize_by_token(self, ids: list[int], values: list[str]) -> str:
        parts, current = [], []
        for token in ids:
            if token == self.match_id:
                parts.append(self.tokenizer.decode(current, skip_special_tokens=False))
                current = []
            else:
                current.append(token)
        parts.append(self.tokenizer.decode(current, skip_special_tokens=False))
        text = parts[0] + "".join(v + part for v, part in zip(values, parts[1:], strict=True))
        for stop in (self.template.sep, "<|endoftext|>"):
            text = text.strip().removesuffix(stop)
        return text.strip()

    def error_line(self, sample: InferSample, stage: str, error: BaseException | str) -> dict[str, Any]:
        message = str(error).splitlines()[0][:500] if str(error) else type(error).__name__
        return {
            **sample.identity(),
            "sample": sample.digest,
            "fingerprint": self.fingerprint,
            "status": "error",
            "stage": stage,
            "error": message,
            "video_bytes": sample.video_bytes(),
        }
