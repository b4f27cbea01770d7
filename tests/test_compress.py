"""Sharded compression with real ffmpeg: sizes, bad inputs, resume after a kill, the manifest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import decord
import ffmpeg
import numpy as np
import pandas as pd
import pytest

from etchat.data.synth.scene import RENDER_RATE, make_scene, render_frames
from etchat.video.compress import CompressSettings, compress_video, read_manifest, run_shard
from etchat.video.ffmpeg import encode_frames, probe
from etchat.video.listing import VideoEntry, list_videos, listing_fingerprint, split_shards
from etchat.video.summary import merge_manifests, summarise

FAST = CompressSettings(preset="veryfast")
STABLE = ["path", "status", "in_duration", "out_duration", "in_size", "out_size", "frames"]


def make_video(path: Path, width: int, height: int, fps: int = 25, seconds: float = 8.0, audio=False, seed=0):
    scene = make_scene(np.random.default_rng(seed), width, height, fps, seconds, 2, audio)
    encode_frames(path, render_frames(scene), width, height, fps, scene.n_frames, RENDER_RATE, audio=audio)
    return path


@pytest.fixture(scope="module")
def good_videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    make_video(root / "land/a.mp4", 640, 360, 30, audio=True)
    make_video(root / "port/b.mp4", 360, 640, 25)
    make_video(root / "odd/c.mkv", 317, 179, 30, audio=True)
    make_video(root / "small.mp4", 320, 240, 25, seconds=9.3)
    return root


@pytest.mark.parametrize(
    "rel, size",
    [("land/a.mp4", (398, 224)), ("port/b.mp4", (224, 398)), ("odd/c.mkv", (396, 224)), ("small.mp4", (298, 224))],
)
def test_sizes_and_orientations_come_out_right(good_videos, tmp_path, rel, size):
    row = compress_video(good_videos, tmp_path, rel, FAST)
    assert row.status == "ok" and row.action == "compressed", row.error
    out = probe(tmp_path / rel)
    assert (out.width, out.height) == size
    assert out.fps == pytest.approx(3.0) and not out.has_audio
    assert abs(out.duration - probe(good_videos / rel).duration) <= FAST.duration_tolerance
    assert row.frames == len(decord.VideoReader(str(tmp_path / rel))) > 0
    assert row.out_size == f"{size[0]}x{size[1]}"


@pytest.mark.parametrize("rotation, size", [(90, (224, 298)), (180, (298, 224)), (270, (224, 298))])
def test_phone_videos_with_rotation_metadata_come_out_upright(tmp_path, rotation, size):
    """ffmpeg turns a video with rotation metadata upright: the output is checked against the displayed size."""
    plain = make_video(tmp_path / "plain.mp4", 320, 240, 25, seconds=3.0)
    (tmp_path / "in").mkdir()
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", plain, "-c", "copy", "-metadata:s:v:0", f"rotate={rotation}",
                    tmp_path / "in/phone.mp4"], check=True)  # fmt: skip
    assert probe(tmp_path / "in/phone.mp4").width == (240 if rotation % 180 else 320)  # as displayed
    row = compress_video(tmp_path / "in", tmp_path / "out", "phone.mp4", FAST)
    assert row.status == "ok", row.error
    assert row.out_size == f"{size[0]}x{size[1]}" and row.frames == len(
        decord.VideoReader(str(tmp_path / "out/phone.mp4"))
    )
    frame = decord.VideoReader(str(tmp_path / "out/phone.mp4"))[0].asnumpy()
    assert frame.shape[:2] == (size[1], size[0])  # the pixels themselves are turned, not only a flag


def test_a_video_with_corrupt_packets_is_not_ok(tmp_path):
    """ffmpeg decodes past corrupt packets and exits 0; the errors it prints give the video its own status, its
    output is not kept, and the set's summary counts it as failed (compress.on_error decides)."""
    make_video(tmp_path / "in/clean.mp4", 320, 240, 25, seconds=6.0)
    data = bytearray((tmp_path / "in/clean.mp4").read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 3000, 7):
        data[i] ^= 0x5A
    (tmp_path / "in/broken.mp4").write_bytes(bytes(data))
    rows = {rel: compress_video(tmp_path / "in", tmp_path / "out", rel, FAST) for rel in ("clean.mp4", "broken.mp4")}
    assert rows["clean.mp4"].status == "ok", rows["clean.mp4"].error
    assert rows["broken.mp4"].status == "decoded_with_errors"
    assert rows["broken.mp4"].error.startswith("input: decoded with errors (")
    assert not (tmp_path / "out/broken.mp4").exists()
    manifest = pd.DataFrame([vars(r) for r in rows.values()]).astype(str)
    assert summarise("set", manifest)["failed"] == 1


