"""Scenes of the synthetic demo: coloured shapes that appear, move and disappear.

A `Scene` is a pure description (sizes, times, positions); `render_frames` turns it into RGB frames.
Captions and timings are derived from the same description, so every annotation is true of its
video. Shapes stay inside the centred square of the frame, which is what a centre crop keeps, so
they are also true of what the model sees.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.75, 0.15),
    "blue": (0.10, 0.25, 0.95),
    "yellow": (0.95, 0.90, 0.10),
}
SHAPES: tuple[str, ...] = ("square", "circle", "triangle")
KINDS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLOURS for s in SHAPES)


@dataclass(frozen=True)
class Event:
    """One appearance of a shape: visible for start <= t < end, moving linearly from p0 to p1."""

    colour: str
    shape: str
    start: float
    end: float
    x0: float  # positions are fractions of the frame width/height
    y0: float
    x1: float
    y1: float
    radius: float  # fraction of the shorter side

    @property
    def kind(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def motion(self) -> str:
        """How the shape moves, in words, judged in the square the model sees."""
        dx, dy = self.x1 - self.x0, self.y1 - self.y0
        if math.hypot(dx, dy) < 0.08:
            return "stays in place"
        if abs(dx) >= abs(dy):
            return "moves right" if dx > 0 else "moves left"
        return "moves down" if dy > 0 else "moves up"

    @property
    def caption(self) -> str:
        return f"a {self.colour} {self.shape} {self.motion}"

    @property
    def span(self) -> list[float]:
        return [self.start, self.end]


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    fps: int
    n_frames: int
    grey: float
    texture_seed: int
    events: tuple[Event, ...]
    audio: bool = False

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps

    def to_dict(self) -> dict:
        return asdict(self)


def _round(x: float) -> float:
    return round(float(x), 1)


def make_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    fps: int,
    duration: float,
    n_events: int,
    audio: bool,
    repeat_prob: float = 0.35,
) -> Scene:
    """Draw a scene: `n_events` appearances of distinct kinds, one kind possibly appearing twice.

    With probability `repeat_prob` (when there are two events or more and 12 s or more) the last
    event repeats the first one's kind, which temporal event matching questions need.

    Event times are multiples of 0.1 s. Each lasts U[2, max(3, 0.7 T)] seconds, as in the prototype
    that showed a tiny model can learn to ground them (shared/spec/demo_learnability.md).
    """
    n_frames = max(1, round(duration * fps))
    duration = n_frames / fps
    kinds = [KINDS[i] for i in rng.permutation(len(KINDS))]
    repeat = n_events >= 2 and duration >= 12 and rng.random() < repeat_prob
    chosen = kinds[: n_events - 1] + [kinds[0]] if repeat else kinds[:n_events]
    events: list[Event] = []
    for colour, shape in chosen:
        for _ in range(100):
            length = rng.uniform(2.0, max(3.0, 0.7 * duration))
            length = min(length, duration - 0.2)
            start = _round(rng.uniform(0.0, duration - length))
            end = _round(min(duration, start + length))
            # Two appearances of the same kind must not overlap, or "when does it appear" is ambiguous.
            clash = any(
                e.colour == colour and e.shape == shape and start < e.end + 1 and e.start < end + 1 for e in events
            )
            if end - start >= 1.5 and not clash:
                break
        else:  # pragma: no cover - only with absurd settings; keep the scene valid anyway
            continue
        radius = float(rng.uniform(0.09, 0.14))
        x0, y0, x1, y1 = rng.uniform(0.0, 1.0, size=4)
        if rng.random() < 0.15:  # some shapes stand still
            x1, y1 = x0, y0
        events.append(Event(colour, shape, start, end, float(x0), float(y0), float(x1), float(y1), radius))
    events.sort(key=lambda e: (e.start, e.end, e.kind))
    return Scene(
        width=width,
        height=height,
        fps=fps,
        n_frames=n_frames,
        grey=float(rng.uniform(0.25, 0.65)),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
        events=tuple(events),
        audio=audio,
    )


def make_image_scene(rng: np.random.Generator, width: int, height: int, n_shapes: int) -> Scene:
    """A still picture: `n_shapes` shapes of distinct kinds, apart from each other (a one-frame scene)."""
    kinds = [KINDS[i] for i in rng.permutation(len(KINDS))[:n_shapes]]
    events: list[Event] = []
    for colour, shape in kinds:
        for _ in range(100):
            x, y = (float(v) for v in rng.uniform(0.0, 1.0, size=2))
            if all(math.hypot(x - e.x0, y - e.y0) > 0.35 for e in events):
                break
        events.append(Event(colour, shape, 0.0, 1.0, x, y, x, y, float(rng.uniform(0.10, 0.14))))
    return Scene(width, height, 1, 1, float(rng.uniform(0.25, 0.65)), int(rng.integers(0, 2**31 - 1)), tuple(events))


def describe_picture(scene: Scene) -> str:
    """A caption of a still picture, shapes named from left to right."""
    names = [f"a {e.kind}" for e in sorted(scene.events, key=lambda e: e.x0)]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"{listed} on a grey background"


def describe_video(scene: Scene) -> str:
    """A caption of a whole video: its events in the order they start."""
    captions = [e.caption for e in scene.events]
    return ", then ".join(captions) if captions else "an empty grey background"


def _shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean mask of a shape inscribed in a size x size box."""
    c = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size]
    dx, dy = (xx - c) / max(c, 1), (yy - c) / max(c, 1)
    if shape == "square":
        return (np.abs(dx) <= 0.85) & (np.abs(dy) <= 0.85)
    if shape == "circle":
        return dx**2 + dy**2 <= 1.0
    if shape == "triangle":  # apex up
        return (dy >= -1.0) & (dy <= 0.9) & (np.abs(dx) <= (dy + 1.0) / 2.0)
    raise ValueError(f"unknown shape {shape!r}")


