"""Command-line options shared by `etchat infer-shard` and `etchat infer`: the settings and the torch threads."""

from __future__ import annotations

import argparse
import json
import logging

import torch

from etchat.errors import ConfigError

from .settings import ATTENTION, DECODING_MODES, DEVICES, DTYPES, VID_TIMES, InferSettings

log = logging.getLogger(__name__)


def add_settings_arguments(parser: argparse.ArgumentParser, vid_times_default: str | None = None) -> None:
    group = parser.add_argument_group("inference settings (default: the faithful ones; flags override --settings)")
    group.add_argument("--settings", default="{}", help="the `infer:` config section as JSON (what the rules pass)")
    group.add_argument("--decoding", choices=DECODING_MODES, help="paper: T=0.2 sampling, seeded; greedy: argmax")
    group.add_argument("--temperature", type=float)
    group.add_argument("--seed", type=int, help="run seed (each sample's seed derives from it and the sample key)")
    group.add_argument("--max-new-tokens", type=int)
    group.add_argument("--batch-size", type=int, help="samples per generate call (outputs do not depend on it)")
    group.add_argument("--fps", type=float, help="frames per second sampled from each video")
    group.add_argument("--max-frames", type=int, help="frames kept at most per video (uniformly subsampled)")
    group.add_argument("--context-length", type=int, help="positions the model may use (default: the checkpoint's)")
    group.add_argument(
        "--vid-times",
        choices=VID_TIMES,
        default=vid_times_default,
        help="write a generated <vid> as the frame index (the original) or the frame's real time in seconds",
    )
    group.add_argument("--device", choices=DEVICES)
    group.add_argument("--dtype", choices=DTYPES)
    group.add_argument("--attn-implementation", choices=ATTENTION)
    group.add_argument("--limit", type=int, help="answer only the first N samples (smoke runs)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (CPU inference)")


def settings_from_args(args: argparse.Namespace) -> InferSettings:
    try:
        base = json.loads(args.settings)
    except json.JSONDecodeError as err:
        raise ConfigError(f"--settings is not valid JSON ({err})") from None
    if not isinstance(base, dict):
        raise ConfigError("--settings must be a JSON object (the infer: config section)")
    settings = InferSettings.from_dict(base)
    return settings.replace(
        decoding=args.decoding,
        temperature=args.temperature,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        fps=args.fps,
        max_frames=args.max_frames,
        context_length=args.context_length,
        vid_times=args.vid_times,
        device=args.device,
        dtype=args.dtype,
        attn_implementation=args.attn_implementation,
        limit=args.limit,
    )


def set_threads(threads: int) -> None:
    torch.set_num_threads(max(1, threads))
    log.debug("torch threads: %d", torch.get_num_threads())