@pytest.mark.parametrize("frames", [1, 2])
def test_a_video_shorter_than_one_output_frame_still_gets_a_frame(tmp_path, frames):
    """The plain fps filter leaves a 1-frame (0.04 s) video without any frame; its last frame is kept instead."""
    make_video(tmp_path / "in/blink.mp4", 320, 240, 25, seconds=frames / 25)
    row = compress_video(tmp_path / "in", tmp_path / "out", "blink.mp4", FAST)
    assert row.status == "ok" and row.frames == 1, row.error
    assert len(decord.VideoReader(str(tmp_path / "out/blink.mp4"))) == 1


@pytest.fixture(scope="module")
def mixed_videos(tmp_path_factory, good_videos) -> Path:
    """Good videos plus every kind of bad file."""
    root = tmp_path_factory.mktemp("mixed")
    for rel in ("land/a.mp4", "small.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes((good_videos / rel).read_bytes())
    (root / "bad").mkdir()
    (root / "bad/zero.mp4").write_bytes(b"")
    (root / "bad/corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(50_000))
    (root / "bad/text.mp4").write_text("this is not a video\n" * 100)
    whole = (good_videos / "port/b.mp4").read_bytes()
    (root / "bad/truncated.mp4").write_bytes(whole[: len(whole) // 2])
    audio_only = root / "bad/audio_only.mp4"
    ffmpeg.input("sine=frequency=440:duration=3", format="lavfi").output(str(audio_only), acodec="aac").global_args(
        "-loglevel", "error"
    ).run()
    # Moov atom first, then cut: headers claim 9 s but only a part decodes.
    faststart = root / "bad/cut_faststart.mp4"
    ffmpeg.input(str(good_videos / "small.mp4")).output(str(faststart), c="copy", movflags="+faststart").global_args(
        "-loglevel", "error"
    ).run()
    data = faststart.read_bytes()
    faststart.write_bytes(data[: int(len(data) * 0.6)])
    return root


def test_bad_videos_are_reported_and_the_rest_finish(mixed_videos, tmp_path):
    entries = list_videos(mixed_videos)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(e.path + "\n" for e in entries))
    rows = {r.path: r for r in run_shard(listing, mixed_videos, tmp_path / "out", tmp_path / "m.tsv", FAST, 2)}
    assert {p for p, r in rows.items() if r.status == "ok"} == {"land/a.mp4", "small.mp4"}
    reasons = {p: r.error for p, r in rows.items() if r.status != "ok"}
    assert "empty file" in reasons["bad/zero.mp4"]
    assert "no video stream" in reasons["bad/audio_only.mp4"]
    for bad in ("bad/corrupt.mp4", "bad/text.mp4", "bad/truncated.mp4"):
        assert reasons[bad].startswith("input:"), reasons[bad]
    assert "duration" in reasons["bad/cut_faststart.mp4"] or "decode" in reasons["bad/cut_faststart.mp4"]
    # nothing is ever copied in place of a failed output, and no temporary file is left behind
    produced = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert produced == ["land/a.mp4", "small.mp4"]
    manifest = read_manifest(tmp_path / "m.tsv")
    assert [r["path"] for r in manifest] == sorted(rows)
    assert all(r["error"] for r in manifest if r["status"] == "failed")


def test_invalid_existing_output_is_redone_valid_one_reused(good_videos, tmp_path):
    assert compress_video(good_videos, tmp_path, "small.mp4", FAST).action == "compressed"
    assert compress_video(good_videos, tmp_path, "small.mp4", FAST).action == "reused"
    (tmp_path / "small.mp4").write_bytes(b"garbage")
    row = compress_video(good_videos, tmp_path, "small.mp4", FAST)
    assert row.status == "ok" and row.action == "compressed"


def test_stale_temporaries_of_a_killed_run_are_removed(good_videos, tmp_path):
    stale = tmp_path / "port/.b.mp4.abc123.mp4"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half written")
    assert compress_video(good_videos, tmp_path, "port/b.mp4", FAST).status == "ok"
    assert not stale.exists()


def test_shards_balance_bytes_deterministically():
    entries = [VideoEntry(f"v{i}.mp4", size) for i, size in enumerate([100, 90, 50, 40, 30, 10, 5, 5])]
    shards = split_shards(entries, 3)
    assert shards == split_shards(list(reversed(entries)), 3)
    assert sorted(e.path for s in shards for e in s) == sorted(e.path for e in entries)
    loads = [sum(e.size for e in s) for s in shards]
    assert max(loads) - min(loads) <= 100
    assert all(s == sorted(s, key=lambda e: e.path) for s in shards)
    equal = split_shards([VideoEntry(f"e{i}.mp4", 0) for i in range(10)], 4)
    assert sorted(len(s) for s in equal) == [2, 2, 3, 3]


def test_every_entry_named_like_a_video_gets_a_manifest_row_with_its_reason(tmp_path):
    """Hidden files and other names are not listed; links leaving the root, dangling links, folders named like
    videos, images and audio-only files are, and each fails with a reason about the input (nothing read outside)."""
    root = tmp_path / "set"
    make_video(root / "sub/a.MP4", 320, 240, 25, seconds=2.0)
    make_video(root / "clip.mp4/inner.mp4", 320, 240, 25, seconds=2.0)  # inside a folder named like a video
    (root / ".hidden.mp4").write_bytes(b"x")
    (root / "notes.txt").write_text("x")
    make_video(tmp_path / "outside.mp4", 320, 240, 25, seconds=2.0)
    (root / "link.mp4").symlink_to(tmp_path / "outside.mp4")
    (root / "dangling.mp4").symlink_to(root / "gone.mp4")
    (root / "inside.mp4").symlink_to(root / "sub/a.MP4")  # a link that stays inside is followed
    os.mkfifo(root / "pipe.mp4")  # reading it would block: refused without being opened
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1",
                    "-f", "image2", "-c:v", "png", root / "still.mp4"], check=True)  # fmt: skip
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc", "-t", "1", root / "sound.mp4"],
                   check=True)  # fmt: skip
    entries = [e.path for e in list_videos(root)]
    assert entries == ["clip.mp4", "clip.mp4/inner.mp4", "dangling.mp4", "inside.mp4", "link.mp4", "pipe.mp4",
                       "sound.mp4", "still.mp4", "sub/a.MP4"]  # fmt: skip
    (tmp_path / "list.txt").write_text("".join(e + "\n" for e in entries))
    run_shard(tmp_path / "list.txt", root, tmp_path / "out", tmp_path / "manifest.tsv", FAST, workers=1)
    rows = {r["path"]: r for r in read_manifest(tmp_path / "manifest.tsv")}
    assert [p for p, r in rows.items() if r["status"] == "ok"] == ["clip.mp4/inner.mp4", "inside.mp4", "sub/a.MP4"]
    reasons = {p: r["error"] for p, r in rows.items() if r["status"] != "ok"}
    assert reasons == {
        "clip.mp4": "input: a folder named like a video, not a video file",
        "dangling.mp4": f"input: dangling symbolic link (its target {root / 'gone.mp4'} does not exist)",
        "link.mp4": f"input: path 'link.mp4' leaves its data root {root.resolve()}; use a path relative to that root",
        "pipe.mp4": "input: not a regular file (a pipe, socket or device)",
        "sound.mp4": "input: no video stream",
        "still.mp4": "input: not a video: an image (png)",
    }
    assert not (tmp_path / "out/link.mp4").exists()


