"""Dry-run (`snakemake -n`) time and memory for a video set of 164,000 files (E.T. Instruct's size).

Creates 164,000 empty .mp4 files in nested folders, points one video set at them (synthesis off),
and times `snakemake -n` (which fingerprints the listing) and the real listing job
(`etchat list-videos`, which stats every file and balances the shards). Target: dry run <= 30 s.

    python bench/bench_dryrun.py [--videos 164000] [--shards 64]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from etchat.config import load_config  # noqa: E402


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds and peak RSS (MB) of a child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
    return wall, max(peak, before) / 1024, proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=164_000)
    parser.add_argument("--shards", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        videos = work / "data/et_instruct_164k/videos"
        start = time.perf_counter()
        made: set[Path] = set()
        for i in range(args.videos):
            folder = videos / f"src{i % 8}" / f"{i // 1000:03d}"
            if folder not in made:
                folder.mkdir(parents=True, exist_ok=True)
                made.add(folder)
            (folder / f"{i:06d}.mp4").touch()
        print(f"created {args.videos} files in {time.perf_counter() - start:.1f} s")
        config = load_config([REPO / "config.yaml"])
        config["synth"]["enabled"] = False
        config["annotations"]["files"] = {}
        config["video_sets"] = {
            "et_instruct": {
                "videos": str(videos.relative_to(work)),
                "compressed": "data/et_instruct_164k/videos_compressed",
                "compress": True,
            }
        }
        config["compress"]["shards"] = args.shards
        (work / "config.yaml").write_text(yaml.safe_dump(config))
        smk = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "-n", "--quiet"]
        wall, rss, proc = timed(smk, work)
        print(
            f"snakemake -n ({args.shards} shards): {wall:.2f} s, peak RSS {rss:.0f} MB "
            f"(target <= 30 s) -> {'OK' if wall <= 30 else 'MISSED'}"
        )
        lists = [str(work / f"lists/{i}.txt") for i in range(args.shards)]
        cmd = [sys.executable, "-m", "etchat", "list-videos", "--root", str(videos), "--out", *lists]
        wall, _, _ = timed(cmd, work)
        sizes = [sum(1 for _ in open(p)) for p in lists]
        print(
            f"etchat list-videos (stat + balance into {args.shards} lists): {wall:.2f} s, "
            f"{min(sizes)}-{max(sizes)} videos per shard"
        )
        print(f"cpu count {os.cpu_count()}")


if __name__ == "__main__":
    main()
