"""`etchat grounding-probe`: does the matching head pick the right frame on held-out videos?

For every held-out E.T. Instruct record with answer timestamps (`tgt`), the conversation is fed with teacher
forcing (as in training) and, at each answer `<vid>`, the frame with the highest matching score is compared with
the target frame `round(t)` (1 fps: frame index = seconds). Reported per task and overall: exact accuracy,
accuracy within one frame, mean absolute error in frames, each next to what picking a frame uniformly at random
would give on the same samples (chance).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from etchat.data.collate import TrainingCollator
from etchat.data.dataset import DataSettings, MediaSource, SkippedSample, prepare_dataset
from etchat.data.records import read_records
from etchat.io import write_json_atomic

log = logging.getLogger(__name__)


def _chance(target: int, frames: int) -> tuple[float, float, float]:
    """Exact hit, within-one hit and absolute error of a uniformly random frame (expected values)."""
    within = min(frames - 1, target + 1) - max(0, target - 1) + 1
    mae = sum(abs(i - target) for i in range(frames)) / frames
    return 1 / frames, within / frames, mae


@torch.no_grad()
def probe(model: Any, tokenizer: Any, records: list[dict], media: MediaSource, fps: float, batch_size: int = 16):
    settings = DataSettings(
        template="phi3", use_matching=True, fps=fps, vision_processor=model.config.vision_processor, seed=0
    )
    with_targets = [r for r in records if r.get("tgt")]
    prepared = prepare_dataset(with_targets, settings, media, tokenizer)
    dataset = prepared.dataset
    collate = TrainingCollator(tokenizer.pad_token_id, tokenizer.bos_token_id, use_matching=True)
    stats: dict[str, list[tuple[int, int, int]]] = defaultdict(list)  # task -> (pred, target, T)
    model.eval()
    for start in range(0, len(dataset), batch_size):
        samples = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        samples = [s for s in samples if not isinstance(s, SkippedSample)]
        if not samples:
            continue
        batch = collate(samples)
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            frames=batch["frames"],
            queries=batch["queries"],
            src=batch["src"],
            tgt=batch["tgt"],
            return_match_logits=True,
        )
        for sample, logits in zip(samples, out.match_logits, strict=True):
            tgt = sample["tgt"]
            num_frames = sample["frames"].shape[0]
            answer = logits[logits.shape[0] - len(tgt) :]  # the answer's <vid>s come last
            task = with_targets[sample["index"]].get("task", "all")
            for t, row in zip(tgt, answer, strict=True):
                target = int(round(min(max(t, 0.0), num_frames - 1)))
                stats[task].append((int(row.argmax()), target, num_frames))
    return summarise(stats, prepared)


def summarise(stats: dict[str, list[tuple[int, int, int]]], prepared: Any) -> dict[str, Any]:
    def block(rows: list[tuple[int, int, int]]) -> dict[str, float]:
        chance = [_chance(t, n) for _, t, n in rows]
        n = len(rows)
        return {
            "timestamps": n,
            "accuracy": sum(p == t for p, t, _ in rows) / n,
            "accuracy_within_1": sum(abs(p - t) <= 1 for p, t, _ in rows) / n,
            "mae_frames": sum(abs(p - t) for p, t, _ in rows) / n,
            "chance_accuracy": sum(c[0] for c in chance) / n,
            "chance_accuracy_within_1": sum(c[1] for c in chance) / n,
            "chance_mae_frames": sum(c[2] for c in chance) / n,
            "mean_frames": sum(r[2] for r in rows) / n,
        }

    all_rows = [r for rows in stats.values() for r in rows]
    if not all_rows:
        return {"timestamps": 0, "records": len(prepared.dataset), "per_task": {}}
    result = {"records": len(prepared.dataset), "skipped": len(prepared.skipped), **block(all_rows)}
    result["per_task"] = {task: block(rows) for task, rows in sorted(stats.items())}
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="stage-3 checkpoint directory")
    parser.add_argument("--records", required=True, help="held-out records (results/train/stage3/heldout.json)")
    parser.add_argument("--manifest", help="compression manifest of their videos")
    parser.add_argument("--video-root", required=True, help="where the (compressed) videos are")
    parser.add_argument("--fps", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, help="JSON with the accuracies and chance levels")


def run(args: argparse.Namespace) -> int:
    from etchat.model import load_checkpoint

    torch.set_num_threads(args.threads)
    model, tokenizer = load_checkpoint(args.model, dtype=torch.float32)
    records = read_records(args.records)
    media = MediaSource.from_manifest(args.manifest, args.video_root, None)
    result = probe(model, tokenizer, records, media, args.fps)
    result["model"] = str(Path(args.model))
    write_json_atomic(args.out, result)
    if result.get("timestamps"):
        log.info(
            "grounding on %d held-out timestamps: accuracy %.3f (chance %.3f), within 1 frame %.3f (chance %.3f), "
            "MAE %.2f frames (chance %.2f)",
            result["timestamps"],
            result["accuracy"],
            result["chance_accuracy"],
            result["accuracy_within_1"],
            result["chance_accuracy_within_1"],
            result["mae_frames"],
            result["chance_mae_frames"],
        )
    else:
        log.warning("no held-out record with answer timestamps: nothing to measure")
    log.debug("%s", json.dumps(result, indent=1))
    return 0
