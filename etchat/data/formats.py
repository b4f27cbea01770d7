"""The annotation formats and what makes a record valid.

Each checker returns the reasons a record is unusable (empty when it is fine). They check field names
and types, per-task shapes, `<vid>` counts against `src`/`tgt`, conversation turns, and that every
referenced video or image stays inside its data root and exists.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etchat.errors import DataError
from etchat.etbench import IMAGE_TOKEN, TASK_SHAPES, TASKS, VID_TOKEN
from etchat.io import resolve_inside

FORMATS = ("llamavid", "et_instruct", "etbench_vid", "etbench_txt", "charades_sta")


@dataclass
class MediaRoots:
    video: Path | None = None
    image: Path | None = None
    _seen: dict[tuple[str, str], str | None] = field(default_factory=dict)

    def problem(self, kind: str, rel: Any) -> str | None:
        """Why the media file `rel` of kind video/image cannot be used, or None."""
        if not isinstance(rel, str) or not rel:
            return f"{kind} must be a non-empty path string, got {rel!r}"
        key = (kind, rel)
        if key not in self._seen:
            root = self.video if kind == "video" else self.image
            if root is None:
                self._seen[key] = f"record has a {kind} but no {kind}_root is configured for this file"
            else:
                try:
                    path = resolve_inside(root, rel)
                    self._seen[key] = None if path.is_file() else f"{kind} {rel} not found under {root}"
                except DataError as err:
                    self._seen[key] = str(err)
        return self._seen[key]


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _beyond(t: float, duration: float | None) -> bool:
    """A time past the video's end, beyond the slack annotations need (rounding, a last frame): 1 s or 5%."""
    return duration is not None and t > duration + max(1.0, 0.05 * duration)


def _times(value: Any, name: str, duration: float | None) -> list[str]:
    """A flat list of timestamps in seconds."""
    if not isinstance(value, list) or not all(_number(t) for t in value):
        return [f"{name} must be a list of numbers (seconds), got {value!r}"]
    problems = [f"{name} has a negative time {t}" for t in value if t < 0]
    problems += [f"{name} time {t} lies beyond the video's duration {duration}" for t in value if _beyond(t, duration)]
    return problems


def _span(value: Any, name: str, duration: float | None = None) -> list[str]:
    if not (isinstance(value, list) and len(value) == 2 and all(_number(t) for t in value)):
        return [f"{name} must be a [start, end] pair of numbers, got {value!r}"]
    if value[0] < 0 or value[1] < value[0]:
        return [f"{name} {value} is not a valid span (need 0 <= start <= end)"]
    if _beyond(value[1], duration):
        return [f"{name} {value} ends beyond the video's duration {duration}"]
    return []


def _spans(value: Any, name: str, duration: float | None = None) -> list[str]:
    if not isinstance(value, list) or not value:
        return [f"{name} must be a non-empty list of [start, end] pairs, got {value!r}"]
    return [p for i, span in enumerate(value) for p in _span(span, f"{name}[{i}]", duration)]


def _conversation(record: dict) -> tuple[list[dict], list[str]]:
    conv = record.get("conversations")
    if not isinstance(conv, list) or not conv:
        return [], ["conversations must be a non-empty list of turns"]
    problems = []
    for i, turn in enumerate(conv):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            problems.append(f"conversations[{i}] must be an object with a string 'value'")
            continue
        expected = "human" if i % 2 == 0 else "gpt"
        if turn.get("from") != expected:
            problems.append(f"conversations[{i}] is from {turn.get('from')!r}; turns must alternate human, gpt, ...")
    if len(conv) % 2:
        problems.append("conversation ends with a human turn that has no answer")
    return (conv if not problems else []), problems


def check_llamavid(record: Any, roots: MediaRoots) -> list[str]:
    """LLaMA-VID style records (stages 1 and 2): image, video or no media, plus a conversation."""
    if not isinstance(record, dict):
        return [f"record must be an object, got {type(record).__name__}"]
    problems = []
    media = [k for k in ("image", "video") if k in record]
    if len(media) == 2:
        problems.append("record has both 'image' and 'video'; use one")
    for kind in media:
        if (p := roots.problem(kind, record[kind])) is not None:
            problems.append(p)
    conv, conv_problems = _conversation(record)
    problems += conv_problems
    for i, turn in enumerate(conv):
        n_image = turn["value"].count(IMAGE_TOKEN)
        if n_image and (not media or turn["from"] == "gpt"):
            where = "a text-only record" if not media else "an answer (gpt turn)"
            problems.append(f"conversations[{i}]: {IMAGE_TOKEN} in {where}")
        elif n_image > 1:
            problems.append(f"conversations[{i}] has {n_image} {IMAGE_TOKEN} tokens; at most one per message")
        if VID_TOKEN in turn["value"]:
            problems.append(f"conversations[{i}]: {VID_TOKEN} in a record without src/tgt timestamps")
    return problems


