"""The synthetic demo data set, written under data/ in the layout of a real run.

`plan_dataset` decides everything (scenes, file names, annotation records) from the settings alone,
deterministically from the seed; `generate` renders what is missing or changed and writes the
annotations atomically. Training data and evaluation data use separate videos: E.T. Bench and
Charades-STA videos are never seen in training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from etchat.data.synth import layout
from etchat.data.synth import questions as Q
from etchat.data.synth.layout import ETBENCH_SOURCES, MANIFEST
from etchat.data.synth.scene import (
    COLOURS,
    RENDER_RATE,
    SHAPES,
    Scene,
    describe_picture,
    describe_video,
    make_image_scene,
    make_scene,
    render_frames,
)
from etchat.etbench import IMAGE_TOKEN, TASKS
from etchat.io import atomic_path, read_json, write_json_atomic, write_text_atomic
from etchat.video.ffmpeg import encode_frames

log = logging.getLogger(__name__)

# Bump when rendering changes, so files made by an older renderer are redrawn.
RENDERER_VERSION = "2"

# Separate random streams per kind of item: adding webvid videos never changes an E.T. Bench video.
STREAMS = {
    "llava_pretrain": 1,
    "webvid": 2,
    "llava_instruct": 3,
    "video_chatgpt": 4,
    "text_only": 5,
    "et_instruct": 6,
    "etbench": 7,
    "charades": 8,
}

# This source's VHD ground truth is given per annotator ([[[s, e], ...], ...]), the other shape the
# real benchmark uses.
VHD_ANNOTATOR_SOURCE = "synth_c"

LLAVA_INSTRUCT_DIRS = ("coco/train2017", "gqa/images", "ocr_vqa/images", "textvqa/train_images", "vg/VG_100K")

IMAGE_PROMPTS = (
    "Describe the image concisely.",
    "Give a brief description of the picture.",
    "What is shown in this image?",
    "Summarize the visual content of the image.",
)
VIDEO_PROMPTS = (
    "Describe the video briefly.",
    "What happens in this video?",
    "Give a short caption of the video.",
)


@dataclass
class MediaJob:
    path: Path  # absolute output path
    scene: Scene
    kind: str  # "video" | "image"

    @property
    def digest(self) -> str:
        text = json.dumps({"r": RENDERER_VERSION, "kind": self.kind, "scene": self.scene.to_dict()}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()


@dataclass
class DatasetPlan:
    media: list[MediaJob] = field(default_factory=list)
    json_files: dict[Path, Any] = field(default_factory=dict)
    text_files: dict[Path, str] = field(default_factory=dict)


class _Planner:
    def __init__(self, settings: dict, out: Path):
        self.s = settings
        self.out = out
        self.plan = DatasetPlan()

    def rng(self, stream: str, *index: int) -> np.random.Generator:
        return np.random.default_rng([self.s["seed"], STREAMS[stream], *index])

    # --- scenes -------------------------------------------------------------------------------
    def video_scene(self, rng: np.random.Generator, index: int, tem: bool = False) -> Scene:
        sizes, d = self.s["sizes"], self.s["duration"]
        width, height = sizes[index % len(sizes)]
        fps = int(rng.choice(self.s["fps"]))
        if rng.random() < d["long_fraction"]:
            duration = rng.uniform(d["short_max"], d["max"])
        else:
            duration = rng.uniform(d["min"], d["short_max"])
        n_events = int(rng.integers(self.s["events"]["min"], self.s["events"]["max"] + 1))
        audio = bool(rng.random() < self.s["audio_fraction"])
        if tem:  # temporal event matching needs a shape that appears twice
            n_events, duration = max(2, n_events), max(12.0, duration)
        return make_scene(rng, width, height, fps, float(duration), n_events, audio, repeat_prob=1.0 if tem else 0.35)

    def image_scene(self, rng: np.random.Generator, index: int) -> Scene:
        width, height = self.s["sizes"][index % len(self.s["sizes"])]
        return make_image_scene(rng, width, height, int(rng.integers(1, 4)))

    def add_media(self, path: Path, scene: Scene, kind: str) -> None:
        self.plan.media.append(MediaJob(path, scene, kind))

    # --- stage 1: LLaMA-VID captions ------------------------------------------------------------
    def stage1(self) -> None:
        c = self.s["counts"]
        records = []
        for i in range(c["llava_pretrain_images"]):
            rng = self.rng("llava_pretrain", i)
            scene = self.image_scene(rng, i)
            rel = f"{i // 1000:05d}/{i:09d}.jpg"
            self.add_media(self.out / "llava_pretrain/images" / rel, scene, "image")
            prompt = Q.pick(rng, list(IMAGE_PROMPTS))
            human = f"{IMAGE_TOKEN}\n{prompt}" if rng.random() < 0.5 else f"{prompt}\n{IMAGE_TOKEN}"
            records.append(_record(f"{i:09d}", "image", rel, [(human, describe_picture(scene))]))
        for i in range(c["webvid_videos"]):
            rng = self.rng("webvid", i)
            scene = self.video_scene(rng, i)
            rel = f"{i // 100:03d}/{i:06d}.mp4"
            self.add_media(self.out / "webvid/videos" / rel, scene, "video")
            prompt = Q.pick(rng, list(VIDEO_PROMPTS))
            records.append(
                _record(f"webvid_{i:06d}", "video", rel, [(f"{IMAGE_TOKEN}\n{prompt}", describe_video(scene))])
            )
        self.plan.json_files[self.out / layout.STAGE1] = records

    # --- stage 2: multi-turn chat with images, videos and text only ---------------------------
    def stage2(self) -> None:
        c = self.s["counts"]
        records = []
        for i in range(c["llava_instruct_images"]):
            rng = self.rng("llava_instruct", i)
            scene = self.image_scene(rng, i)
            rel = f"{LLAVA_INSTRUCT_DIRS[i % len(LLAVA_INSTRUCT_DIRS)]}/{i:012d}.jpg"
            self.add_media(self.out / "llava_instruct" / rel, scene, "image")
            turns = _picture_chat(rng, scene)
            turns[0] = (f"{IMAGE_TOKEN}\n{turns[0][0]}", turns[0][1])
            records.append(_record(f"{i:012d}", "image", rel, turns))
        for i in range(c["video_chatgpt_videos"]):
            rng = self.rng("video_chatgpt", i)
            scene = self.video_scene(rng, i)
            rel = f"activitynet/v_synth{i:05d}.mp4"
            self.add_media(self.out / "video_chatgpt" / rel, scene, "video")
            turns = _video_chat(rng, scene)
            turns[0] = (f"{IMAGE_TOKEN}\n{turns[0][0]}", turns[0][1])
            records.append(_record(f"v_synth{i:05d}", "video", rel, turns))
        for i in range(c["text_only_chats"]):
            records.append(_record(f"text_{i:06d}", None, None, _text_chat(self.rng("text_only", i))))
        # LLaVA's mix is shuffled; a fixed permutation keeps it deterministic.
        order = self.rng("text_only", 10**6).permutation(len(records))
        self.plan.json_files[self.out / layout.STAGE2] = [records[j] for j in order]

    # --- stage 3: E.T. Instruct style time-sensitive questions ---------------------------------
    def stage3(self) -> None:
        c = self.s["counts"]
        vid, txt = [], []
        per_video = c["et_instruct_questions_per_video"]
        for i in range(c["et_instruct_videos"]):
            rng = self.rng("et_instruct", i)
            scene = self.video_scene(rng, i)
            rel = f"synth/et_{i:05d}.mp4"
            self.add_media(self.out / "et_instruct_164k/videos" / rel, scene, "video")
            used: set[str] = set()
            for j in range(per_video):
                # Rotate through the tasks so every task is asked, skipping those the scene cannot answer.
                for step in range(len(TASKS)):
                    task = TASKS[(i * per_video + j + step) % len(TASKS)]
                    question = Q.GENERATORS[task](rng, scene) if task not in used else None
                    if question is not None:
                        used.add(task)
                        break
                else:
                    continue
                for flavour, out in (("vid", vid), ("txt", txt)):
                    out.append(_instruct_record(question, rel, scene, flavour))
        self.plan.json_files[self.out / layout.STAGE3["vid"]] = vid
        self.plan.json_files[self.out / layout.STAGE3["txt"]] = txt

    # --- E.T. Bench: all 12 tasks, held-out videos ----------------------------------------------
    def etbench(self) -> None:
        per_source = self.s["counts"]["etbench_samples_per_source"]
        merged: dict[str, list] = {"vid": [], "txt": []}
        video_index = 0
        for t, task in enumerate(TASKS):
            for s, source in enumerate(ETBENCH_SOURCES[task]):
                files: dict[str, list] = {"vid": [], "txt": []}
                for k in range(per_source):
                    rng = self.rng("etbench", t, s, k)
                    for _ in range(1000):
                        scene = self.video_scene(rng, video_index, tem=task == "tem")
                        question = Q.GENERATORS[task](rng, scene)
                        if question is not None:
                            break
                    else:  # pragma: no cover - the generators succeed on most scenes
                        raise RuntimeError(f"could not draw a {task} question")
                    if task == "vhd" and source == VHD_ANNOTATOR_SOURCE:
                        question.tgt = _annotators(rng, question.tgt)
                    rel = f"{source}/{task}_{k:04d}.mp4"
                    self.add_media(self.out / "etbench/videos" / rel, scene, "video")
                    video_index += 1
                    for flavour in ("vid", "txt"):
                        files[flavour].append(_etbench_record(question, k, source, rel, scene, flavour))
                for flavour in ("vid", "txt"):
                    path = self.out / layout.etbench_task_file(flavour, task, source)
                    self.plan.json_files[path] = files[flavour]
                    merged[flavour] += files[flavour]
        for flavour in ("vid", "txt"):
            self.plan.json_files[self.out / layout.ETBENCH[flavour]] = merged[flavour]

    # --- Charades-STA: held-out videos, `vid s e##query` lines -----------------------------------
    def charades(self) -> None:
        c = self.s["counts"]
        lines = []
        for i in range(c["charades_videos"]):
            rng = self.rng("charades", i)
            for _ in range(1000):
                scene = self.video_scene(rng, i)
                events = Q.unique_events(scene)
                if events:
                    break
            vid = f"SY{i:03d}"
            self.add_media(self.out / f"charades/videos/{vid}.mp4", scene, "video")
            for j in rng.permutation(len(events))[: c["charades_queries_per_video"]]:
                e = events[int(j)]
                lines.append(f"{vid} {e.start:.1f} {e.end:.1f}##{e.caption}.")
        self.plan.text_files[self.out / layout.CHARADES] = "\n".join(lines) + "\n"


def _record(rid: str, media: str | None, rel: str | None, turns: list[tuple[str, str]]) -> dict:
    record: dict[str, Any] = {"id": rid}
    if media:
        record[media] = rel
    record["conversations"] = [
        msg for human, gpt in turns for msg in ({"from": "human", "value": human}, {"from": "gpt", "value": gpt})
    ]
    return record


def _picture_chat(rng: np.random.Generator, scene: Scene) -> list[tuple[str, str]]:
    n = len(scene.events)
    kinds = {e.kind for e in scene.events}
    shape_counts: dict[str, list[str]] = {}
    for e in scene.events:
        shape_counts.setdefault(e.shape, []).append(e.colour)
    turns = [("How many shapes are in the picture?", f"There {'is one shape' if n == 1 else f'are {n} shapes'}.")]
    shape = Q.pick(rng, sorted(shape_counts))
    if len(shape_counts[shape]) == 1:
        turns.append((f"What colour is the {shape}?", f"The {shape} is {shape_counts[shape][0]}."))
    colour, other = Q.pick(rng, list(COLOURS)), Q.pick(rng, list(SHAPES))
    present = f"{colour} {other}" in kinds
    turns.append((f"Is there a {colour} {other} in the picture?", "Yes, there is." if present else "No, there is not."))
    return [turns[int(i)] for i in rng.permutation(len(turns))]


def _video_chat(rng: np.random.Generator, scene: Scene) -> list[tuple[str, str]]:
    first = scene.events[0]
    turns = [
        ("What happens in the video?", describe_video(scene).capitalize() + "."),
        ("Which shape appears first?", f"The {first.kind} appears first."),
    ]
    unique = Q.unique_events(scene)
    if unique:
        e = Q.pick(rng, unique)
        turns.append((f"What does the {e.kind} do?", f"It {e.motion}."))
    return turns[: 1 + int(rng.integers(len(turns)))]


def _text_chat(rng: np.random.Generator) -> list[tuple[str, str]]:
    sides = {"triangle": "three sides", "square": "four sides", "circle": "no sides and no corners"}
    mixes = {("red", "yellow"): "orange", ("blue", "yellow"): "green", ("red", "blue"): "purple"}
    shape = Q.pick(rng, sorted(sides))
    (c1, c2), mixed = Q.pick(rng, sorted(mixes.items()))
    a, b = (int(x) for x in rng.integers(1, 20, size=2))
    turns = [
        (f"How many sides does a {shape} have?", f"A {shape} has {sides[shape]}."),
        (f"What colour do you get when you mix {c1} and {c2}?", f"Mixing {c1} and {c2} gives {mixed}."),
        (f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."),
    ]
    order = rng.permutation(len(turns))[: 1 + int(rng.integers(len(turns)))]
    return [turns[int(i)] for i in order]


def _annotators(rng: np.random.Generator, spans: list) -> list:
    """Two annotators' highlight spans: the event itself and a slightly shorter span inside it."""
    second = []
    for s, e in spans:
        cut = round(float(rng.uniform(0.0, 0.25)) * (e - s), 1)
        second.append([round(s + cut, 1), round(e - cut, 1)])
    return [spans, second]


