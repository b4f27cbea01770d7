"""Training datasets for the three annotation formats (spec §3), with skipped records reported, never replaced.

One class serves every stage: LLaMA-VID records (stages 1-2: an `image`, a `video` or no media) and E.T. Instruct
records (stage 3: a `video` plus `src`/`tgt` seconds for the `<vid>` tokens). `prepare_dataset` checks every
record before training:
- the filters of spec §3.1 (`kind=filtered`, not counted as failures): words of the first answer within
  [min_num_words, max_num_words]; video length within [min_video_len, max_video_len] seconds, from the record's
  `duration` or else the compression manifest;
- what makes a record unusable (`kind=skipped`): a video that failed compression or is missing, a broken
  conversation, `<vid>` counts that do not match `src`/`tgt`.
What only loading tells is checked during training, and the sample is skipped there (`__getitem__` returns a
`SkippedSample`, the collator leaves it out and the trainer records it): a video or image that cannot be decoded,
more text tokens than `model_max_length` (each sample is tokenized when loaded; tokenizing 800K records at start-up
would cost every rank minutes). The original replaced undecodable records with a random other one, silently
changing the data mix, and truncated long ones.

Frames are sampled at `fps` (1: the original) with the original index arithmetic, then `vision_processor`
(e.g. `clip_center_224`). Images are one-frame videos, padded to a square with `image_pad_to_square` (stage 2).
"""

from __future__ import annotations

import collections
import hashlib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset

from etchat.data.conversation import ConversationError, build_conversation, first_answer_words
from etchat.data.tokenization import tokenize_conversation
from etchat.errors import DataError
from etchat.io import write_text_atomic
from etchat.model.constants import IMAGE_TOKEN, MATCH_TOKEN
from etchat.video.sampling import read_video
from etchat.video.transforms import get_transform, load_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSettings:
    """How one stage reads its records (spec §4.2 per-stage values; -1 disables a bound)."""

    template: str  # "plain" (stage 1) or "phi3"
    use_matching: bool = False  # stage 3: pass src/tgt, check <vid> counts
    fps: float = 1.0
    min_video_len: float = -1
    max_video_len: float = -1
    min_num_words: int = -1
    max_num_words: int = -1
    image_pad_to_square: bool = False
    model_max_length: int = 2048
    vision_processor: str = "clip_center_224"
    seed: int = 0  # the <image> placement coin of each record
    cache_frames: bool = False  # keep transformed frames in memory (small demo data only)
    label_masks: str = "original"  # how round boundaries are found (etchat.data.tokenization)


@dataclass(frozen=True)
class MediaSource:
    """Where a stage's media are read, and what the compression step says about its videos."""

    video_root: Path | None = None  # the compressed tree (or the originals for a set that is only checked)
    image_root: Path | None = None
    video_status: dict[str, str] | None = None  # manifest: relative path -> "ok" or the error
    video_durations: dict[str, float] = field(default_factory=dict)
    _exists: dict[tuple[str, str], bool] = field(default_factory=dict, repr=False, compare=False)

    def exists(self, kind: str, rel: str) -> bool:
        """Whether the `kind` ("video"/"image") file `rel` is a file under its root (looked up once per path:
        stage 2 shares 380K images between 625K records)."""
        key = (kind, rel)
        found = self._exists.get(key)
        if found is None:
            root = self.video_root if kind == "video" else self.image_root
            found = self._exists[key] = root is not None and os.path.isfile(os.path.join(root, rel))
        return found

    @classmethod
    def from_manifest(
        cls, manifest: str | Path | None, video_root: str | Path | None, image_root: str | Path | None
    ) -> MediaSource:
        status, durations = None, {}
        if manifest is not None:
            table = pd.read_csv(manifest, sep="\t", keep_default_na=False, dtype=str)
            rows = zip(table.path, table.status, table.error, strict=True)
            status = {p: ("ok" if s == "ok" else (e or s)) for p, s, e in rows}
            for column in ("out_duration", "in_duration"):
                for path, value in zip(table.path, table[column], strict=True):
                    if path not in durations and value not in ("", None):
                        durations[path] = float(value)
        return cls(
            Path(video_root) if video_root else None, Path(image_root) if image_root else None, status, durations
        )


@dataclass
class SkipRow:
    index: int
    id: str
    media: str
    kind: str  # "skipped" (unusable, counts against max_skip_fraction) or "filtered" (spec §3.1 filters)
    phase: str  # "prepare" or "train"
    reason: str