def check_et_instruct(record: Any, roots: MediaRoots) -> list[str]:
    """E.T. Instruct `vid` style (stage 3): a video, its duration, and `<vid>` counts matching src/tgt."""
    if not isinstance(record, dict):
        return [f"record must be an object, got {type(record).__name__}"]
    problems = []
    for key, kind in (("task", str), ("source", str)):
        if not isinstance(record.get(key), kind):
            problems.append(f"{key} must be a string, got {record.get(key)!r}")
    duration = record.get("duration")
    if not _number(duration) or duration <= 0:
        problems.append(f"duration must be a positive number of seconds, got {duration!r}")
        duration = None
    if "video" not in record:
        problems.append("video is missing")
    elif (p := roots.problem("video", record["video"])) is not None:
        problems.append(p)
    times = {}
    for key in ("src", "tgt"):
        if key in record:
            problems += _times(record[key], key, duration)
        times[key] = record[key] if isinstance(record.get(key), list) else []
    conv, conv_problems = _conversation(record)
    problems += conv_problems
    if conv:
        first = conv[0]["value"]
        if first.count(IMAGE_TOKEN) != 1:
            problems.append(f"the first human turn needs exactly one {IMAGE_TOKEN}, found {first.count(IMAGE_TOKEN)}")
        elif VID_TOKEN in first.split(IMAGE_TOKEN)[0]:
            problems.append(f"{VID_TOKEN} before {IMAGE_TOKEN}: all timestamps must follow the video")
        if any(IMAGE_TOKEN in t["value"] for t in conv[1:]):
            problems.append(f"{IMAGE_TOKEN} outside the first human turn")
        for side, key in (("human", "src"), ("gpt", "tgt")):
            count = sum(t["value"].count(VID_TOKEN) for t in conv if t["from"] == side)
            if count != len(times[key]):
                problems.append(f"{count} {VID_TOKEN} in {side} turns but {len(times[key])} values in {key}")
    return problems


def _check_etbench(record: Any, roots: MediaRoots, flavour: str) -> list[str]:
    if not isinstance(record, dict):
        return [f"record must be an object, got {type(record).__name__}"]
    problems = []
    task = record.get("task")
    if task not in TASKS:
        return [f"task {task!r} is not an E.T. Bench task ({', '.join(TASKS)})"]
    if not isinstance(record.get("idx"), int) or isinstance(record.get("idx"), bool):
        problems.append(f"idx must be an integer, got {record.get('idx')!r}")
    for key in ("source", "q"):
        if not isinstance(record.get(key), str) or not record.get(key):
            problems.append(f"{key} must be a non-empty string, got {record.get(key)!r}")
    duration = record.get("duration")
    if not _number(duration) or duration <= 0:
        problems.append(f"duration must be a positive number of seconds, got {duration!r}")
        duration = None
    if "video" not in record:
        problems.append("video is missing")
    elif (p := roots.problem("video", record["video"])) is not None:
        problems.append(p)
    if "a" in record and not isinstance(record["a"], str):
        problems.append(f"answer a must be a string, got {record['a']!r}")

    shape = TASK_SHAPES[task]
    if shape.options:
        o, p = record.get("o"), record.get("p")
        if not isinstance(o, list) or len(o) not in shape.options:
            problems.append(f"{task} needs o, a list of {' or '.join(map(str, shape.options))} options, got {o!r}")
        else:
            for i, option in enumerate(o):
                if not isinstance(option, str):
                    problems += _span(option, f"o[{i}]", duration)
            if not isinstance(p, int) or isinstance(p, bool) or not 0 <= p < len(o):
                problems.append(f"p must index o (0..{len(o) - 1}), got {p!r}")
    tgt = record.get("tgt")
    if shape.tgt == "span":
        problems += _span(tgt, "tgt", duration)
    elif shape.tgt == "spans":
        problems += _spans(tgt, "tgt", duration)
    elif shape.tgt == "spans_or_annotators":
        if isinstance(tgt, list) and tgt and isinstance(tgt[0], list) and tgt[0] and isinstance(tgt[0][0], list):
            problems += [p for i, spans in enumerate(tgt) for p in _spans(spans, f"tgt[{i}]", duration)]
        else:
            problems += _spans(tgt, "tgt", duration)
    if shape.captions:
        g = record.get("g")
        if not isinstance(g, list) or not all(isinstance(c, str) for c in g):
            problems.append(f"{task} needs g, a list of caption strings, got {g!r}")
        elif isinstance(tgt, list) and len(g) != len(tgt):
            problems.append(f"g has {len(g)} captions but tgt has {len(tgt)} spans")
    src = record.get("src", [])
    if "src" in record:
        problems += _times(src, "src", duration)
    q = record.get("q") if isinstance(record.get("q"), str) else ""
    n_vid = q.count(VID_TOKEN)
    if flavour == "vid" and isinstance(src, list) and n_vid != len(src):
        problems.append(f"q has {n_vid} {VID_TOKEN} but src has {len(src)} values")
    if flavour == "txt" and n_vid:
        problems.append(f"q of the txt flavour must write timestamps as text, found {n_vid} {VID_TOKEN}")
    return problems


