"""`etchat validate`: check an annotation file against its format before anything trains or infers on it.

Writes a checked copy (what later steps read), a JSON report and a TSV of dropped records. Every bad
record is listed with file, index and reason. With `--on-invalid fail` (the default) any bad record
stops the command; with `drop` bad records are left out of the checked copy.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from etchat.data.formats import CHECKERS, FORMATS, record_label, roots_from
from etchat.errors import DataError
from etchat.io import read_json, write_json_atomic, write_text_atomic, write_tsv_atomic

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
    records: list
    valid: list
    problems: list[Problem]

    @property
    def n_invalid(self) -> int:
        return len({p.index for p in self.problems})

    def report(self) -> dict:
        reasons = collections.Counter(p.reason.split(":")[0] for p in self.problems)
        return {
            "file": str(self.path),
            "format": self.format,
            "records": len(self.records),
            "valid": len(self.valid),
            "invalid": self.n_invalid,
            "reasons": dict(reasons.most_common()),
        }


def load_records(path: Path, fmt: str) -> list:
    if fmt == "charades_sta":
        if not path.is_file():
            raise DataError(f"{path}: file not found")
        return [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, found {type(data).__name__}")
    return data


def validate_file(
    path: str | os.PathLike, fmt: str, video_root: str | None = None, image_root: str | None = None
) -> ValidationResult:
    if fmt not in FORMATS:
        raise DataError(f"unknown annotation format {fmt!r}; use one of {', '.join(FORMATS)}")
    path = Path(path)
    records = load_records(path, fmt)
    check, roots = CHECKERS[fmt], roots_from(video_root, image_root)
    valid, problems = [], []
    for i, record in enumerate(records):
        reasons = check(record, roots)
        if reasons:
            problems += [Problem(i, record_label(record), r) for r in reasons]
        else:
            valid.append(record)
    return ValidationResult(path, fmt, records, valid, problems)


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


def run(args: argparse.Namespace) -> int:
    result = validate_file(args.file, args.format, args.video_root, args.image_root)
    log.info("%s: %d records, %d invalid", args.file, len(result.records), result.n_invalid)
    for p in result.problems[:SHOWN_IN_ERROR]:
        log.warning("%s: record %d (%s): %s", args.file, p.index, p.label, p.reason)
    if result.problems and args.on_invalid == "fail":
        listing = Path(args.dropped).with_suffix(".invalid.tsv") if args.dropped else None
        if listing:  # not a declared output, so it survives the failed job for the user to read
            _write_problems(listing, result)
        shown = "\n  ".join(f"record {p.index} ({p.label}): {p.reason}" for p in result.problems[:SHOWN_IN_ERROR])
        more = len(result.problems) - SHOWN_IN_ERROR
        raise DataError(
            f"{args.file}: {result.n_invalid} of {len(result.records)} records are invalid:\n  {shown}"
            + (f"\n  ... and {more} more problems" if more > 0 else "")
            + (f"\nEvery problem is listed in {listing}." if listing else "")
            + "\nFix the file, or set annotations.on_invalid: drop to leave these records out."
        )
    if args.out:
        if args.format == "charades_sta":
            write_text_atomic(args.out, "".join(line + "\n" for line in result.valid))
        else:
            write_json_atomic(args.out, result.valid, indent=None)
    if args.report:
        write_json_atomic(args.report, result.report())
    if args.dropped:
        _write_problems(Path(args.dropped), result)
    return 0