SKIP_COLUMNS = tuple(f.name for f in fields(SkipRow))


@dataclass(frozen=True)
class Item:
    """A record that passed the checks: its index in the annotation list and what the sampler needs."""

    index: int
    modality: str  # "video", "image" or "text"
    words: int  # words of the whole conversation (the modality sampler's length)
    duration: float | None


@dataclass
class SkippedSample:
    """A record that failed while loading during training; the collator drops it and the trainer records it."""

    row: SkipRow


def record_id(record: dict, index: int) -> str:
    return str(record.get("id") or record.get("video") or record.get("image") or f"#{index}")


def _skip_row(record: dict, index: int, kind: str, phase: str, reason: str) -> SkipRow:
    """The skipped-records row of a record (a dict) that is left out."""
    return SkipRow(index, record_id(record, index), media_label(record), kind, phase, reason)


def media_of(record: dict) -> tuple[str, str | None]:
    """("video"|"image"|"text", relative path)."""
    if record.get("video") is not None and record.get("image") is not None:
        raise ConversationError("a record may hold an image or a video, not both")
    if record.get("video") is not None:
        return "video", record["video"]
    if record.get("image") is not None:
        return "image", record["image"]
    return "text", None


class TrainingDataset(Dataset):
    """Samples of the checked records: tokenized text, labels, frames, Q-Former queries, src/tgt."""

    def __init__(
        self, records: Sequence[dict], items: Sequence[Item], settings: DataSettings, media: MediaSource, tokenizer
    ) -> None:
        self.records = records
        self.items = list(items)
        self.settings = settings
        self.media = media
        self.tokenizer = tokenizer
        self.transform = get_transform(settings.vision_processor)
        self._cache: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.items)

    @property
    def modalities(self) -> list[str]:
        return [item.modality for item in self.items]

    @property
    def lengths(self) -> list[int]:
        return [item.words for item in self.items]

    def __getitem__(self, i: int) -> dict[str, Any] | SkippedSample:
        item = self.items[i]
        record = self.records[item.index]
        frames = None
        if item.modality != "text":
            try:
                frames = self._frames(item, record)
            except (DataError, OSError, RuntimeError, ValueError) as err:
                reason = f"cannot load {item.modality}: {str(err).splitlines()[0][:300]}"
                return SkippedSample(_skip_row(record, item.index, "skipped", "train", reason))
            if isinstance(frames, SkippedSample):
                return frames
        conversation = build_conversation(
            record, self.settings.template, frames is not None, self.settings.seed, item.index
        )
        tokens = tokenize_conversation(
            conversation, self.tokenizer, _where(record, item.index), self.settings.label_masks
        )
        limit = self.settings.model_max_length
        if len(tokens.input_ids) > limit:
            reason = f"too long: {len(tokens.input_ids)} text tokens > model_max_length {limit}"
            return SkippedSample(_skip_row(record, item.index, "skipped", "train", reason))
        if not tokens.num_supervised:
            return SkippedSample(_skip_row(record, item.index, "skipped", "train", "no supervised token"))
        sample: dict[str, Any] = {
            "index": item.index,
            "input_ids": torch.tensor(tokens.input_ids, dtype=torch.long),
            "labels": torch.tensor(tokens.labels, dtype=torch.long),
            "frames": frames,
            "queries": conversation.queries if frames is not None else None,
        }
        if self.settings.use_matching:
            sample["src"] = [float(t) for t in record.get("src") or []]
            sample["tgt"] = [float(t) for t in record.get("tgt") or []]
        return sample

    def _frames(self, item: Item, record: dict) -> torch.Tensor | SkippedSample:
        rel = record[item.modality]
        key = f"{item.modality}:{rel}"
        if key in self._cache:
            return self._cache[key]
        s = self.settings
        if item.modality == "image":
            if self.media.image_root is None:
                raise DataError("no image root configured")
            frames = self.transform(load_image(self.media.image_root / rel, s.image_pad_to_square))
        else:
            if self.media.video_root is None:
                raise DataError("no video root configured")
            video = read_video(self.media.video_root / rel, fps=s.fps)
            # Length bounds unknown before decoding (no duration anywhere) are the §3.1 filter, applied now.
            reason = _length_filter(video.duration, s) if item.duration is None else None
            if reason:
                return SkippedSample(_skip_row(record, item.index, "filtered", "train", reason))
            frames = self.transform(video.frames)
        if s.cache_frames:
            self._cache[key] = frames
        return frames