def check_etbench_vid(record: Any, roots: MediaRoots) -> list[str]:
    return _check_etbench(record, roots, "vid")


def check_etbench_txt(record: Any, roots: MediaRoots) -> list[str]:
    return _check_etbench(record, roots, "txt")


@dataclass(frozen=True)
class CharadesQuery:
    video: str
    start: float
    end: float
    query: str


def parse_charades_line(line: str) -> CharadesQuery:
    """`<video> <start> <end>##<query>`; the span is ordered as Charades-STA's evaluation does."""
    head, sep, query = line.partition("##")
    parts = head.split()
    if not sep or len(parts) != 3 or not query.strip():
        raise ValueError("expected '<video> <start> <end>##<query>'")
    start, end = float(parts[1]), float(parts[2])
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError("start and end must be finite numbers")
    return CharadesQuery(parts[0], min(start, end), max(start, end), query.strip())


def check_charades(line: str, roots: MediaRoots) -> list[str]:
    try:
        q = parse_charades_line(line)
    except ValueError as err:
        return [str(err)]
    p = roots.problem("video", f"{q.video}.mp4")
    return [p] if p else []


CHECKERS: dict[str, Callable[[Any, MediaRoots], list[str]]] = {
    "llamavid": check_llamavid,
    "et_instruct": check_et_instruct,
    "etbench_vid": check_etbench_vid,
    "etbench_txt": check_etbench_txt,
    "charades_sta": check_charades,
}


def etbench_sample(record: Mapping[str, Any]) -> tuple:
    """What names an E.T. Bench sample (annotation or prediction) uniquely: (task, source, idx)."""
    return record.get("task"), record.get("source"), record.get("idx")


def etbench_name(sample: tuple) -> str:
    """`task/source idx N`: an E.T. Bench sample in messages."""
    return f"{sample[0]}/{sample[1]} idx {sample[2]}"


def sample_key(fmt: str, record: Any) -> tuple | None:
    """The E.T. Bench sample a record of `fmt` is: two records with one key are a duplicate (the scorer would count
    the sample twice); None for formats without such a key."""
    if fmt in ("etbench_vid", "etbench_txt") and isinstance(record, dict):
        return etbench_sample(record)
    return None


def record_label(record: Any) -> str:
    """A short name of a record for reports, as its format names it: `task/source idx N` for E.T. Bench samples and
    predictions, else its id, video or image."""
    if isinstance(record, dict):
        if "idx" in record and "task" in record:
            return etbench_name(etbench_sample(record))
        for key in ("id", "video", "image"):
            if isinstance(record.get(key), str | int):
                return str(record[key])
    if isinstance(record, str):
        return record.split("##")[0].strip()
    return ""


def roots_from(video_root: str | os.PathLike | None, image_root: str | os.PathLike | None) -> MediaRoots:
    return MediaRoots(Path(video_root) if video_root else None, Path(image_root) if image_root else None)
