"""The `etchat` command: one subcommand per pipeline step.

Each subcommand lives in its own module, imported only when it runs, so `etchat compress` does not
pay for importing torch. A module provides `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from etchat.errors import UserFacingError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("etchat.data.synth.cli", "generate the synthetic demo data under data/"),
    "validate": ("etchat.data.validate", "check an annotation file against its format and data root"),
    "list-videos": ("etchat.video.listing", "list the videos of a video set, sorted"),
    "compress": ("etchat.video.compress", "compress one shard of a video set (3 fps, 224 px, no audio)"),
    "compress-summary": ("etchat.video.summary", "merge compression manifests and summarise failures"),
    "build-base": ("etchat.train.base", "build the demo's tiny base model and tokenizer (stage 1's start)"),
    "train": ("etchat.train.run", "one training stage (HF Trainer + DeepSpeed ZeRO-2, resumable)"),
    "grounding-probe": ("etchat.train.probe", "matching-head accuracy on held-out grounding questions"),
    "score": ("etchat.evaluate.cli_score", "score E.T. Bench predictions (metrics.json, metrics.tsv, metrics.log)"),
    "score-charades": ("etchat.evaluate.cli_charades", "Charades-STA grounding metrics (R1@0.3/0.5/0.7, mIoU)"),
    "infer-shard": ("etchat.infer.cli_shard", "answer one shard of E.T. Bench or Charades-STA (resumable JSONL)"),
    "infer-merge": ("etchat.infer.cli_merge", "merge inference shards into predictions.json (annotations + a)"),
    "infer": ("etchat.infer.cli_custom", "answer questions about your own videos (JSONL in, JSONL out)"),
    "report": ("etchat.report.build", "the run's results as one page, results/report/index.html"),
}


def _parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="etchat", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(sub_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = _parser(command if command in COMMANDS else None).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except UserFacingError as err:
        logging.getLogger("etchat").error("%s", err)
        return 2
