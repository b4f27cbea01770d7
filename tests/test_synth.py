"""The synthetic data set: deterministic, in the real layout and formats, and true of its videos."""

from __future__ import annotations

import json

import numpy as np
import pytest

from etchat.data.synth import layout
from etchat.data.synth.generate import generate, plan_dataset
from etchat.data.synth.questions import GENERATORS, fill_times
from etchat.data.synth.scene import COLOURS, make_scene
from etchat.data.validate import validate_file
from etchat.etbench import TASKS
from etchat.video.ffmpeg import probe
from etchat.video.sampling import read_video


def test_every_task_has_a_question_generator():
    assert set(GENERATORS) == set(TASKS)


def test_plan_is_deterministic_and_seed_dependent(test_config, tmp_path):
    a = plan_dataset(test_config["synth"], tmp_path)
    b = plan_dataset(test_config["synth"], tmp_path)
    assert [j.digest for j in a.media] == [j.digest for j in b.media]
    assert a.json_files == b.json_files and a.text_files == b.text_files
    c = plan_dataset({**test_config["synth"], "seed": 1}, tmp_path)
    assert [j.digest for j in a.media] != [j.digest for j in c.media]


def test_layout_matches_a_real_run(synth_data):
    for rel in layout.annotation_files():
        assert (synth_data / rel).is_file(), rel
    for folder in [
        "llava_pretrain/images",
        "webvid/videos",
        "llava_instruct/coco/train2017",
        "video_chatgpt/activitynet",
        "et_instruct_164k/videos",
        "etbench/videos",
        "charades/videos",
    ]:
        assert any((synth_data / folder).rglob("*.*")), folder


@pytest.mark.parametrize(
    "name, fmt, video_root, image_root",
    [
        (layout.STAGE1, "llamavid", "webvid/videos", "llava_pretrain/images"),
        (layout.STAGE2, "llamavid", "video_chatgpt", "llava_instruct"),
        (layout.STAGE3["vid"], "et_instruct", "et_instruct_164k/videos", None),
        (layout.ETBENCH["vid"], "etbench_vid", "etbench/videos", None),
        (layout.ETBENCH["txt"], "etbench_txt", "etbench/videos", None),
        (layout.CHARADES, "charades_sta", "charades/videos", None),
    ],
)
def test_annotations_pass_their_format_check(synth_data, name, fmt, video_root, image_root):
    result = validate_file(
        synth_data / name, fmt, synth_data / video_root, synth_data / image_root if image_root else None
    )
    assert result.records and not result.problems, result.problems[:5]


def test_etbench_covers_all_tasks_in_both_flavours(synth_data):
    vid = json.loads((synth_data / layout.ETBENCH["vid"]).read_text())
    txt = json.loads((synth_data / layout.ETBENCH["txt"]).read_text())
    assert {r["task"] for r in vid} == set(TASKS)
    assert len(vid) == len(txt)
    for v, t in zip(vid, txt, strict=True):
        assert {k: v[k] for k in v if k != "q"} == {k: t[k] for k in t if k != "q"}
        assert "<vid>" not in t["q"]
        assert t["q"] == fill_times(v["q"], v.get("src", []))
    # both VHD ground-truth shapes of the real benchmark occur
    vhd = [r["tgt"] for r in vid if r["task"] == "vhd"]
    assert any(isinstance(t[0][0], list) for t in vhd) and any(not isinstance(t[0][0], list) for t in vhd)


def test_evaluation_videos_are_held_out(synth_data):
    stage3 = json.loads((synth_data / layout.STAGE3["vid"]).read_text())
    manifest = json.loads((synth_data / layout.MANIFEST).read_text())["media"]
    train = {d for p, d in manifest.items() if not p.startswith(("etbench/", "charades/"))}
    evaluation = {d for p, d in manifest.items() if p.startswith(("etbench/", "charades/"))}
    assert evaluation and train and not train & evaluation
    assert all(not r["video"].startswith(("etbench", "charades")) for r in stage3)


def test_videos_have_the_configured_variety(synth_data, test_config):
    infos = [probe(p) for p in sorted(synth_data.rglob("*.mp4"))]
    sizes = {(i.width, i.height) for i in infos}
    assert sizes == {tuple(s) for s in test_config["synth"]["sizes"]}
    assert {round(i.fps) for i in infos} <= {25, 30}
    assert any(i.has_audio for i in infos) and any(not i.has_audio for i in infos)
    d = test_config["synth"]["duration"]
    assert all(d["min"] - 0.05 <= i.duration <= d["max"] + 0.05 for i in infos)


def _colour_pixels(frame: np.ndarray, colour: str) -> int:
    target = np.array(COLOURS[colour]) * 255
    return int((np.abs(frame.astype(int) - target).sum(-1) < 90).sum())


def test_annotations_are_true_of_the_video(synth_data):
    """Decode the video (real decord) and look for each event's colour inside and outside its span."""
    records = json.loads((synth_data / layout.ETBENCH["vid"]).read_text())
    checked = 0
    for r in records:
        if r["task"] not in ("dvc", "slc"):
            continue
        video = read_video(synth_data / "etbench/videos" / r["video"], fps=2)
        times = np.array(video.times)
        for (start, end), caption in zip(r["tgt"], r["g"], strict=True):
            colour = caption.split()[1]
            others = [c.split()[1] for c in r["g"] if c != caption]
            inside = np.flatnonzero((times >= start + 0.05) & (times < end - 0.05))
            outside = np.flatnonzero((times < start - 0.05) | (times >= end + 0.05))
            assert inside.size and all(_colour_pixels(video.frames[i].numpy(), colour) > 50 for i in inside)
            if colour not in others:
                assert all(_colour_pixels(video.frames[i].numpy(), colour) < 5 for i in outside)
            checked += 1
    assert checked >= 3


def test_rerun_renders_nothing_and_writes_the_same_files(test_config, tmp_path):
    settings = {**test_config["synth"], "counts": {k: 1 for k in test_config["synth"]["counts"]}}
    first = generate(settings, tmp_path, workers=2)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".json"}
    second = generate(settings, tmp_path, workers=2)
    assert first["rendered"] > 0 and second["rendered"] == 0
    assert before == {p: p.read_bytes() for p in before}


def test_repeated_kind_scenes_do_not_overlap():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scene = make_scene(rng, 320, 240, 25, 30.0, 3, False, repeat_prob=1.0)
        kinds: dict[str, list] = {}
        for e in scene.events:
            kinds.setdefault(e.kind, []).append(e)
        for events in kinds.values():
            for a, b in zip(events, events[1:], strict=False):
                assert a.end <= b.start
