"""Time-sensitive questions about a scene, for the 12 E.T. Bench task types.

One generator per task returns a `Question`: the prompt and the answer with `<vid>` where a timestamp
goes, the timestamps themselves (`q_times` feed `src`, `a_times` feed `tgt` in E.T. Instruct style),
and the E.T. Bench fields (`tgt` shaped per task, `p`, `o`, `g`). Everything is read off the scene, so
the answers are true of the video.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from etchat.data.synth.scene import COLOURS, KINDS, Event, Scene, visible_kinds
from etchat.etbench import VID_TOKEN

LETTERS = "ABCDE"
UNABLE = "Unable to answer"


@dataclass
class Question:
    task: str
    q: str  # prompt text, `<vid>` where a timestamp of q_times goes
    a: str  # answer text, `<vid>` where a timestamp of a_times goes
    q_times: list[float] = field(default_factory=list)
    a_times: list[float] = field(default_factory=list)
    tgt: list | None = None  # E.T. Bench shape: [s, e] or [[s, e], ...] (or annotators)
    p: int | None = None
    o: list | None = None
    g: list[str] | None = None


def fill_times(text: str, times: list[float]) -> str:
    """Write timestamps as text in place of `<vid>` (the `txt` flavour of the annotations)."""
    parts = text.split(VID_TOKEN)
    if len(parts) - 1 != len(times):
        raise ValueError(f"{len(parts) - 1} {VID_TOKEN} tokens but {len(times)} timestamps in {text!r}")
    out = parts[0]
    for t, part in zip(times, parts[1:], strict=True):
        out += f"{t:.1f}" + part
    return out


def _options_text(options: list[str]) -> str:
    return " ".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))


def unique_events(scene: Scene) -> list[Event]:
    """Events whose kind appears once in the scene (a caption then names exactly one event)."""
    counts: dict[str, int] = {}
    for e in scene.events:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    return [e for e in scene.events if counts[e.kind] == 1]


def pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))]


def _spans_text(n: int) -> str:
    return ", ".join([f"{VID_TOKEN} - {VID_TOKEN} seconds"] * n)


def _merged_spans(events: list[Event]) -> list[list[float]]:
    spans = sorted(e.span for e in events)
    merged: list[list[float]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return merged


def _caption_distractors(rng: np.random.Generator, scene: Scene, true: str, n: int, t: float | None) -> list[str]:
    """Captions of kinds not visible at time t (or absent from the video), with random motions."""
    visible = set(visible_kinds(scene, t)) if t is not None else {e.kind for e in scene.events}
    motions = ["moves left", "moves right", "moves up", "moves down", "stays in place"]
    pool = [f"a {c} {s} {pick(rng, motions)}" for c, s in KINDS if f"{c} {s}" not in visible]
    pool = [c for c in pool if c != true]
    idx = rng.permutation(len(pool))[:n]
    return [pool[i] for i in idx]


def _with_answer(rng: np.random.Generator, true, distractors: list) -> tuple[list, int]:
    options = list(distractors) + [true]
    order = rng.permutation(len(options))
    options = [options[i] for i in order]
    return options, options.index(true)


def q_tvg(rng, scene):
    events = unique_events(scene)
    if not events:
        return None
    e = pick(rng, events)
    return Question(
        "tvg",
        q=f"Find the moment when {e.caption}. Answer with the start and end timestamps.",
        a=f"It happens in {VID_TOKEN} - {VID_TOKEN} seconds.",
        a_times=e.span,
        tgt=e.span,
    )


def q_epm(rng, scene):
    e = pick(rng, list(scene.events))
    last = max((x for x in scene.events if x.kind == e.kind), key=lambda x: x.start)
    return Question(
        "epm",
        q=f"Where did I last see the {e.kind}? Answer with the start and end timestamps.",
        a=f"You last saw it in {VID_TOKEN} - {VID_TOKEN} seconds.",
        a_times=last.span,
        tgt=last.span,
    )


def q_tal(rng, scene):
    if rng.random() < 0.5:
        colour = pick(rng, sorted({e.colour for e in scene.events}))
        matching, what = [e for e in scene.events if e.colour == colour], f"a {colour} shape"
    else:
        shape = pick(rng, sorted({e.shape for e in scene.events}))
        matching, what = [e for e in scene.events if e.shape == shape], f"a {shape}"
    spans = [e.span for e in sorted(matching, key=lambda e: e.start)]
    return Question(
        "tal",
        q=f"Find all the moments when {what} is visible. List the start and end timestamps of each.",
        a=_spans_text(len(spans)) + ".",
        a_times=[t for span in spans for t in span],
        tgt=spans,
    )


def q_evs(rng, scene):
    spans = _merged_spans(list(scene.events))
    return Question(
        "evs",
        q="Summarize the video by listing the segments in which any shape is visible.",
        a=_spans_text(len(spans)) + ".",
        a_times=[t for span in spans for t in span],
        tgt=spans,
    )


def q_vhd(rng, scene):
    events = unique_events(scene)
    if not events:
        return None
    e = pick(rng, events)
    peak = round((e.start + e.end) / 2, 1)
    return Question(
        "vhd",
        q=f"Which moment is the highlight of the video for the query '{e.caption}'? Answer with one timestamp.",
        a=f"The highlight is at {VID_TOKEN} seconds.",
        a_times=[peak],
        tgt=[e.span],
    )


def _captioning(task: str, prompt: str):
    def make(rng, scene):
        events = sorted(scene.events, key=lambda e: (e.start, e.end))
        a = " ".join(f"{VID_TOKEN} - {VID_TOKEN} seconds, {e.caption}." for e in events)
        return Question(
            task,
            q=prompt,
            a=a,
            a_times=[t for e in events for t in e.span],
            tgt=[e.span for e in events],
            g=[e.caption + "." for e in events],
        )

    return make


q_dvc = _captioning("dvc", "Localize the events in the video and describe each of them with its start and end time.")
q_slc = _captioning("slc", "Localize the steps shown in the video and describe each step with its start and end time.")


def q_tem(rng, scene):
    repeated = [k for k in {e.kind for e in scene.events} if sum(x.kind == k for x in scene.events) > 1]
    if not repeated:
        return None
    kind = pick(rng, sorted(repeated))
    first, *others = sorted((e for e in scene.events if e.kind == kind), key=lambda e: e.start)
    return Question(
        "tem",
        q=f"The shape seen in {VID_TOKEN} - {VID_TOKEN} seconds appears again later. When does it appear again?",
        a=f"It appears again in {VID_TOKEN} - {VID_TOKEN} seconds.",
        q_times=first.span,
        a_times=others[0].span,
        tgt=[e.span for e in others],
    )


def _quiet_time(scene: Scene, event: Event) -> float | None:
    """A time inside `event` at which no other shape is visible, if there is one."""
    steps = max(2, int((event.end - event.start) * 10))
    for i in range(steps):
        t = round(event.start + (i + 0.5) * (event.end - event.start) / steps, 1)
        if event.start <= t < event.end and visible_kinds(scene, t) == [event.kind]:
            return t
    return None


def q_rar(rng, scene):
    candidates = [(e, _quiet_time(scene, e)) for e in unique_events(scene)]
    candidates = [(e, t) for e, t in candidates if t is not None]
    if not candidates:
        return None
    e, t = pick(rng, candidates)
    options, p = _with_answer(rng, e.caption, _caption_distractors(rng, scene, e.caption, 3, t))
    return Question(
        "rar",
        q=f"What is happening at {VID_TOKEN} seconds? Options: {_options_text(options)}.",
        a=f"Best Option: ({LETTERS[p]}) {options[p]}",
        q_times=[t],
        p=p,
        o=options,
    )


def q_eca(rng, scene):
    events = unique_events(scene)
    if not events:
        return None
    e = pick(rng, events)
    others = [x.span for x in scene.events if x is not e]
    while len(others) < 3:  # random spans that overlap the true one little
        length = float(rng.uniform(2.0, max(2.5, scene.duration / 3)))
        s = round(float(rng.uniform(0, max(0.1, scene.duration - length))), 1)
        span = [s, round(min(scene.duration, s + length), 1)]
        inter = max(0.0, min(span[1], e.end) - max(span[0], e.start))
        if inter < 0.3 * (e.end - e.start) and span not in others:
            others.append(span)
    options, p = _with_answer(rng, e.span, others[:3])
    text = " ".join(f"({LETTERS[i]}) {VID_TOKEN} - {VID_TOKEN} seconds" for i in range(len(options)))
    return Question(
        "eca",
        q=f"Which segment matches the description '{e.caption}'? Options: {text}.",
        a=f"Best Option: ({LETTERS[p]})",
        q_times=[t for span in options for t in span],
        p=p,
        o=options,
    )


def q_rvq(rng, scene):
    kinds = [f"{c} {s}" for c, s in KINDS]
    if rng.random() < 0.2:  # a span in which nothing is visible: the right answer is "unable"
        gaps = _gaps(scene)
        if gaps:
            span = pick(rng, gaps)
            distractors = [kinds[i] for i in rng.permutation(len(kinds))[:4]]
            options = [f"the {k}" for k in distractors] + [UNABLE]
            return Question(
                "rvq",
                q=f"Which shape appears at the start of {VID_TOKEN} - {VID_TOKEN} seconds? "
                f"Options: {_options_text(options)}.",
                a=f"Best Option: (E) {UNABLE}",
                q_times=span,
                p=4,
                o=options,
            )
    candidates = [e for e in unique_events(scene) if visible_kinds(scene, round(e.start + 0.05, 2)) == [e.kind]]
    if not candidates:
        return None
    e = pick(rng, candidates)
    others = [k for k in kinds if k not in {x.kind for x in scene.events}]
    picks = [others[i] for i in rng.permutation(len(others))[:3]]
    options, p = _with_answer(rng, f"the {e.kind}", [f"the {k}" for k in picks])
    options.append(UNABLE)
    return Question(
        "rvq",
        q=f"Which shape appears at the start of {VID_TOKEN} - {VID_TOKEN} seconds? Options: {_options_text(options)}.",
        a=f"Best Option: ({LETTERS[p]}) {options[p]}",
        q_times=e.span,
        p=p,
        o=options,
    )


def _gaps(scene: Scene) -> list[list[float]]:
    """Spans of at least 2 s in which no shape is visible."""
    gaps, cursor = [], 0.0
    for s, e in _merged_spans(list(scene.events)) + [[scene.duration, scene.duration]]:
        if s - cursor >= 2.0:
            gaps.append([round(cursor, 1), round(s, 1)])
        cursor = max(cursor, e)
    return gaps


def q_gvq(rng, scene):
    by_shape: dict[str, list[Event]] = {}
    for e in scene.events:
        by_shape.setdefault(e.shape, []).append(e)
    shapes = sorted(s for s, es in by_shape.items() if len(es) == 1)
    if not shapes:
        return None
    e = by_shape[pick(rng, shapes)][0]
    options = list(COLOURS)
    p = options.index(e.colour)
    return Question(
        "gvq",
        q=f"What colour is the {e.shape}? Options: {_options_text(options)}. "
        "Answer with the option and the moment that supports it.",
        a=f"({LETTERS[p]}) {e.colour}. The relevant event happens in {VID_TOKEN} - {VID_TOKEN} seconds.",
        a_times=e.span,
        tgt=e.span,
        p=p,
        o=options,
    )


GENERATORS: dict[str, Callable[[np.random.Generator, Scene], Question | None]] = {
    "rar": q_rar,
    "eca": q_eca,
    "rvq": q_rvq,
    "tvg": q_tvg,
    "epm": q_epm,
    "tal": q_tal,
    "evs": q_evs,
    "vhd": q_vhd,
    "dvc": q_dvc,
    "slc": q_slc,
    "tem": q_tem,
    "gvq": q_gvq,
}
