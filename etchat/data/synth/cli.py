"""`etchat synth`: write the synthetic demo data set."""

from __future__ import annotations

import argparse
import json
import logging
import os

from etchat.config import load_settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="data", help="data root to write into (default: data)")
    parser.add_argument("--settings", help="the `synth` config section as inline JSON or a YAML file")
    parser.add_argument("--config", action="append", default=[], help="config file(s) to read `synth` from")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="videos rendered side by side")


def run(args: argparse.Namespace) -> int:
    from etchat.data.synth.generate import generate

    settings = load_settings(args.settings, "synth", args.config)
    summary = generate(settings, args.out, workers=args.workers)
    log.info("synth: %s", json.dumps(summary))
    return 0
