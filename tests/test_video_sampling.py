"""Frame sampling (real decord) with the original index arithmetic, and the clip_center transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from etchat.data.synth.scene import RENDER_RATE, make_scene, render_frames
from etchat.video.ffmpeg import encode_frames
from etchat.video.sampling import VideoReadError, frame_indices, read_video
from etchat.video.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    PAD_VALUE,
    center_resized_crop,
    clip_center,
    clip_center_224,
    get_transform,
    load_image,
    resized_size,
)


@pytest.mark.parametrize(
    "total, avg_fps, fps, expected",
    [
        (300, 30.0, 1, list(range(0, 300, 30))),
        (101, 25.0, 1, [0, 25, 50, 75, 100]),
        (300, 29.97, 1, [0, 30, 60, 90, 120, 150, 180, 210, 240, 270, 299]),  # the last index is clipped
        (31, 3.0, 1, list(range(0, 31, 3))),
        (10, 30.0, 1, [0]),
        (60, 30.0, 2, list(range(0, 60, 15))),
    ],
)
def test_frame_indices_follow_the_original_arithmetic(total, avg_fps, fps, expected):
    assert frame_indices(total, avg_fps, fps).tolist() == expected


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "v.mp4"
    scene = make_scene(np.random.default_rng(1), 320, 240, 25, 8.0, 2, False)
    encode_frames(path, render_frames(scene), 320, 240, 25, scene.n_frames, RENDER_RATE)
    return path


def test_read_video_returns_frames_and_real_times(video):
    v = read_video(video, fps=1)
    assert v.total_frames == 200 and v.avg_fps == pytest.approx(25.0)
    assert v.indices == list(range(0, 200, 25))
    assert v.times == pytest.approx([float(i) for i in range(8)])
    assert v.frames.shape == (8, 240, 320, 3) and v.frames.dtype == torch.uint8
    assert v.duration == 8.0 and v.tags == [float(i) for i in range(8)]
    fast = read_video(video, fps=2)
    assert fast.indices == [round(i * 12.5) for i in range(16)]


def test_read_video_refuses_bad_lengths_and_files(video, tmp_path):
    with pytest.raises(VideoReadError, match="too short"):
        read_video(video, min_len=10)
    with pytest.raises(VideoReadError, match="too long"):
        read_video(video, max_len=5)
    with pytest.raises(VideoReadError, match="not found"):
        read_video(tmp_path / "missing.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    with pytest.raises(VideoReadError, match="broken.mp4"):
        read_video(broken)


@pytest.mark.parametrize(
    "h, w, expected",
    [
        (240, 320, (224, 298)),
        (640, 360, (398, 224)),
        (179, 317, (224, 396)),
        (224, 224, (224, 224)),
        (100, 50, (448, 224)),
    ],
)
def test_resize_arithmetic_is_torchvisions(h, w, expected):
    assert resized_size(h, w, 224) == expected


def test_constant_colour_normalises_to_clip_values():
    frames = torch.zeros(2, 240, 320, 3, dtype=torch.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 200, 100, 50
    out = clip_center_224(frames)
    assert out.shape == (2, 3, 224, 224)
    expected = [(c / 255 - m) / s for c, m, s in zip((200, 100, 50), CLIP_MEAN, CLIP_STD, strict=True)]
    for channel, value in enumerate(expected):
        assert torch.allclose(out[:, channel], torch.full_like(out[:, channel], value), atol=1e-5)


def test_center_crop_keeps_the_middle_square():
    x = torch.arange(224 * 298, dtype=torch.float32).reshape(1, 1, 224, 298)
    out = center_resized_crop(x, 224)
    assert torch.allclose(out, x[..., :, 37 : 37 + 224], atol=1e-3)
    portrait = clip_center(torch.zeros(1, 400, 200, 3, dtype=torch.uint8), 32)
    assert portrait.shape == (1, 3, 32, 32)
    assert get_transform("clip_center_224") is clip_center_224
    assert get_transform("clip_center_32")(torch.zeros(1, 50, 60, 3, dtype=torch.uint8)).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="unknown vision processor"):
        get_transform("clip_random_224")


def test_load_image_pads_to_square_with_the_mean_colour(tmp_path):
    Image.new("RGB", (320, 240), (255, 0, 0)).save(tmp_path / "a.png")
    plain = load_image(tmp_path / "a.png")
    padded = load_image(tmp_path / "a.png", pad_to_square=True)
    assert plain.shape == (1, 240, 320, 3)
    assert padded.shape == (1, 320, 320, 3)
    assert tuple(padded[0, 0, 0].tolist()) == PAD_VALUE
    assert tuple(padded[0, 160, 160].tolist()) == (255, 0, 0)
    assert tuple(padded[0, 40, 0].tolist()) == (255, 0, 0) and tuple(padded[0, 39, 0].tolist()) == PAD_VALUE
