"""Reading frames with decord at a given rate, with the original E.T. Chat index arithmetic.

Frame indices are `round(arange(0, N, avg_fps / fps))` clipped to the video (model spec §3.2), so at
fps=1 frame k is the one nearest k seconds. The real time of each sampled frame is returned too.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from etchat.errors import DataError

log = logging.getLogger(__name__)


class VideoReadError(DataError):
    """A video cannot be opened or decoded, or its length is outside the allowed range."""


@dataclass
class SampledVideo:
    frames: torch.Tensor  # T x H x W x 3, uint8
    indices: list[int]  # frame numbers in the file
    times: list[float]  # seconds: index / avg_fps
    avg_fps: float
    total_frames: int

    @property
    def duration(self) -> float:
        return video_duration(self.total_frames, self.avg_fps)

    @property
    def tags(self) -> list[float]:
        """Frame times rounded to 0.1 s, as the original's `tag`."""
        return [round(t, 1) for t in self.times]


def video_duration(total_frames: int, avg_fps: float) -> float:
    """Duration as the original computes it: frames / average fps, rounded to 1 ms."""
    return round(total_frames / avg_fps, 3)


def frame_indices(total_frames: int, avg_fps: float, fps: float) -> np.ndarray:
    """Indices of the frames sampled at `fps` from a video of `total_frames` frames at `avg_fps`."""
    if total_frames <= 0 or avg_fps <= 0 or fps <= 0:
        raise ValueError(f"need positive frame count and rates, got {total_frames}, {avg_fps}, {fps}")
    return np.arange(0, total_frames, avg_fps / fps).round().astype(np.int64).clip(0, total_frames - 1)


def _read(path: str, fps: float, min_len: float, max_len: float, num_threads: int) -> SampledVideo:
    import decord

    reader = decord.VideoReader(path, num_threads=num_threads)
    total, avg_fps = len(reader), float(reader.get_avg_fps())
    if total == 0 or avg_fps <= 0:
        raise VideoReadError(f"{path}: no frames or no frame rate (frames={total}, fps={avg_fps})")
    duration = video_duration(total, avg_fps)
    if min_len >= 0 and duration < min_len:
        raise VideoReadError(f"{path}: too short ({duration} s < {min_len} s)")
    if max_len >= 0 and duration > max_len:
        raise VideoReadError(f"{path}: too long ({duration} s > {max_len} s)")
    idx = frame_indices(total, avg_fps, fps)
    batch = reader.get_batch(idx.tolist()).asnumpy()
    return SampledVideo(torch.from_numpy(batch), idx.tolist(), (idx / avg_fps).tolist(), avg_fps, total)


def read_video(
    path: str | os.PathLike, fps: float = 1.0, min_len: float = -1, max_len: float = -1, num_threads: int = 0
) -> SampledVideo:
    """Sample a video at `fps`; lengths outside [min_len, max_len] seconds (when >= 0) are refused.

    As the original, a multi-threaded decode that fails is retried with one thread.
    """
    import decord

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoReadError(f"{path}: video not found")
    try:
        return _read(path, fps, min_len, max_len, num_threads)
    except decord.DECORDError as err:
        if num_threads == 1:
            raise _unreadable(path, err) from None
        log.debug("%s: decord failed with %d threads, retrying with one: %s", path, num_threads, err)
    except RuntimeError as err:  # decord's "Error reading ..." when the file cannot be opened at all
        raise _unreadable(path, err) from None
    try:
        return _read(path, fps, min_len, max_len, 1)
    except (decord.DECORDError, RuntimeError) as err:
        raise _unreadable(path, err) from None


def _unreadable(path: str, err: Exception) -> VideoReadError:
    return VideoReadError(f"{path}: cannot decode ({str(err).splitlines()[0][:200]}); re-encode or remove the file")