def media_label(record: dict) -> str:
    """`video:<path>`, `image:<path>` or empty, for the skipped-records table."""
    for kind in ("video", "image"):
        if record.get(kind) is not None:
            return f"{kind}:{record[kind]}"
    return ""


def _where(record: dict, index: int) -> str:
    return f"record {index} ({record_id(record, index)})"


def _length_filter(duration: float, s: DataSettings) -> str | None:
    if s.min_video_len >= 0 and duration < s.min_video_len:
        return f"video shorter than min_video_len ({duration} s < {s.min_video_len} s)"
    if s.max_video_len >= 0 and duration > s.max_video_len:
        return f"video longer than max_video_len ({duration} s > {s.max_video_len} s)"
    return None


def holdout_video(video: str, fraction: float, seed: int) -> bool:
    """Whether a video belongs to the held-out split (a stable function of its path, not of the record order)."""
    if fraction <= 0:
        return False
    digest = hashlib.sha256(f"{seed}:{video}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def check_record(record: dict, index: int, settings: DataSettings, media: MediaSource) -> Item | SkipRow:
    """The `Item` of a record that passes every check short of tokenizing (the text's length is checked when the
    sample is loaded), or the `SkipRow` saying why it is left out."""

    def row(kind: str, reason: str) -> SkipRow:
        return _skip_row(record, index, kind, "prepare", reason)

    try:
        modality, rel = media_of(record)
    except ConversationError as err:
        return row("skipped", str(err))
    s = settings
    words = first_answer_words(record)
    if s.min_num_words >= 0 and words < s.min_num_words:
        return row("filtered", f"first answer has {words} words < min_num_words {s.min_num_words}")
    if s.max_num_words >= 0 and words > s.max_num_words:
        return row("filtered", f"first answer has {words} words > max_num_words {s.max_num_words}")

    duration = None
    if modality == "video":
        status = media.video_status.get(rel) if media.video_status is not None else "ok"
        if status is None:
            return row("skipped", "video not in the compression manifest (not listed or not compressed)")
        if status != "ok":
            return row("skipped", f"video failed compression: {status}")
        if not media.exists("video", rel):
            return row("skipped", f"video not found under {media.video_root}")
        duration = record.get("duration") if isinstance(record.get("duration"), int | float) else None
        duration = media.video_durations.get(rel) if duration is None else float(duration)
        reason = _length_filter(duration, s) if duration is not None else None
        if reason:
            return row("filtered", reason)
    elif modality == "image":
        if not media.exists("image", rel):
            return row("skipped", f"image not found under {media.image_root}")

    try:  # placement=False: the checks below read only what the coin cannot change
        conversation = build_conversation(record, s.template, modality != "text", s.seed, index, placement=False)
    except ConversationError as err:
        return row("skipped", f"broken conversation: {err}")
    if s.use_matching:
        problem = _vid_problem(record, conversation.prompt)
        if problem:
            return row("skipped", problem)
    # Joined by a space, no two turns' words run together: the sum of the turns' word counts.
    all_words = len(" ".join(t["value"] for t in record["conversations"]).split())
    return Item(index, modality, all_words, duration)


def _vid_problem(record: dict, prompt: str) -> str | None:
    """`<vid>` counted in the prompt's text: the tokenizer check (`check_tokenizer`) makes each one a single token."""
    times = []
    for key in ("src", "tgt"):
        value = record.get(key) or []
        if not isinstance(value, list) or not all(isinstance(t, int | float) and math.isfinite(t) for t in value):
            return f"{key} must be a list of seconds"
        times += value
    count = prompt.count(MATCH_TOKEN)
    if count != len(times):
        return f"{count} {MATCH_TOKEN} tokens but {len(times)} timestamps in src + tgt"
    if times and IMAGE_TOKEN not in prompt:
        return "timestamps without a video"
    return None


@dataclass
class PreparedData:
    dataset: TrainingDataset
    skipped: list[SkipRow]
    heldout: list[int]  # record indices kept out of training (evaluation split)
    total: int
    labels_checked: int = 0  # usable records whose labels were computed at start-up (LABEL_SAMPLE)
    label_mismatches: int = 0  # of those, records the original's label arithmetic does not add up for

    @property
    def num_skipped(self) -> int:
        return sum(r.kind == "skipped" for r in self.skipped)

    @property
    def num_filtered(self) -> int:
        return sum(r.kind == "filtered" for r in self.skipped)


# Usable records whose labels are computed at start-up: a template or tokenizer problem stops the run there, and
# the share the original's label arithmetic does not add up for is reported. The rest are labelled when loaded.
LABEL_SAMPLE = 1000


def prepare_dataset(
    records: Sequence[dict],
    settings: DataSettings,
    media: MediaSource,
    tokenizer,
    holdout_fraction: float = 0.0,
) -> PreparedData:
    """Check every record (see the module doc) and build the dataset of the usable ones.

    Start-up tokenizes only the first LABEL_SAMPLE usable records; every sample is tokenized when it is loaded
    (`TrainingDataset.__getitem__`), which skips one longer than `model_max_length` then."""
    items: list[Item] = []
    skipped, heldout = [], []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            skipped.append(SkipRow(index, f"#{index}", "", "skipped", "prepare", "record is not a JSON object"))
            continue
        video = record.get("video")
        if isinstance(video, str) and holdout_video(video, holdout_fraction, settings.seed):
            heldout.append(index)
            continue
        checked = check_record(record, index, settings, media)
        if isinstance(checked, Item):
            items.append(checked)
        else:
            skipped.append(checked)
    total = len(records) - len(heldout)
    prepared = PreparedData(TrainingDataset(records, items, settings, media, tokenizer), skipped, heldout, total)
    for item in items[:LABEL_SAMPLE]:
        record = records[item.index]
        conversation = build_conversation(record, settings.template, item.modality != "text", settings.seed, item.index)
        tokens = tokenize_conversation(conversation, tokenizer, _where(record, item.index), settings.label_masks)
        prepared.labels_checked += 1
        prepared.label_mismatches += tokens.mismatch
    log.info(
        "%d records: %d usable, %d filtered (spec §3.1), %d skipped, %d held out",
        len(records),
        len(items),
        prepared.num_filtered,
        prepared.num_skipped,
        len(heldout),
    )
    if prepared.label_mismatches:
        log.warning(
            "%d of the first %d usable records are masked as the original masked them although its round arithmetic "
            "does not add up for them (it warned 'Tokenization mismatch'; e.g. conversations of several rounds with "
            "Phi-3's tokenizer): some answer tokens of their later rounds are not supervised. train.label_masks: "
            "exact masks every round at its true boundaries.",
            prepared.label_mismatches,
            prepared.labels_checked,
        )
    return prepared


def write_skipped(rows: Sequence[SkipRow], path: str | Path) -> None:
    """The skipped-records TSV (one row per record; a record skipped at training time is listed once)."""
    seen: dict[int, SkipRow] = {}
    for r in rows:
        seen.setdefault(r.index, r)
    frame = pd.DataFrame(
        [[getattr(r, c) for c in SKIP_COLUMNS] for r in sorted(seen.values(), key=lambda r: r.index)],
        columns=list(SKIP_COLUMNS),
    )
    # newline="": the text is already what to_csv writes to a file (its own line ends).
    write_text_atomic(path, frame.to_csv(sep="\t", index=False), newline="")


def read_skipped(path: str | Path) -> list[SkipRow]:
    path = Path(path)
    if not path.is_file():
        return []
    frame = pd.read_csv(path, sep="\t", keep_default_na=False, dtype=str)
    return [
        SkipRow(int(r["index"]), r["id"], r["media"], r["kind"], r["phase"], r["reason"])
        for r in frame.to_dict("records")
    ]


def check_skip_rate(rows: Sequence[SkipRow], total: int, max_fraction: float, tsv: str | Path, what: str) -> float:
    """Raise DataError when the share of skipped records exceeds `max_fraction` (filtered ones do not count)."""
    skipped = len({r.index for r in rows if r.kind == "skipped"})
    rate = skipped / total if total else 0.0
    if rate > max_fraction:
        reasons = collections.Counter(r.reason.split(":")[0] for r in rows if r.kind == "skipped")
        top = ", ".join(f"{k} ({v})" for k, v in reasons.most_common(5))  # ties keep first-seen order
        raise DataError(
            f"{what}: {skipped} of {total} records ({rate:.1%}) cannot be used, more than the allowed "
            f"train.max_skip_fraction = {max_fraction:g}. Most common reasons: {top}. Every record and its reason "
            f"is listed in {tsv}; fix the data (or the compression failures) or raise train.max_skip_fraction."
        )
    return rate
