"""What inference answers: E.T. Bench samples, Charades-STA queries and users' own questions, as `InferSample`s.

Every sample has a key that is stable across runs (E.T. Bench: `task/source/idx`), its position in the input list
(the merge keeps that order) and a digest of everything it brings to the model (the annotation record, the
question, the video's size), so an answer recorded for different input is never reused.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etchat.data.formats import parse_charades_line
from etchat.data.records import iter_records, read_lines, read_records
from etchat.errors import DataError
from etchat.etbench import VID_TOKEN as MATCH_TOKEN

from .settings import fingerprint

log = logging.getLogger(__name__)

BENCHMARKS = ("etbench", "charades", "custom")


@dataclass
class InferSample:
    key: str
    index: int  # position in the input list
    video: str  # as the input names it (relative to the video root)
    video_path: Path
    question: str  # the user message after `<image>\n` (also the Q-Former query)
    task: str | None = None  # E.T. Bench task code (multiple-choice tasks get `Best Option: (`)
    src: list[float] | None = None  # seconds of the question's <vid> tokens
    duration: float | None = None  # from the annotation, to batch similar lengths together
    record: Any = None  # the input record, kept for the merge
    digest: str = field(default="", init=False)

    def __post_init__(self) -> None:
        self.digest = sample_digest(self)

    def video_bytes(self) -> int | None:
        try:
            return self.video_path.stat().st_size
        except OSError:
            return None

    def identity(self) -> dict[str, Any]:
        """Fields copied into every answer line, so a line is readable on its own."""
        out: dict[str, Any] = {"key": self.key, "index": self.index, "video": self.video}
        if self.task is not None:
            out["task"] = self.task
        if isinstance(self.record, dict):
            for name in ("source", "idx"):
                if name in self.record:
                    out[name] = self.record[name]
        return out


def sample_digest(sample: InferSample) -> str:
    payload = {
        "record": sample.record,
        "question": sample.question,
        "task": sample.task,
        "src": sample.src,
        "video": sample.video,
        "video_bytes": sample.video_bytes(),
    }
    return fingerprint(payload)


def shard_of(index: int, shard: int, shards: int) -> bool:
    """Strided split, as the original's `anno[index::chunk]` (shard is 1-based here)."""
    return index % shards == shard - 1


def parse_shard(text: str) -> tuple[int, int]:
    """`"2-of-8"` -> (2, 8), the names Snakemake's scattergather gives."""
    try:
        i, _, n = text.partition("-of-")
        shard, shards = int(i), int(n)
    except ValueError:
        raise DataError(f"shard {text!r}: expected I-of-N, e.g. 1-of-4") from None
    if not 1 <= shard <= shards:
        raise DataError(f"shard {text!r}: I must be between 1 and N")
    return shard, shards


def _unique_keys(keys: Sequence[str]) -> list[str]:
    """Keys made unique by the occurrence number (`key#2`) where an input repeats one."""
    seen: Counter[str] = Counter()
    out = []
    for key in keys:
        seen[key] += 1
        out.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return out


def etbench_samples(annotations: str | os.PathLike, video_root: str | os.PathLike) -> list[InferSample]:
    """The E.T. Bench `vid` list (`etchat validate`'s checked copy): one sample per record."""
    records = read_records(annotations)
    if not all(isinstance(r, dict) for r in records):
        raise DataError(f"{annotations}: expected a JSON list of E.T. Bench samples; run `etchat validate` first")
    root = Path(video_root)
    keys = _unique_keys([f"{r.get('task')}/{r.get('source')}/{r.get('idx')}" for r in records])
    samples = []
    for i, (key, rec) in enumerate(zip(keys, records, strict=True)):
        missing = [k for k in ("task", "video", "q") if k not in rec]
        if missing:
            raise DataError(f"{annotations}: sample {i} has no {', '.join(missing)}; run `etchat validate` first")
        record = {k: v for k, v in rec.items() if k != "a"}
        samples.append(
            InferSample(
                key=key,
                index=i,
                video=rec["video"],
                video_path=root / rec["video"],
                question=rec["q"],
                task=rec["task"],
                src=rec.get("src"),
                duration=rec.get("duration"),
                record=record,
            )
        )
    return samples


