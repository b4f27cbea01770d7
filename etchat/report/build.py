"""`etchat report`: the results of a run as one self-contained page, results/report/index.html.

It shows our E.T. Bench numbers beside the published E.T. Chat numbers (full set and 470-sample subset),
the capability scores, parse failures per task, Charades-STA, the training loss curves, the compression
summary and the provenance of the run (config, git commit, package versions, decoding, checkpoint).
Every input but the E.T. Bench metrics is optional: a section without its input says so. The charts are
also written as SVG files, and the tables as HTML fragments for `snakemake --report`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import logging
import platform
import subprocess
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from etchat.config import REPO_ROOT
from etchat.errors import DataError
from etchat.evaluate.published import PUBLISHED_CHARADES, PUBLISHED_FULL, PUBLISHED_SUBSET, published_merged
from etchat.io import read_json, write_text_atomic
from etchat.report.svg import bar_chart, line_chart

log = logging.getLogger(__name__)

PACKAGES = ("torch", "transformers", "peft", "deepspeed", "snakemake", "decord", "pandas", "sentence-transformers",
            "pycocoevalcap")  # fmt: skip
LOSS_COLUMNS = ("loss", "lm_loss", "match_loss")

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .85em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f2f2f2; } tr.ours td { font-weight: bold; background: #f4f8fc; }
.note { color: #555; font-size: .9em; } pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .8em; }
"""


@dataclass
class ReportInputs:
    metrics: Path  # metrics.tsv of `etchat score`
    subset_metrics: Path | None = None  # metrics.tsv of `etchat score --subset`, if run
    charades: Path | None = None  # metrics.json of `etchat score-charades`
    train_logs: dict[str, Path] = field(default_factory=dict)  # stage name -> TSV (step, loss, lm_loss, ...)
    grounding: Path | None = None  # grounding.json of `etchat grounding-probe` (held-out matching accuracy)
    compress: Path | None = None  # results/compress/summary.tsv
    config: dict | None = None
    infer: dict[str, Path] = field(default_factory=dict)  # name -> inference summary JSON (decoding, checkpoint)


def read_metrics(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str)
    except FileNotFoundError:
        raise DataError(f"{path}: metrics not found; run `etchat score` first") from None
    missing = {"scope", "task", "source", "metric", "value"} - set(frame.columns)
    if missing:
        raise DataError(f"{path}: not a metrics.tsv of `etchat score` (missing columns {sorted(missing)})")
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")  # empty cells: not computed
    return frame


def _scope(frame: pd.DataFrame, scope: str) -> dict[str, float]:
    """Metric -> value of one scope (overall, merged, ...); metrics not computed are left out."""
    rows = frame[(frame["scope"] == scope) & frame["value"].notna()]
    return dict(zip(rows["metric"], rows["value"], strict=True))


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
    return escape(str(value))


