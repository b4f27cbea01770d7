"""Temporal IoU with the exact float semantics of the official scorer (spec §3.1, §3.2)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def temporal_iou(gt: Sequence[Sequence[float]], pred: Sequence[Sequence[float]]) -> np.ndarray:
    """G x P IoU matrix in float32, as `nncore.ops.temporal_iou` on `torch.Tensor` inputs.

    No sorting, no epsilon: reversed windows give negative lengths, identical zero-length windows give
    NaN. Float32 element-wise arithmetic is IEEE, so numpy and torch agree bit for bit.
    """
    g = np.asarray(gt, dtype=np.float32).reshape(-1, 2)
    p = np.asarray(pred, dtype=np.float32).reshape(-1, 2)
    area_g = g[:, 1] - g[:, 0]
    area_p = p[:, 1] - p[:, 0]
    inter = np.minimum(g[:, None, 1], p[None, :, 1]) - np.maximum(g[:, None, 0], p[None, :, 0])
    inter = np.maximum(inter, np.float32(0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area_g[:, None] + area_p[None, :] - inter)


def temporal_iou_scalar(gt: Sequence[float], pred: Sequence[float]) -> float:
    """IoU of one GT and one predicted window, float32 precision returned as a Python float (`.item()`)."""
    return float(temporal_iou([gt], [pred])[0, 0])


def dvc_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """The dense-captioning evaluator's IoU: Python floats, union capped, +1e-8 in the denominator."""
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = min(max(a[1], b[1]) - min(a[0], b[0]), a[1] - a[0] + b[1] - b[0])
    return inter / (union + 1e-8)