def charades_question(query: str) -> str:
    """The Charades-STA instruction of `infer_charades.py`."""
    return f"Localize the video moment according to the query '{query.strip('.').strip()}'."


def charades_samples(path: str | os.PathLike, video_root: str | os.PathLike) -> list[InferSample]:
    """`charades_sta_test.txt` lines (`<video> <start> <end>##<query>`); videos are `<root>/<video>.mp4`."""
    path, root = Path(path), Path(video_root)
    samples = []
    for i, line in enumerate(read_lines(path)):
        try:
            q = parse_charades_line(line)
        except ValueError as err:
            raise DataError(f"{path}: line {i + 1}: {err}") from None
        record = {"vid": q.video, "query": q.query, "span": [q.start, q.end]}
        samples.append(
            InferSample(
                key=str(i),
                index=i,
                video=f"{q.video}.mp4",
                video_path=root / f"{q.video}.mp4",
                question=charades_question(q.query),
                record=record,
            )
        )
    return samples


def custom_samples(questions: str | os.PathLike, video_root: str | os.PathLike) -> list[InferSample]:
    """Users' own questions: JSON Lines (or a JSON list) of records with `video` (relative to the video folder) and
    `question`.

    Optional: `id` (a unique name; default the question's number, counted from 1 without blank lines), `src`
    (seconds of each `<vid>` in the question),
    `task` (an E.T. Bench task code: `rar`, `eca`, `rvq` get the multiple-choice prompt), `duration`.
    Timestamps in a question are best written as text ("at 12.5 seconds"); `<vid>` needs `src`.
    """
    path, root = Path(questions), Path(video_root)
    records: list[dict[str, Any]] = []
    for n, rec in enumerate(iter_records(path), 1):
        where = f"{path}: question {n}" + (f" ({rec['id']})" if isinstance(rec, dict) and "id" in rec else "")
        if (
            not isinstance(rec, dict)
            or not isinstance(rec.get("video"), str)
            or not isinstance(rec.get("question"), str)
        ):
            raise DataError(f'{where}: expected {{"video": "<file>", "question": "<text>"}} (and optional id, src)')
        src = rec.get("src")
        count = rec["question"].count(MATCH_TOKEN)
        if src is not None and (
            not isinstance(src, list) or not all(isinstance(t, int | float) and math.isfinite(t) for t in src)
        ):
            raise DataError(f"{where}: src must be a list of seconds")
        if count != len(src or []):
            raise DataError(
                f"{where}: the question has {count} {MATCH_TOKEN} but src gives {len(src or [])} times; "
                f"give one time per {MATCH_TOKEN} in src, or write the times as text"
            )
        rec["_line"] = n
        records.append(rec)
    keys = [str(rec.get("id", rec["_line"])) for rec in records]
    duplicates = sorted(k for k, c in Counter(keys).items() if c > 1)
    if duplicates:
        raise DataError(f"{path}: ids must be unique; repeated: {', '.join(duplicates[:10])}")
    samples = []
    for i, (key, rec) in enumerate(zip(keys, records, strict=True)):
        rec.pop("_line")
        try:
            video_path = (root / rec["video"]).resolve()
        except OSError as err:
            raise DataError(f"{path}: sample {key}: bad video path {rec['video']!r} ({err})") from None
        samples.append(
            InferSample(
                key=key,
                index=i,
                video=rec["video"],
                video_path=video_path,
                question=rec["question"],
                task=rec.get("task"),
                src=rec.get("src"),
                duration=rec.get("duration"),
                record=rec,
            )
        )
    return samples


def load_samples(benchmark: str, path: str | os.PathLike, video_root: str | os.PathLike) -> list[InferSample]:
    if benchmark == "etbench":
        return etbench_samples(path, video_root)
    if benchmark == "charades":
        return charades_samples(path, video_root)
    if benchmark == "custom":
        return custom_samples(path, video_root)
    raise DataError(f"unknown benchmark {benchmark!r}; allowed: {', '.join(BENCHMARKS)}")
