"""Compression throughput: the sharded Snakemake rule vs plain ffmpeg over the same files, same run.

Prints wall times and the orchestration overhead of (a) `etchat compress` shard jobs (validation,
manifest, worker pool) and (b) the whole Snakemake path (list -> shards -> summary) against plain
ffmpeg commands run with the same parallelism. Target: overhead <= 5%.

    python bench/bench_compress.py [--videos 8] [--seconds 90] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ffmpeg
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from etchat.config import load_config  # noqa: E402
from etchat.video.ffmpeg import compress_stream  # noqa: E402


def make_inputs(root: Path, n: int, seconds: float) -> list[str]:
    """E.T. Bench-like inputs: 30 fps, 480p to 720p, landscape and portrait, half with audio.

    ffmpeg's testsrc2 pattern (moving, detailed) keeps the decoder and encoder as busy as real footage.
    """
    sizes = ["1280x720", "720x1280", "854x480", "640x360"]
    rels = []
    for i in range(n):
        rel = f"part{i % 3}/v{i:03d}.mp4"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        video = ffmpeg.input(f"testsrc2=size={sizes[i % len(sizes)]}:rate=30:duration={seconds}", format="lavfi")
        streams = [video]
        if i % 2 == 0:
            streams.append(ffmpeg.input(f"sine=frequency=440:duration={seconds}", format="lavfi"))
        ffmpeg.output(*streams, str(root / rel), vcodec="libx264", preset="ultrafast", pix_fmt="yuv420p").global_args(
            "-loglevel", "error"
        ).run()
        rels.append(rel)
    return rels


def plain_ffmpeg(src: Path, dst: Path, rels: list[str], workers: int, c: dict) -> float:
    def one(rel: str) -> None:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        stream = compress_stream(src / rel, dst / rel, c["fps"], c["size"], c["crf"], c["preset"], c["ffmpeg_threads"])
        subprocess.run(stream.compile(), check=True, capture_output=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, rels))
    return time.perf_counter() - start


def etchat_shards(src: Path, dst: Path, rels: list[str], workers: int, c: dict, work: Path) -> float:
    lists = [work / "l1.txt", work / "l2.txt"]
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "etchat", "list-videos", "--root", str(src), "--out", *map(str, lists)],
        check=True,
        capture_output=True,
    )
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "etchat",
                "compress",
                "--list",
                str(lst),
                "--src",
                str(src),
                "--dst",
                str(dst),
                "--manifest",
                str(work / f"m{i}.tsv"),
                "--workers",
                str(workers // 2 or 1),
                "--preset",
                c["preset"],
                "--crf",
                str(c["crf"]),
                "--ffmpeg-threads",
                str(c["ffmpeg_threads"]),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, lst in enumerate(lists)
    ]
    assert all(p.wait() == 0 for p in procs)
    return time.perf_counter() - start


def snakemake_rule(src: Path, work: Path, workers: int, c: dict) -> float:
    config = load_config([REPO / "config.yaml"])
    config["synth"]["enabled"] = False
    config["annotations"]["files"] = {}
    config["video_sets"] = {"bench": {"videos": str(src), "compressed": str(work / "smk_out"), "compress": True}}
    config["compress"].update(shards=2, workers=max(1, workers // 2))
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(work),
            "--cores",
            str(workers),
            "--quiet",
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    c = load_config([REPO / "config.yaml"])["compress"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        rels = make_inputs(tmp / "src", args.videos, args.seconds)
        print(f"inputs: {len(rels)} videos x {args.seconds:g} s (480p-720p) made in {time.perf_counter() - t0:.1f} s")
        print(f"settings: {c['fps']} fps, {c['size']} px, x264 {c['preset']} crf {c['crf']}, {args.workers} workers")
        plain = plain_ffmpeg(tmp / "src", tmp / "plain", rels, args.workers, c)
        (tmp / "w1").mkdir()
        shards = etchat_shards(tmp / "src", tmp / "w1/out", rels, args.workers, c, tmp / "w1")
        (tmp / "w2").mkdir()
        smk = snakemake_rule(tmp / "src", tmp / "w2", args.workers, c)
        shutil.rmtree(tmp / "plain")
    print(f"{'path':<38}{'wall s':>9}{'videos/s':>10}{'overhead':>10}")
    for name, t in (
        ("plain ffmpeg (baseline)", plain),
        ("etchat list + 2 shard jobs", shards),
        ("snakemake (list, shards, summary)", smk),
    ):
        print(f"{name:<38}{t:>9.2f}{len(rels) / t:>10.2f}{(t / plain - 1) * 100:>9.1f}%")
    # Snakemake's cost is mostly fixed (start-up, scheduling, the summary jobs); it vanishes on a real set.
    fixed = smk - shards
    per_video = plain * args.workers / len(rels)
    n = 7289
    # Per-video overhead as measured (python start-ups included, so an upper bound) + fixed cost spread over n.
    projected = ((shards - plain) / plain + fixed / (plain / len(rels) * n)) * 100
    print(
        f"ffmpeg seconds per video {per_video:.2f}; Snakemake fixed cost {fixed:.1f} s; "
        f"projected overhead on {n} such videos: {projected:.1f}% (target <= 5%)"
    )


if __name__ == "__main__":
    main()
