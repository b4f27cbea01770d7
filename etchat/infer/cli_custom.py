"""`etchat infer`: answer your own questions about your own videos (E.T. Bench issue #2).

Questions are a JSONL file, one `{"video": "<path relative to --videos>", "question": "<text>"}` per line, with
optional `id`, `src` (seconds of each `<vid>` written in the question) and `task` (an E.T. Bench task code;
`rar`/`eca`/`rvq` get the multiple-choice prompt). Answers go to `--out` (JSONL, one line per question, in the
questions' order): `answer` is the text with each timestamp written in seconds (the real time of the matched
frame), `vid_seconds` the same times as numbers. Re-running skips questions already answered with the same
checkpoint and settings.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from etchat.io import write_text_atomic

from .cli_common import add_settings_arguments, set_threads, settings_from_args
from .engine import Engine
from .runner import ShardRunner
from .samples import load_samples
from .store import AnswerLog

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--checkpoint", required=True, type=Path, help="E.T. Chat checkpoint directory")
    parser.add_argument("--videos", required=True, type=Path, help="folder of the videos")
    parser.add_argument("--questions", required=True, type=Path, help="JSONL of questions (see above)")
    parser.add_argument("--out", required=True, type=Path, help="answers JSONL (resumed if it exists)")
    add_settings_arguments(parser, vid_times_default="seconds")


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    set_threads(args.threads)
    samples = load_samples("custom", args.questions, args.videos)
    if settings.limit is not None:
        samples = samples[: settings.limit]
    engine = Engine(args.checkpoint, settings)
    runner = ShardRunner(engine, "custom", args.out)
    runner.adopt = False  # the folder is the user's: its other files are not shard logs
    summary = runner.run(samples)
    # Keep one line per question, in the questions' order (older lines of other settings are dropped).
    state = AnswerLog(args.out).state(engine.fingerprint, {s.key: s.digest for s in samples})
    lines = [state.answers.get(s.key) or state.errors.get(s.key) for s in samples]
    write_text_atomic(args.out, "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines if line))
    for sample, line in zip(samples, lines, strict=True):
        if line and line["status"] == "ok":
            log.info("%s: %s", sample.key, line["answer"])
        else:
            log.error("%s: no answer (%s)", sample.key, line.get("error") if line else "missing")
    log.info("%d answered, %d errors; wrote %s", summary.answered + summary.reused, summary.errors, args.out)
    return 1 if summary.errors else 0