def test_listing_fingerprint_changes_with_the_videos_not_with_an_excluded_compressed_tree(tmp_path):
    root, compressed = tmp_path / "set", tmp_path / "set/compressed"
    (root / "sub").mkdir(parents=True)
    (root / "sub/a.mp4").write_bytes(b"x")
    before = listing_fingerprint(root, compressed)
    compressed.mkdir()
    (compressed / "sub").mkdir()
    (compressed / "sub/a.mp4").write_bytes(b"y")  # what compression adds inside the input tree
    assert listing_fingerprint(root, compressed) == before
    assert listing_fingerprint(root) != before  # without the exclusion it is a new video
    (root / "b.mkv").write_bytes(b"x")
    assert listing_fingerprint(root, compressed) != before
    assert [e.path for e in list_videos(root, compressed)] == ["b.mkv", "sub/a.mp4"]


def _compress_cli(listing, src, dst, manifest):
    return [
        sys.executable,
        "-m",
        "etchat",
        "compress",
        "--list",
        str(listing),
        "--src",
        str(src),
        "--dst",
        str(dst),
        "--manifest",
        str(manifest),
        "--workers",
        "1",
        "--preset",
        "veryfast",
    ]


def test_killed_shard_resumes_without_redoing_valid_outputs(tmp_path):
    src = tmp_path / "src"
    for i in range(6):
        make_video(src / f"v{i}.mp4", 320, 240, 25, seconds=10.0, seed=i)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"v{i}.mp4\n" for i in range(6)))

    # Uninterrupted reference run.
    subprocess.run(_compress_cli(listing, src, tmp_path / "ref", tmp_path / "ref.tsv"), check=True)

    # Kill the whole process group (ffmpeg included) once two outputs are done.
    dst = tmp_path / "dst"
    proc = subprocess.Popen(_compress_cli(listing, src, dst, tmp_path / "m.tsv"), start_new_session=True)
    deadline = time.time() + 120
    while len(list(dst.glob("v*.mp4"))) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in dst.glob("v*.mp4")}
    assert 2 <= len(done) < 6, "the kill should land mid-shard"
    assert not (tmp_path / "m.tsv").exists()

    subprocess.run(_compress_cli(listing, src, dst, tmp_path / "m.tsv"), check=True)
    rows = read_manifest(tmp_path / "m.tsv")
    assert {r["path"] for r in rows if r["action"] == "reused"} == set(done)
    assert {r["path"] for r in rows if r["action"] == "compressed"} == {f"v{i}.mp4" for i in range(6)} - set(done)
    assert all(dst.joinpath(name).stat().st_mtime_ns == mtime for name, mtime in done.items())
    assert not list(dst.glob(".*"))
    reference = read_manifest(tmp_path / "ref.tsv")
    assert [{k: r[k] for k in STABLE} for r in rows] == [{k: r[k] for k in STABLE} for r in reference]


def test_summary_of_a_set_with_no_videos_is_written():
    summary = summarise("empty", merge_manifests([]))
    assert json.loads(json.dumps(summary)) == {
        "set": "empty", "videos": 0, "ok": 0, "compressed": 0, "reused": 0, "checked": 0, "failed": 0,
        "input_hours": 0.0, "output_hours": 0.0, "seconds": 0.0, "failures": [],
    }  # fmt: skip
