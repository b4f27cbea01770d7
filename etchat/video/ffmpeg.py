"""ffmpeg and ffprobe through ffmpeg-python: probing, encoding raw frames, and the compression command."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import ffmpeg
import numpy as np

from etchat.io import atomic_path


class ProbeError(RuntimeError):
    """ffprobe could not read the file, or it has no video stream."""


@dataclass(frozen=True)
class VideoInfo:
    width: int  # as displayed: a phone video's rotation metadata applied (ffmpeg's output is turned upright)
    height: int
    fps: float  # average frame rate of the video stream
    duration: float  # seconds: the video stream's duration, else the container's
    frames: int | None  # frame count from the container, when it records one
    has_audio: bool


def _rate(text: str | None) -> float:
    if not text or text in ("0/0", "0"):
        return 0.0
    return float(Fraction(text))


def probe(path: str | os.PathLike, timeout: float = 60) -> VideoInfo:
    """Read a file's video stream properties with ffprobe; raise ProbeError with the reason."""
    path = Path(path)
    if path.is_dir():
        raise ProbeError("a folder named like a video, not a video file")
    if not path.is_file():
        raise ProbeError("not a regular file (a pipe, socket or device)" if path.exists() else "file not found")
    if path.stat().st_size == 0:
        raise ProbeError("empty file (0 bytes)")
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise ProbeError(f"unreadable: {err.strerror}") from None
    try:
        info = ffmpeg.probe(str(path), timeout=timeout)
    except ffmpeg.Error as err:
        lines = (err.stderr or b"").decode(errors="replace").strip().splitlines()
        raise ProbeError(f"ffprobe cannot read it: {lines[-1] if lines else 'unknown error'}") from None
    except subprocess.TimeoutExpired:
        raise ProbeError(f"ffprobe timed out after {timeout} s") from None
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video" and not _is_cover_art(s)), None)
    if video is None:
        raise ProbeError("no video stream")
    fmt = info.get("format", {})
    if "image2" in fmt.get("format_name", "") or fmt.get("format_name", "").endswith("_pipe"):
        raise ProbeError(f"not a video: an image ({video.get('codec_name')})")
    # The video stream's own duration: an audio track may run longer than the pictures.
    duration = float(video.get("duration") or fmt.get("duration") or 0.0)
    frames = video.get("nb_frames")
    if frames == "0":
        raise ProbeError("no frames (its video stream is empty)")
    width, height = int(video["width"]), int(video["height"])
    if _rotation(video) % 180 == 90:
        width, height = height, width
    return VideoInfo(
        width=width,
        height=height,
        fps=_rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate")),
        duration=duration,
        frames=int(frames) if frames not in (None, "N/A") else None,
        has_audio=any(s.get("codec_type") == "audio" for s in streams),
    )


def _rotation(stream: dict) -> int:
    """Degrees the player turns the pictures: the display matrix's rotation, or the older `rotate` tag."""
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            return round(float(side["rotation"]))
    try:
        return round(float((stream.get("tags") or {}).get("rotate", 0)))
    except ValueError:
        return 0


def _is_cover_art(stream: dict) -> bool:
    return bool(stream.get("disposition", {}).get("attached_pic"))


def encode_frames(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    width: int,
    height: int,
    fps: int,
    n_frames: int,
    frame_rate_in: int,
    audio: bool = False,
    crf: int = 23,
) -> None:
    """Encode RGB frames drawn at `frame_rate_in` to an H.264 MP4 of `n_frames` frames at `fps`.

    Each output frame shows the last drawn frame at or before its time (fps filter, round=down), so
    what is visible at time t is exactly what was drawn for t. Written atomically, optionally with a
    sine-tone audio track. Odd frame sizes are encoded as yuv444p: 4:2:0 chroma needs even sides.
    """
    pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    with atomic_path(path) as tmp:
        drawn = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", r=frame_rate_in)
        streams = [drawn.video.filter("fps", fps=fps, round="down")]
        kwargs = {"vcodec": "libx264", "pix_fmt": pix_fmt, "preset": "ultrafast", "crf": crf, "frames:v": n_frames}
        if audio:
            streams.append(ffmpeg.input("sine=frequency=440:sample_rate=22050", format="lavfi", t=n_frames / fps))
            kwargs.update(acodec="aac", audio_bitrate="32k")
        out = ffmpeg.output(*streams, str(tmp), **kwargs).global_args("-hide_banner", "-loglevel", "error", "-nostdin")
        proc = out.overwrite_output().run_async(pipe_stdin=True, pipe_stderr=True)
        try:
            for frame in frames:
                proc.stdin.write(frame.tobytes())
        except BrokenPipeError:
            pass
        finally:
            proc.stdin.close()
        stderr = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg failed to encode {path}: {stderr.strip()}")


def compress_stream(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    fps: float,
    size: int,
    crf: int,
    preset: str,
    threads: int,
    container: str = "mp4",
    keep_last: bool = False,
):
    """The compression command: `fps` frames/s, shortest side `size` with aspect kept and even sides, no audio.

    The same filter as E.T. Bench's compress_videos.py; -2 rounds the other side to an even number.
    `container` is mp4 or matroska (for .mkv/.webm names, which hold H.264 in a Matroska file). `keep_last` lets
    the fps filter pass a last frame it would drop at the end of the input (`eof_action=pass`): for a video shorter
    than one output interval, which the plain filter turns into an output with no frame at all.
    """
    video = (
        ffmpeg.input(str(src))
        .video.filter("fps", fps=fps, **({"eof_action": "pass"} if keep_last else {}))
        .filter("scale", f"if(gt(iw,ih),-2,{size})", f"if(gt(iw,ih),{size},-2)")
    )
    options = {"vcodec": "libx264", "pix_fmt": "yuv420p", "crf": crf, "preset": preset, "threads": threads}
    if container == "mp4":
        options["movflags"] = "+faststart"
    return (
        ffmpeg.output(video, str(dst), an=None, sn=None, f=container, **options)
        .global_args("-hide_banner", "-loglevel", "error", "-nostdin")
        .overwrite_output()
    )
