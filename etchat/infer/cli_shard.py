"""`etchat infer-shard`: answer one shard of E.T. Bench or Charades-STA, resuming from its JSONL log."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from etchat.io import write_json_atomic
from etchat.video.compress import read_manifest

from .cli_common import add_settings_arguments, set_threads, settings_from_args
from .engine import Engine
from .runner import ShardRunner
from .samples import load_samples, parse_shard, shard_of

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", required=True, choices=("etbench", "charades"))
    parser.add_argument(
        "--annotations", required=True, type=Path, help="the checked E.T. Bench vid list or Charades-STA list"
    )
    parser.add_argument("--video-root", required=True, type=Path, help="folder the annotation's video paths are in")
    parser.add_argument("--checkpoint", required=True, type=Path, help="E.T. Chat checkpoint directory")
    parser.add_argument("--shard", default="1-of-1", help="which shard, I-of-N (strided: sample i goes to i mod N)")
    parser.add_argument("--log", required=True, type=Path, help="the shard's answer log (JSONL, appended, resumed)")
    parser.add_argument("--summary", required=True, type=Path, help="shard summary JSON to write when done")
    parser.add_argument(
        "--manifest", type=Path, help="the video set's compression manifest.tsv (names why a video is missing)"
    )
    add_settings_arguments(parser)


def failed_videos(manifest: Path | None) -> dict[str, str]:
    """Videos the compression step could not produce, with its reason."""
    if manifest is None or not manifest.is_file():
        return {}
    return {
        row["path"]: row.get("error") or row["status"] for row in read_manifest(manifest) if row.get("status") != "ok"
    }


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    set_threads(args.threads)
    shard, shards = parse_shard(args.shard)
    samples = load_samples(args.benchmark, args.annotations, args.video_root)
    if settings.limit is not None:
        samples = samples[: settings.limit]
    mine = [s for s in samples if shard_of(s.index, shard, shards)]
    engine = Engine(args.checkpoint, settings, digest_cache=args.log.parent / ".checkpoint_digests.json")
    runner = ShardRunner(engine, args.benchmark, args.log)
    runner.failed_videos = failed_videos(args.manifest)
    summary = runner.run(mine, shard, shards)
    write_json_atomic(args.summary, summary.to_dict())
    log.info("wrote %s", args.summary)
    return 0