def _pixel_box(scene: Scene, event: Event, t: float) -> tuple[int, int, int]:
    """Top-left corner and size in pixels of an event's shape at time t, inside the centred square."""
    side = min(scene.width, scene.height)
    off_x, off_y = (scene.width - side) / 2, (scene.height - side) / 2
    size = max(3, int(round(2 * event.radius * side)))
    a = 0.0 if event.end - event.start <= 0 else min(1.0, max(0.0, (t - event.start) / (event.end - event.start)))
    fx = event.x0 + a * (event.x1 - event.x0)
    fy = event.y0 + a * (event.y1 - event.y0)
    left = int(round(off_x + fx * (side - size)))
    top = int(round(off_y + fy * (side - size)))
    return left, top, size


# Scenes are drawn at 10 frames/s, the resolution of event times (multiples of 0.1 s); the encoder
# repeats each drawn frame up to the video's frame rate, so visibility is exact at every frame.
RENDER_RATE = 10


def render_frames(scene: Scene, rate: int = RENDER_RATE) -> Iterator[np.ndarray]:
    """Yield the scene drawn at `rate` frames/s (at least one frame) as H x W x 3 uint8 arrays."""
    rng = np.random.default_rng(scene.texture_seed)
    h, w = scene.height, scene.width
    # A static blocky texture: real-looking enough for a codec, cheap to render and to encode.
    block = 8
    tex = rng.normal(0.0, 0.08, size=(math.ceil(h / block), math.ceil(w / block), 1)).astype(np.float32)
    base = scene.grey + np.repeat(np.repeat(tex, block, 0), block, 1)[:h, :w]
    background = np.repeat((np.clip(base, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), 3, axis=2)
    colours = {name: np.array([round(c * 255) for c in rgb], dtype=np.uint8) for name, rgb in COLOURS.items()}
    mask_cache: dict[tuple[str, int], np.ndarray] = {}
    for k in range(max(1, math.ceil(scene.duration * rate))):
        t = round(k / rate, 6)
        frame = background.copy()
        for event in scene.events:
            if not event.start <= t < event.end:
                continue
            left, top, size = _pixel_box(scene, event, t)
            mask = mask_cache.get((event.shape, size))
            if mask is None:
                mask = mask_cache[(event.shape, size)] = _shape_mask(event.shape, size)
            y0, x0 = max(top, 0), max(left, 0)
            y1, x1 = min(top + size, h), min(left + size, w)
            if y1 <= y0 or x1 <= x0:
                continue
            frame[y0:y1, x0:x1][mask[y0 - top : y1 - top, x0 - left : x1 - left]] = colours[event.colour]
        yield frame


def visible_kinds(scene: Scene, t: float) -> list[str]:
    return [e.kind for e in scene.events if e.start <= t < e.end]
