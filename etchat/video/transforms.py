"""The `clip_center_224` transform in plain torch, and image loading with optional square padding.

Steps as the original (model spec §3.3): uint8 T x H x W x 3 -> float / 255 -> resize the shorter
side (bilinear, antialias; torchvision's size arithmetic) -> centre square of side min(size, H, W)
resized to size x size -> CLIP mean/std.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Square padding colour for images (stage 2): the CLIP mean as 8-bit RGB.
PAD_VALUE = tuple(int(x * 255) for x in CLIP_MEAN)


def resized_size(height: int, width: int, size: int) -> tuple[int, int]:
    """Output (height, width) when the shorter side becomes `size` (torchvision.transforms.Resize(int))."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def resize_shorter_side(video: torch.Tensor, size: int) -> torch.Tensor:
    h, w = video.shape[-2:]
    out = resized_size(h, w, size)
    if out == (h, w):
        return video
    return F.interpolate(video, size=out, mode="bilinear", align_corners=False, antialias=True)


def center_resized_crop(video: torch.Tensor, size: int) -> torch.Tensor:
    """The centre square of side min(size, H, W), resized to size x size."""
    h, w = video.shape[-2:]
    side = min(size, h, w)
    top, left = int((h - side) / 2), int((w - side) / 2)
    video = video[..., top : top + side, left : left + side]
    return F.interpolate(video, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def normalize(video: torch.Tensor, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    m = video.new_tensor(mean)[None, :, None, None]
    s = video.new_tensor(std)[None, :, None, None]
    return (video - m) / s


def clip_center(video: torch.Tensor, size: int = 224) -> torch.Tensor:
    """uint8 frames T x H x W x 3 -> normalised float T x 3 x size x size."""
    if video.dtype != torch.uint8 or video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames of shape T x H x W x 3, got {video.dtype} {tuple(video.shape)}")
    x = video.float().permute(0, 3, 1, 2) / 255
    return normalize(center_resized_crop(resize_shorter_side(x, size), size))


def clip_center_224(video: torch.Tensor) -> torch.Tensor:
    return clip_center(video, 224)


TRANSFORMS = {"clip_center_224": clip_center_224}


def get_transform(name: str):
    """A transform by its config name (`vision_processor`); `clip_center_<N>` for other sizes."""
    if name in TRANSFORMS:
        return TRANSFORMS[name]
    prefix = "clip_center_"
    if name.startswith(prefix) and name[len(prefix) :].isdigit():
        size = int(name[len(prefix) :])
        return lambda video: clip_center(video, size)
    raise ValueError(f"unknown vision processor {name!r}; use clip_center_<size>, e.g. clip_center_224")


def load_image(path: str | os.PathLike, pad_to_square: bool = False) -> torch.Tensor:
    """An image as a one-frame video (1 x H x W x 3 uint8), optionally padded to a square (stage 2)."""
    img = Image.open(path).convert("RGB")
    if pad_to_square and img.width != img.height:
        side = max(img.width, img.height)
        canvas = Image.new("RGB", (side, side), PAD_VALUE)
        canvas.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
        img = canvas
    return torch.from_numpy(np.array(img)).unsqueeze(0)
