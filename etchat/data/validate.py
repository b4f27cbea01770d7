"""`etchat validate`: check an annotation file against its format before anything trains or infers on it.

Writes a checked copy (what later steps read: a JSON list, whether the input was a JSON list or JSON Lines), a JSON
report and a TSV of dropped records. The file is streamed, so memory stays small at any record count. Every bad
record is listed with file, index and reason. With `--on-invalid fail` (the default) any bad record
stops the command; with `drop` bad records are left out of the checked copy.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etchat.data.formats import CHECKERS, FORMATS, record_label, roots_from, sample_key
from etchat.data.records import iter_records, read_lines
from etchat.errors import DataError
from etchat.io import json_list_writer, write_json_atomic, write_text_atomic, write_tsv_atomic

log = logging.getLogger(__name__)

SHOWN_IN_ERROR = 20


@dataclass
class Problem:
    index: int  # 0-based record index (line index for text formats)
    label: str
    reason: str


@dataclass
class ValidationResult:
    path: Path
    format: str
    records: int = 0
    valid: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)  # valid records worth a look (oversized text)

    @property
    def n_invalid(self) -> int:
        return len({p.index for p in self.problems})

    def report(self) -> dict:
        reasons = collections.Counter(p.reason.split(":")[0] for p in self.problems)
        return {
            "file": str(self.path),
            "format": self.format,
            "records": self.records,
            "valid": self.valid,
            "invalid": self.n_invalid,
            "reasons": dict(reasons.most_common()),
            "oversized_text": [f"record {w.index} ({w.label}): {w.reason}" for w in self.warnings[:SHOWN_IN_ERROR]],
            "oversized_text_records": len(self.warnings),
        }


def _longest_text(value: Any) -> int:
    """The length of the longest string anywhere in a record."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, list):
        return 0
    return max((_longest_text(v) for v in value), default=0)


def validate_file(
    path: str | os.PathLike,
    fmt: str,
    video_root: str | None = None,
    image_root: str | None = None,
    keep: Callable[[Any], None] | None = None,
    max_text_chars: int = 0,
) -> ValidationResult:
    """Check every record of `path`, streaming (one record in memory at a time); `keep` receives each valid one.
    A record with a text longer than `max_text_chars` (0: no limit) is kept and listed in `warnings`."""
    if fmt not in FORMATS:
        raise DataError(f"unknown annotation format {fmt!r}; use one of {', '.join(FORMATS)}")
    path = Path(path)
    records = read_lines(path) if fmt == "charades_sta" else iter_records(path)
    check, roots = CHECKERS[fmt], roots_from(video_root, image_root)
    result = ValidationResult(path, fmt)
    first_of: dict[tuple, int] = {}
    for i, record in enumerate(records):
        result.records += 1
        reasons = check(record, roots)
        key = sample_key(fmt, record)
        if key is not None and not reasons:
            first = first_of.setdefault(key, i)
            if first != i:
                reasons = [f"duplicate of record {first}: the same task, source and idx {list(key)}"]
        if max_text_chars and (longest := _longest_text(record)) > max_text_chars:
            result.warnings.append(Problem(i, record_label(record), f"a text of {longest} characters"))
        if reasons:
            result.problems += [Problem(i, record_label(record), r) for r in reasons]
        else:
            result.valid += 1
            if keep is not None:
                keep(record)
    return result


def _write_problems(path: Path, result: ValidationResult) -> None:
    rows = ([str(result.path), p.index, p.label, p.reason] for p in result.problems)
    write_tsv_atomic(path, ["file", "index", "record", "reason"], rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="annotation file")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--video-root", help="folder the records' video paths are relative to")
    parser.add_argument("--image-root", help="folder the records' image paths are relative to")
    parser.add_argument("--on-invalid", choices=("fail", "drop"), default="fail")
    parser.add_argument("--out", help="checked copy of the file (only valid records)")
    parser.add_argument("--report", help="JSON report to write")
    parser.add_argument("--dropped", help="TSV of the dropped records (file, index, record, reason)")
    parser.add_argument(
        "--max-text-chars", type=int, default=0, help="warn about records with a longer text field (0: no limit)"
    )


def run(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as outputs:  # the checked copy is written as the file is read, kept if all is well
        keep, lines = None, []  # a Charades-STA file is small: its lines are written at the end
        if args.out:
            keep = lines.append if args.format == "charades_sta" else outputs.enter_context(json_list_writer(args.out))
        result = validate_file(args.file, args.format, args.video_root, args.image_root, keep, args.max_text_chars)
        log.info("%s: %d records, %d invalid", args.file, result.records, result.n_invalid)
        for w in result.warnings[:SHOWN_IN_ERROR]:
            log.warning(
                "%s: record %d (%s) has %s (above --max-text-chars %d; kept)",
                args.file, w.index, w.label, w.reason, args.max_text_chars,
            )  # fmt: skip
        for p in result.problems[:SHOWN_IN_ERROR]:
            log.warning("%s: record %d (%s): %s", args.file, p.index, p.label, p.reason)
        if result.problems and args.on_invalid == "fail":
            _write_outputs(args, result)
            # Snakemake deletes a failed job's declared outputs: these copies survive for the user to read.
            listing = Path(args.dropped).with_suffix(".invalid.tsv") if args.dropped else None
            if listing:
                _write_problems(listing, result)
            if args.report:
                write_json_atomic(Path(args.report).with_suffix(".invalid.json"), result.report())
            shown = "\n  ".join(f"record {p.index} ({p.label}): {p.reason}" for p in result.problems[:SHOWN_IN_ERROR])
            more = len(result.problems) - SHOWN_IN_ERROR
            unrooted = sorted({k for p in result.problems for k in ("video", "image") if f"no {k}_root" in p.reason})
            fix = (
                f"\nSet {' and '.join(k + '_root' for k in unrooted)} for this file (annotations.files.<name> in "
                f"config.yaml, or --{unrooted[0]}-root): its records name media but no folder holds them."
                if unrooted
                else "\nFix the file, or set annotations.on_invalid: drop to leave these records out."
            )
            raise DataError(
                f"{args.file}: {result.n_invalid} of {result.records} records are invalid:\n  {shown}"
                + (f"\n  ... and {more} more problems" if more > 0 else "")
                + (f"\nEvery problem is listed in {listing}." if listing else "")
                + fix
            )
    if args.out and args.format == "charades_sta":
        write_text_atomic(args.out, "".join(line + "\n" for line in lines))
    _write_outputs(args, result)
    return 0


def _write_outputs(args: argparse.Namespace, result: ValidationResult) -> None:
    """The report and the dropped-records TSV (written whether the file passed or failed)."""
    if args.report:
        write_json_atomic(args.report, result.report())
    if args.dropped:
        _write_problems(Path(args.dropped), result)
