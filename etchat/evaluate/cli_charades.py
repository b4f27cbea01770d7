"""`etchat score-charades PREDICTIONS`: Charades-STA R1@0.3/0.5/0.7 and mIoU."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from etchat.evaluate.charades import charades_metrics, format_charades, load_charades_predictions
from etchat.io import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "predictions",
        type=Path,
        help="a JSON list of {vid, query, span, pred, response}, or a directory of such *.json",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="where to write metrics.json and metrics.log (default: the predictions' directory)",
    )


def run(args: argparse.Namespace) -> int:
    metrics = charades_metrics(load_charades_predictions(args.predictions))
    out_dir = args.out_dir or (args.predictions if args.predictions.is_dir() else args.predictions.parent)
    text = format_charades(metrics)
    write_json_atomic(out_dir / "metrics.json", metrics, indent=4)
    write_text_atomic(out_dir / "metrics.log", text)
    for line in text.splitlines():
        log.info("%s", line)
    log.info("wrote %s and %s", out_dir / "metrics.json", out_dir / "metrics.log")
    return 0