def html_table(header: list[str], rows: list[list[Any]], ours: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        f"<tr{' class=ours' if i in ours else ''}>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def overall_section(ours: dict[str, float], subset: pd.DataFrame | None) -> tuple[str, str]:
    """The 14-column table (ours: the run's overall scope, beside the published rows) and the per-task bar chart."""
    columns = list(next(iter(PUBLISHED_FULL.values())))
    rows = [["ours (this run)", *[ours.get(c) for c in columns]]]
    rows += [[f"{name} (paper, full set)", *[row[c] for c in columns]] for name, row in PUBLISHED_FULL.items()]
    marked = {0}
    if subset is not None:
        sub = _scope(subset, "overall")
        marked.add(len(rows))
        rows.append(["ours, 470-sample subset", *[sub.get(c) for c in columns]])
    rows += [[f"{name} (paper, subset)", *[row[c] for c in columns]] for name, row in PUBLISHED_SUBSET.items()]
    table = html_table(["model", *columns], rows, ours=marked)
    chart = bar_chart(
        columns,
        {
            "ours": [ours.get(c) for c in columns],
            "E.T. Chat (paper)": [PUBLISHED_FULL["E.T. Chat"][c] for c in columns],
        },
        "E.T. Bench per task: this run vs the paper",
        "score (x100)",
    )
    return table, chart


def merged_section(metrics: pd.DataFrame) -> str:
    ours = _scope(metrics, "merged")
    labels = list(published_merged(PUBLISHED_FULL["E.T. Chat"]))
    rows = [
        ["ours (this run)", *[ours.get(c) for c in labels]],
        ["E.T. Chat (paper, derived)", *published_merged(PUBLISHED_FULL["E.T. Chat"]).values()],
        ["E.T. Chat (paper, subset, derived)", *published_merged(PUBLISHED_SUBSET["E.T. Chat"]).values()],
    ]
    return html_table(["model", *labels], rows, ours={0})


def failures_section(metrics: pd.DataFrame) -> str:
    src = metrics[metrics["scope"] == "source"]
    rows = []
    for task, group in src.groupby("task", sort=False):
        total = group.loc[group["metric"] == "Total", "value"].sum()
        failed = group.loc[group["metric"] == "Failed", "value"].sum()
        sources = ", ".join(group["source"].unique())
        rows.append([task, sources, int(total), int(failed), 100 * failed / total if total else None])
    return html_table(["task", "sources", "samples", "parse failures", "% failed"], rows)


def charades_section(path: Path | None) -> str:
    if path is None:
        return '<p class="note">Charades-STA was not evaluated in this run.</p>'
    m = read_json(path)
    keys = ["R1@0.3", "R1@0.5", "R1@0.7", "mIoU"]
    rows = [
        ["ours (this run)", *[100 * m[k] for k in keys], m.get("Failed")],
        ["E.T. Chat (paper)", *[PUBLISHED_CHARADES[k] for k in keys], None],
    ]
    return html_table(["model", *keys, "failed"], rows, ours={0})


def read_train_log(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, sep="\t")
    if "step" not in frame.columns:
        raise DataError(f"{path}: a training log needs a 'step' column")
    return frame


def training_section(logs: dict[str, Path]) -> tuple[str, dict[str, str]]:
    """A table of the stages and one loss chart per stage (their step counts and scales differ)."""
    if not logs:
        return '<p class="note">No model was trained in this run.</p>', {}
    charts, rows = {}, []
    for stage, path in logs.items():
        frame = read_train_log(path)
        series = {
            column: (frame["step"].tolist(), frame[column].astype(float).tolist())
            for column in LOSS_COLUMNS
            if column in frame.columns and frame[column].notna().any() and (column == "loss" or frame[column].any())
        }
        charts[f"training_{stage}.svg"] = line_chart(series, f"Training losses, {stage}", "optimizer step", "loss")
        last = frame.iloc[-1] if len(frame) else {}
        rows.append([stage, int(frame["step"].max()) if len(frame) else 0,
                     *[last.get(c) for c in LOSS_COLUMNS],
                     frame["samples_per_s"].mean() if "samples_per_s" in frame.columns else None])  # fmt: skip
    table = html_table(["stage", "steps", "final loss", "final LM loss", "final matching loss", "samples/s"], rows)
    return table, charts


def grounding_section(path: Path | None) -> str:
    """The stage-3 matching head on held-out videos: exact frame, within one frame, mean error, vs chance."""
    if path is None:
        return ""
    g = read_json(path)
    if not g.get("timestamps"):
        return (
            "<h3>Grounding on held-out videos</h3>"
            f'<p class="note">Nothing to measure: none of the {g.get("records", 0)} held-out questions has an answer '
            "timestamp (raise <code>train.stage3.holdout_fraction</code> to hold out more videos).</p>"
        )
    rows = [
        ["matching head", 100 * g["accuracy"], 100 * g["accuracy_within_1"], g["mae_frames"]],
        ["chance", 100 * g["chance_accuracy"], 100 * g["chance_accuracy_within_1"], g["chance_mae_frames"]],
    ]
    note = (
        f'<p class="note">The stage-3 matching head on {g["timestamps"]} answer timestamps of {g["records"]} '
        "questions about held-out videos (teacher-forced answers, argmax frame vs the target second).</p>"
    )
    return (
        "<h3>Grounding on held-out videos</h3>"
        + note
        + html_table(["", "exact frame %", "within one frame %", "mean error (frames)"], rows, ours={0})
    )


def compression_section(path: Path | None) -> tuple[str, str | None]:
    if path is None:
        return '<p class="note">No videos were compressed in this run.</p>', None
    frame = pd.read_csv(path, sep="\t")
    columns = ["set", "videos", "ok", "compressed", "reused", "failed", "input_hours", "seconds"]
    table = html_table(columns, frame[columns].values.tolist())
    chart = bar_chart(
        frame["set"].tolist(),
        {"ok": frame["ok"].tolist(), "failed": frame["failed"].tolist()},
        "Compression: videos per set",
        "videos",
    )
    return table, chart


def git_commit(repo: Path = REPO_ROOT) -> str:
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" (with uncommitted changes)" if dirty else "")


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        versions["ffmpeg"] = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split()[2]
    except (OSError, IndexError):
        versions["ffmpeg"] = "not found"
    return versions


