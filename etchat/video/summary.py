"""`etchat compress-summary`: merge a set's shard manifests, list failures, and apply `on_error`.

Outputs: the merged `manifest.tsv`, `failed.tsv` (path and reason of each video that could not be
used) and `summary.json`. With `--on-error fail` the command exits non-zero when any video failed,
after every shard has finished, naming the manifest where the reasons are; with `skip` later steps
leave the failed videos out (training and inference read their status from the merged manifest).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import pandas as pd

from etchat.errors import DataError
from etchat.io import read_json, write_json_atomic, write_text_atomic
from etchat.video.compress import MANIFEST_COLUMNS

log = logging.getLogger(__name__)


def merge_manifests(paths: list[str | os.PathLike]) -> pd.DataFrame:
    frames = [pd.read_csv(p, sep="\t", keep_default_na=False, dtype=str) for p in paths]
    merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=MANIFEST_COLUMNS)
    return merged.sort_values("path", kind="stable").reset_index(drop=True)


def _write_tsv(frame: pd.DataFrame, path: Path) -> None:
    # newline="": the text is already what to_csv writes to a file (its own line ends).
    write_text_atomic(path, frame.to_csv(sep="\t", index=False), newline="")


def summarise(name: str, manifest: pd.DataFrame) -> dict:
    def total(column: str, mask) -> float:
        # float(): an empty manifest sums to a numpy int, which json cannot write.
        return round(float(pd.to_numeric(manifest.loc[mask, column], errors="coerce").fillna(0).sum()), 3)

    ok = manifest["status"] == "ok"
    return {
        "set": name,
        "videos": int(len(manifest)),
        "ok": int(ok.sum()),
        "compressed": int((manifest["action"] == "compressed").sum()),
        "reused": int((manifest["action"] == "reused").sum()),
        "checked": int((manifest["action"] == "checked").sum()),
        "failed": int((~ok).sum()),
        "input_hours": round(total("in_duration", ok) / 3600, 4),
        "output_hours": round(total("out_duration", ok) / 3600, 4),
        "seconds": total("seconds", manifest["seconds"] != ""),
        "failures": [
            {"path": p, "error": e} for p, e in zip(manifest.loc[~ok, "path"], manifest.loc[~ok, "error"], strict=True)
        ],
    }


def write_table(summaries: list[str | os.PathLike], path: str | os.PathLike) -> pd.DataFrame:
    """One row per video set, from the sets' summary.json files."""
    rows = []
    for p in summaries:
        s = read_json(p)
        rows.append({k: v for k, v in s.items() if k != "failures"})
    table = pd.DataFrame(rows)
    _write_tsv(table, Path(path))
    return table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", help="the video set's name")
    parser.add_argument("--manifests", nargs="+", help="shard manifests of the set")
    parser.add_argument("--out-dir", help="where the set's manifest.tsv, failed.tsv and summary.json go")
    parser.add_argument("--on-error", choices=("skip", "fail"), default="skip")
    parser.add_argument("--summaries", nargs="+", help="instead: sets' summary.json files to tabulate into --table")
    parser.add_argument("--table", help="TSV with one row per video set")


def run(args: argparse.Namespace) -> int:
    if args.summaries:
        if not args.table:
            raise DataError("--summaries needs --table, the TSV to write")
        table = write_table(args.summaries, args.table)
        log.info("compression of %d sets:\n%s", len(table), table.to_string(index=False))
        return 0
    if not (args.name and args.manifests and args.out_dir):
        raise DataError("give --name, --manifests and --out-dir (one set), or --summaries and --table (all sets)")
    out = Path(args.out_dir)
    manifest = merge_manifests(args.manifests)
    summary = summarise(args.name, manifest)
    summary["on_error"] = args.on_error
    failed = pd.DataFrame(summary["failures"], columns=["path", "error"])
    if summary["failed"] and args.on_error == "fail":
        listing = "\n  ".join(f"{r.path}: {r.error}" for r in failed.itertuples())
        raise DataError(
            f"{summary['failed']} of {summary['videos']} videos of set {args.name!r} could not be compressed "
            f"(reasons in {', '.join(map(str, args.manifests))}):\n  {listing}\n"
            "Fix or remove these files and re-run (finished videos are kept), or set compress.on_error: skip "
            "to leave them out."
        )
    _write_tsv(manifest, out / "manifest.tsv")
    _write_tsv(failed, out / "failed.tsv")
    write_json_atomic(out / "summary.json", summary)
    log.info(
        "%s: %d videos, %d ok (%d compressed, %d reused), %d failed%s",
        args.name,
        summary["videos"],
        summary["ok"],
        summary["compressed"],
        summary["reused"],
        summary["failed"],
        " (left out downstream: on_error=skip)" if summary["failed"] else "",
    )
    return 0
