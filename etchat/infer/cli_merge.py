"""`etchat infer-merge`: shard logs -> predictions.json (E.T. Bench: the annotation list + `a`) and a summary."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from etchat.io import write_json_atomic

from .merge import merge, read_shard_summaries
from .samples import load_samples
from .settings import ON_ERROR

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--benchmark", required=True, choices=("etbench", "charades"))
    parser.add_argument("--annotations", required=True, type=Path, help="the list the shards answered")
    parser.add_argument("--video-root", required=True, type=Path, help="the video folder the shards read")
    parser.add_argument("--shards", required=True, nargs="+", type=Path, help="every shard's summary JSON")
    parser.add_argument("--out", required=True, type=Path, help="predictions JSON to write")
    parser.add_argument("--summary", required=True, type=Path, help="merge summary JSON to write")
    parser.add_argument(
        "--on-error",
        choices=ON_ERROR,
        default="empty",
        help="samples whose video could not be read: empty answer (scored as failed) or stop",
    )
    parser.add_argument("--limit", type=int, default=None, help="the shards' --limit, if any")


def run(args: argparse.Namespace) -> int:
    samples = load_samples(args.benchmark, args.annotations, args.video_root)
    if args.limit is not None:
        samples = samples[: args.limit]
    result = merge(args.benchmark, samples, read_shard_summaries(args.shards), args.on_error)
    write_json_atomic(args.out, result.predictions)
    write_json_atomic(args.summary, result.summary)
    s = result.summary
    log.info(
        "%s: %d samples, %d answered, %d errors (empty answers), %d capped, %d truncated; wrote %s and %s",
        args.benchmark,
        s["samples"],
        s["answered"],
        s["errors"],
        s["capped"],
        s["truncated"],
        args.out,
        args.summary,
    )
    return 0