def _instruct_record(q: Q.Question, rel: str, scene: Scene, flavour: str) -> dict:
    human, gpt = q.q, q.a
    if flavour == "txt":
        human, gpt = Q.fill_times(human, q.q_times), Q.fill_times(gpt, q.a_times)
    record: dict[str, Any] = {
        "video": rel,
        "duration": round(scene.duration, 2),
        "task": q.task,
        "source": "synth",
    }
    if q.q_times:
        record["src"] = q.q_times
    if q.a_times:
        record["tgt"] = q.a_times
    record["conversations"] = [{"from": "human", "value": f"{IMAGE_TOKEN}\n{human}"}, {"from": "gpt", "value": gpt}]
    return record


def _etbench_record(q: Q.Question, idx: int, source: str, rel: str, scene: Scene, flavour: str) -> dict:
    record: dict[str, Any] = {
        "version": 1.0,
        "idx": idx,
        "task": q.task,
        "source": source,
        "video": rel,
        "duration": round(scene.duration, 2),
    }
    if q.q_times:
        record["src"] = q.q_times
    for key in ("tgt", "p", "o", "g"):
        value = getattr(q, key)
        if value is not None:
            record[key] = value
    record["q"] = q.q if flavour == "vid" else Q.fill_times(q.q, q.q_times)
    return record


