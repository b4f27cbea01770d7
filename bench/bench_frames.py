"""Frame throughput of the training data path per CPU core, against what one GPU consumes.

A real-length sample: a 146 s video (E.T. Instruct's mean) compressed as the pipeline compresses (3 fps, 224 px
shortest side, H.264), read at 1 fps (`etchat.video.sampling.read_video`, decord, one thread) and transformed by
the model's `clip_center_224` (`etchat.video.transforms`), in one process with one torch thread, as a dataloader
worker does. Reports frames/s and samples/s per core for decoding, transforming and both, and how many loader
workers one GPU needs at a given consumption (default: 5 samples/s, a stage-3 step of 0.2 s; the H200 measured
0.55 s per step, see README) and whether `--workers` (the paper's 4 per GPU) keep up.

Usage: python bench/bench_frames.py [--seconds 146] [--repeats 5] [--gpu-samples-per-s 5] [--workers 4] [--quick]
(`--quick`: a 20 s video, 2 repeats, to check the script.)
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from etchat.video.sampling import read_video  # noqa: E402
from etchat.video.transforms import get_transform  # noqa: E402


def write_video(path: Path, seconds: int) -> None:
    """A 398x224 (16:9 at 224 px shortest side), 3 fps H.264 video, as the compression step writes them."""
    source = f"testsrc2=size=398x224:rate=3:duration={seconds}"
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-pix_fmt", "yuv420p", "-c:v", "libx264"]
    subprocess.run([*cmd, str(path)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=146)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--gpu-samples-per-s", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats = 20, 2
    torch.set_num_threads(1)
    transform = get_transform("clip_center_224")
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "sample.mp4"
        write_video(video, args.seconds)
        read_video(video, fps=1, num_threads=1)  # warm-up: decord, file cache
        decode, apply, frames = [], [], 0
        for _ in range(args.repeats):
            start = time.perf_counter()
            sampled = read_video(video, fps=1, num_threads=1)
            middle = time.perf_counter()
            out = transform(sampled.frames)
            end = time.perf_counter()
            decode.append(middle - start)
            apply.append(end - middle)
            frames = int(out.shape[0])
    decode_s, apply_s = statistics.median(decode), statistics.median(apply)
    total_s = decode_s + apply_s
    per_core = 1 / total_s
    need = args.gpu_samples_per_s
    workers_needed = math.ceil(need / per_core)
    figures = {
        "seconds": args.seconds,
        "frames": frames,
        "decode_s": round(decode_s, 4),
        "transform_s": round(apply_s, 4),
        "decode_frames_per_s": round(frames / decode_s, 1),
        "transform_frames_per_s": round(frames / apply_s, 1),
        "frames_per_s_per_core": round(frames / total_s, 1),
        "samples_per_s_per_core": round(per_core, 2),
        "gpu_samples_per_s": need,
        "gpu_frames_per_s": round(need * frames, 1),
        "workers_needed_per_gpu": workers_needed,
        "workers": args.workers,
        "workers_keep_up": args.workers * per_core >= need,
    }
    for key, value in figures.items():
        print(f"{key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
