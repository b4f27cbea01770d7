"""Compressing one shard of a video set: 3 fps, 224 px shortest side, no audio, checked.

For each video of its list a shard job:
- reuses an existing output that passes validation (a re-run after a kill redoes no valid work);
- otherwise runs ffmpeg into a temporary file beside the output, validates it (frame rate, shortest
  side, even sides, aspect, duration, no audio, every frame decodable) and only then renames it;
- records one manifest row per video. A video that fails is listed with its reason and never stops
  the others; its original is never copied in place of an output.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from tqdm import tqdm

from etchat.errors import DataError
from etchat.io import atomic_path, remove_stale_temporaries, resolve_inside, write_tsv_atomic
from etchat.video.ffmpeg import ProbeError, VideoInfo, compress_stream, probe
from etchat.video.listing import read_list

log = logging.getLogger(__name__)

MP4_LIKE = frozenset({".mp4", ".m4v", ".mov"})


@dataclass(frozen=True)
class CompressSettings:
    fps: float = 3.0
    size: int = 224
    crf: int = 23
    preset: str = "medium"
    ffmpeg_threads: int = 1
    duration_tolerance: float = 0.5
    timeout: float = 1800.0


@dataclass
class ManifestRow:
    path: str
    status: str  # ok | failed | decoded_with_errors (ffmpeg decoded past corrupt packets; treated as failed)
    action: str  # compressed | reused | checked | none
    in_duration: float | None = None
    out_duration: float | None = None
    in_size: str = ""  # WxH
    out_size: str = ""
    frames: int | None = None
    seconds: float = 0.0
    error: str = ""


MANIFEST_COLUMNS = [f.name for f in fields(ManifestRow)]


def _measures(info: VideoInfo) -> tuple[float, str]:
    """A manifest row's duration and WxH size fields for a probed video."""
    return round(info.duration, 3), f"{info.width}x{info.height}"


class _Invalid(Exception):
    """Raised inside the atomic block to drop an output that failed validation."""


def output_problem(out: VideoInfo, src: VideoInfo, s: CompressSettings) -> str | None:
    """Why `out` is not a valid compression of `src`, or None when it is."""
    if abs(out.fps - s.fps) > 0.01:
        return f"frame rate {out.fps:g} instead of {s.fps:g}"
    if min(out.width, out.height) != s.size:
        return f"shortest side {min(out.width, out.height)} instead of {s.size}"
    if out.width % 2 or out.height % 2:
        return f"odd frame size {out.width}x{out.height}"
    if (out.width > out.height) != (src.width > src.height) and src.width != src.height:
        return f"orientation changed: {src.width}x{src.height} -> {out.width}x{out.height}"
    long_side = max(src.width, src.height) * s.size / min(src.width, src.height)
    if abs(max(out.width, out.height) - long_side) > 2.01:
        return f"aspect ratio not kept: {src.width}x{src.height} -> {out.width}x{out.height}"
    if out.has_audio:
        return "output has an audio stream"
    if abs(out.duration - src.duration) > s.duration_tolerance:
        return f"duration {out.duration:.3f} s differs from the input's {src.duration:.3f} s"
    return None


def _decode_check(path: Path, header_frames: int | None) -> tuple[int, str | None]:
    """Count the frames and read the last one: a truncated or corrupt file fails here even when its
    header looks fine. Matroska headers carry no frame count, so the decoded count is the one recorded."""
    import decord

    try:
        reader = decord.VideoReader(str(path), num_threads=1)
        frames = len(reader)
        if frames == 0:
            return 0, "output has no decodable frames"
        reader[frames - 1]
    except Exception as err:  # decord raises its own error types
        return 0, f"output does not decode: {str(err).splitlines()[0][:200]}"
    if header_frames is not None and abs(frames - header_frames) > 1:
        return frames, f"output decodes to {frames} frames, its header says {header_frames}"
    return frames, None