def plan_dataset(settings: dict, out: str | os.PathLike) -> DatasetPlan:
    planner = _Planner(settings, Path(out).resolve())
    planner.stage1()
    planner.stage2()
    planner.stage3()
    planner.etbench()
    planner.charades()
    return planner.plan


def _render(job: MediaJob) -> None:
    if job.kind == "video":
        s = job.scene
        encode_frames(
            job.path, render_frames(s), s.width, s.height, s.fps, s.n_frames, frame_rate_in=RENDER_RATE, audio=s.audio
        )
    else:
        frame = next(render_frames(job.scene))
        with atomic_path(job.path) as tmp:
            Image.fromarray(frame).save(tmp, format="JPEG", quality=92)


def generate(settings: dict, out: str | os.PathLike, workers: int = 2) -> dict:
    """Write the data set under `out`; re-running renders only what is missing or changed."""
    out = Path(out).resolve()
    plan = plan_dataset(settings, out)
    manifest_path = out / MANIFEST
    previous = read_json(manifest_path).get("media", {}) if manifest_path.exists() else {}
    # The digest hashes the whole scene: compute it (and the relative path) once per job.
    planned = [(job, str(job.path.relative_to(out)), job.digest) for job in plan.media]
    media = {rel: digest for _, rel, digest in planned}

    # Remove files an earlier run made that this plan no longer has (only files we made ourselves).
    for rel in set(previous) - set(media):
        (out / rel).unlink(missing_ok=True)
    todo = [job for job, rel, digest in planned if previous.get(rel) != digest or not job.path.exists()]
    log.info("synth: %d media files planned, %d to render", len(plan.media), len(todo))
    # Drop the old manifest first: if rendering is interrupted, nothing claims half-done work is done.
    manifest_path.unlink(missing_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(_render, job) for job in todo]
        for future in tqdm(as_completed(futures), total=len(futures), desc="render", unit="file", disable=None):
            future.result()
    for path, data in plan.json_files.items():
        write_json_atomic(path, data)
    for path, text in plan.text_files.items():
        write_text_atomic(path, text)
    summary = {
        "videos": sum(j.kind == "video" for j in plan.media),
        "images": sum(j.kind == "image" for j in plan.media),
        "annotation_files": len(plan.json_files) + len(plan.text_files),
        "video_seconds": round(sum(j.scene.duration for j in plan.media if j.kind == "video"), 1),
    }
    write_json_atomic(manifest_path, {"settings": settings, "summary": summary, "media": media})
    return {**summary, "rendered": len(todo)}