def provenance_section(inputs: ReportInputs) -> str:
    rows = [["generated", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")], ["git commit", git_commit()]]
    rows += [[name, version] for name, version in package_versions().items()]
    for name, path in inputs.infer.items():
        summary = read_json(path)
        checkpoint = summary.get("checkpoint") or {}
        rows.append([f"{name}: checkpoint", f"{checkpoint.get('path', '?')} (digest {checkpoint.get('digest', '?')})"])
        rows.append([f"{name}: answered", f"{summary.get('answered')} of {summary.get('samples')} samples "
                     f"({len(summary.get('error_samples') or [])} unanswerable, {summary.get('capped', 0)} capped, "
                     f"{summary.get('truncated', 0)} truncated)"])  # fmt: skip
        rows.append([f"{name}: decoding", json.dumps(summary.get("settings", {}), sort_keys=True)])
    config = yaml.safe_dump(inputs.config, sort_keys=False) if inputs.config else "(not given)"
    return html_table(["what", "value"], rows) + f"<h3>Configuration</h3><pre>{escape(config)}</pre>"


@dataclass
class Report:
    index_html: str
    charts: dict[str, str]  # file name -> SVG
    tables: dict[str, str]  # file name -> HTML fragment


def build_report(inputs: ReportInputs) -> Report:
    metrics = read_metrics(inputs.metrics)
    subset = read_metrics(inputs.subset_metrics) if inputs.subset_metrics else None
    scored = _scope(metrics, "overall")
    overall, tasks_svg = overall_section(scored, subset)
    merged = merged_section(metrics)
    train_table, loss_charts = training_section(inputs.train_logs)
    compress_table, compress_svg = compression_section(inputs.compress)
    preset = (inputs.config or {}).get("preset", "?")
    absent = [column for column in next(iter(PUBLISHED_FULL.values())) if column not in scored]
    sections = [
        f"<h1>etchat-pipeline report: preset <code>{escape(str(preset))}</code></h1>",
        '<p class="note">E.T. Chat (E.T. Bench, NeurIPS 2024) reproduced end to end. Scores are x100; the paper\'s '
        "rows are Table 1 of the E.T. Bench paper (merged scores derived from them). The demo preset runs a tiny "
        "model on synthetic videos, so its numbers are not comparable with the paper's.</p>",
        "<h2>E.T. Bench: per task</h2>",
        overall,
        *([f'<p class="note">Tasks not in this run: {", ".join(absent)}.</p>'] if absent else []),
        tasks_svg,
        "<h2>E.T. Bench: capabilities</h2>",
        merged,
        "<h2>Parse failures</h2>",
        '<p class="note">Answers the scorer could not parse (they count as wrong; metrics.log lists them).</p>',
        failures_section(metrics),
        "<h2>Charades-STA</h2>",
        charades_section(inputs.charades),
        "<h2>Training</h2>",
        train_table,
        grounding_section(inputs.grounding),
        *loss_charts.values(),
        "<h2>Compression</h2>",
        compress_table,
        *([compress_svg] if compress_svg else []),
        "<h2>Provenance</h2>",
        provenance_section(inputs),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>etchat-pipeline report ({escape(str(preset))})</title><style>{STYLE}</style></head><body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
    charts = {"tasks.svg": tasks_svg, **loss_charts}
    if compress_svg:
        charts["compression.svg"] = compress_svg
    tables = {"overall.html": overall, "capabilities.html": merged}
    return Report(page, charts, tables)


def write_report(report: Report, out_dir: Path) -> None:
    write_text_atomic(out_dir / "index.html", report.index_html)
    for name, svg in report.charts.items():
        write_text_atomic(out_dir / name, svg + "\n")
    for name, fragment in report.tables.items():
        write_text_atomic(out_dir / name, f'<html><head><meta charset="utf-8"><style>{STYLE}</style></head>'
                                          f"<body>{fragment}</body></html>\n")  # fmt: skip


def _named_paths(values: list[str], what: str) -> dict[str, Path]:
    out = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep:
            raise DataError(f"--{what} takes NAME=PATH, got {value!r}")
        out[name] = Path(path)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--metrics", required=True, type=Path, help="metrics.tsv of `etchat score`")
    parser.add_argument("--subset-metrics", type=Path, help="metrics.tsv of `etchat score --subset`")
    parser.add_argument("--charades", type=Path, help="metrics.json of `etchat score-charades`")
    parser.add_argument("--train-log", action="append", default=[], help="STAGE=PATH of a training log TSV")
    parser.add_argument("--compress", type=Path, help="results/compress/summary.tsv")
    parser.add_argument("--grounding", type=Path, help="grounding.json of `etchat grounding-probe`")
    parser.add_argument("--config", type=Path, help="the run's config as a YAML or JSON file")
    parser.add_argument("--config-json", help="the run's config as inline JSON (what the Snakemake rule passes)")
    parser.add_argument("--infer", action="append", default=[], help="NAME=PATH of an inference summary JSON")
    parser.add_argument("--out-dir", required=True, type=Path)


def run(args: argparse.Namespace) -> int:
    config = json.loads(args.config_json) if args.config_json else None
    if args.config:
        config = yaml.safe_load(args.config.read_text())
    inputs = ReportInputs(
        metrics=args.metrics,
        subset_metrics=args.subset_metrics,
        charades=args.charades,
        train_logs=_named_paths(args.train_log, "train-log"),
        compress=args.compress,
        grounding=args.grounding,
        config=config,
        infer=_named_paths(args.infer, "infer"),
    )
    write_report(build_report(inputs), args.out_dir)
    log.info("report written to %s", args.out_dir / "index.html")
    return 0