def validate_output(
    path: Path, src: VideoInfo, s: CompressSettings, decode: bool = True
) -> tuple[VideoInfo | None, int, str | None]:
    """Probe (and decode) an output; return its properties, its frame count and why it is invalid (or None).

    An output ffmpeg has just written completely needs no decoding when its header counts its frames;
    an existing output about to be reused is always decoded, since nothing is known of how it was made.
    """
    try:
        out = probe(path)
    except ProbeError as err:
        return None, 0, f"output unreadable: {err}"
    problem = output_problem(out, src, s)
    if problem is not None or (not decode and out.frames):
        return out, out.frames or 0, problem
    frames, problem = _decode_check(path, out.frames)
    return out, frames, problem


# A video ffmpeg decoded past errors (corrupt packets): its output would hide broken or frozen frames.
DECODE_ERRORS = "input: decoded with errors"


def _ffmpeg(src: Path, tmp: Path, s: CompressSettings, container: str, keep_last: bool = False) -> str | None:
    stream = compress_stream(src, tmp, s.fps, s.size, s.crf, s.preset, s.ffmpeg_threads, container, keep_last)
    try:
        result = subprocess.run(stream.compile(), capture_output=True, timeout=s.timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"ffmpeg timed out after {s.timeout:g} s"
    lines = result.stderr.decode(errors="replace").strip().splitlines()
    if result.returncode != 0:
        return f"ffmpeg failed: {lines[-1] if lines else f'exit code {result.returncode}'}"
    if lines:  # at -loglevel error ffmpeg prints only errors: here, corrupt packets it decoded past
        return f"{DECODE_ERRORS} ({len(lines)} error lines), first: {lines[0][:200]}"
    return None


def _source(root: Path, rel: str) -> Path:
    """The input file behind `rel`, links followed (raises for a dangling link or one that leaves `root`)."""
    link = root / rel
    if link.is_symlink() and not link.exists():
        raise ProbeError(f"dangling symbolic link (its target {os.readlink(link)} does not exist)")
    return resolve_inside(root, rel)


def _compress_once(
    src: Path, tmp: Path, info: VideoInfo, s: CompressSettings, container: str, keep_last: bool = False
) -> tuple[VideoInfo | None, int, str | None]:
    """Run ffmpeg into `tmp` and check what it wrote: (output, frames, problem or None)."""
    problem = _ffmpeg(src, tmp, s, container, keep_last)
    if problem is not None:
        return None, 0, problem
    return validate_output(tmp, info, s, decode=False)


def compress_video(src_root: Path, dst_root: Path, rel: str, s: CompressSettings) -> ManifestRow:
    start = time.monotonic()
    row = ManifestRow(path=rel, status="failed", action="none")
    try:
        try:
            src, dst = _source(src_root, rel), resolve_inside(dst_root, rel)
            info = probe(src)
        except (ProbeError, DataError) as err:
            row.error = f"input: {err}"
            return row
        row.in_duration, row.in_size = _measures(info)
        if info.duration <= 0:
            row.error = "input: zero duration"
            return row
        if dst.exists():
            out, frames, problem = validate_output(dst, info, s)
            if problem is None:
                row.status, row.action = "ok", "reused"
                row.out_duration, row.out_size = _measures(out)
                row.frames = frames
                return row
            log.info("%s: redoing an invalid output (%s)", rel, problem)
        remove_stale_temporaries(dst)
        container = "mp4" if dst.suffix.lower() in MP4_LIKE else "matroska"
        with atomic_path(dst) as tmp:
            out, frames, problem = _compress_once(src, tmp, info, s, container)
            if problem is not None and info.duration < 2 / s.fps and not frames:
                # The original command leaves a video shorter than about one 1/fps interval without a frame;
                # letting the filter keep its last frame gives it one (longer videos never take this path).
                out, frames, problem = _compress_once(src, tmp, info, s, container, keep_last=True)
                if problem is None:
                    log.info("%s: %.3f s, shorter than one frame interval: its last frame kept", rel, info.duration)
                else:
                    problem = f"input: too short to sample at {s.fps:g} fps ({info.duration:.3f} s): {problem}"
            if problem is not None:
                row.error = problem
                if problem.startswith(DECODE_ERRORS):
                    row.status = "decoded_with_errors"
                raise _Invalid  # leaves the block without renaming; the temporary file is removed
            row.status, row.action = "ok", "compressed"
            row.out_duration, row.out_size = _measures(out)
            row.frames = frames
    except _Invalid:
        pass
    except Exception as err:  # one broken video must never stop the shard
        row.error = f"{type(err).__name__}: {err}"
    finally:
        row.seconds = round(time.monotonic() - start, 3)
    return row


def check_video(src_root: Path, rel: str) -> ManifestRow:
    """For a set that is already compressed: record that the video is readable, change nothing."""
    start = time.monotonic()
    row = ManifestRow(path=rel, status="failed", action="checked")
    try:
        info = probe(_source(src_root, rel))
        row.in_duration, row.in_size = _measures(info)
        row.status = "ok"
        row.frames = info.frames
    except Exception as err:
        row.error = f"input: {err}"
    row.seconds = round(time.monotonic() - start, 3)
    return row


def write_manifest(path: str | os.PathLike, rows: list[ManifestRow]) -> None:
    write_tsv_atomic(path, MANIFEST_COLUMNS, (["" if v is None else v for v in asdict(row).values()] for row in rows))


def read_manifest(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def run_shard(
    video_list: str | os.PathLike,
    src_root: str | os.PathLike,
    dst_root: str | os.PathLike | None,
    manifest: str | os.PathLike,
    settings: CompressSettings,
    workers: int = 1,
) -> list[ManifestRow]:
    """Compress (or, with `dst_root` None, only check) every video of a shard list; write the manifest."""
    rels = read_list(video_list)
    src, dst = Path(src_root), Path(dst_root) if dst_root else None

    def one(rel: str) -> ManifestRow:
        return compress_video(src, dst, rel, settings) if dst is not None else check_video(src, rel)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        rows = list(tqdm(pool.map(one, rels), total=len(rels), desc=Path(video_list).stem, unit="video", disable=None))
    for row in rows:
        if row.status != "ok":
            log.warning("%s: %s", row.path, row.error)
    write_manifest(manifest, rows)
    failed = sum(r.status != "ok" for r in rows)
    log.info(
        "%s: %d videos, %d compressed, %d reused, %d failed",
        video_list,
        len(rows),
        sum(r.action == "compressed" for r in rows),
        sum(r.action == "reused" for r in rows),
        failed,
    )
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list", required=True, help="the shard's list of videos (paths relative to --src)")
    parser.add_argument("--src", required=True, help="the set's video folder")
    parser.add_argument("--dst", help="the compressed folder (mirrors --src); leave out to only check the videos")
    parser.add_argument("--manifest", required=True, help="manifest TSV to write (one row per video)")
    parser.add_argument("--workers", type=int, default=1, help="ffmpeg processes side by side")
    defaults = CompressSettings()
    parser.add_argument("--fps", type=float, default=defaults.fps)
    parser.add_argument("--size", type=int, default=defaults.size, help="shortest side in pixels")
    parser.add_argument("--crf", type=int, default=defaults.crf)
    parser.add_argument("--preset", default=defaults.preset)
    parser.add_argument("--ffmpeg-threads", type=int, default=defaults.ffmpeg_threads)
    parser.add_argument("--duration-tolerance", type=float, default=defaults.duration_tolerance)
    parser.add_argument("--timeout", type=float, default=defaults.timeout, help="seconds per video")


def run(args: argparse.Namespace) -> int:
    settings = CompressSettings(
        fps=args.fps,
        size=args.size,
        crf=args.crf,
        preset=args.preset,
        ffmpeg_threads=args.ffmpeg_threads,
        duration_tolerance=args.duration_tolerance,
        timeout=args.timeout,
    )
    run_shard(args.list, args.src, args.dst, args.manifest, settings, args.workers)
    return 0
