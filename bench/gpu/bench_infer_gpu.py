"""GPU benchmark of batched E.T. Bench inference with the full-size E.T. Chat (random fp16 weights).

The whole inference path of a shard job (decord decoding of 3 fps / 224 px videos at 1 fps with prefetch, the
phi3 prompts, EVA-ViT-g + Q-Former + Phi-3-mini generation with `<vid>` matching, answer lines fsynced) over
`--samples` E.T. Bench-like samples (durations cycling 60/120/146/240 s, E.T. Bench averages 129 s; multiple-choice
and grounding questions), greedy, at batch 1 and at batch 8 in the same run. Reports samples/s, generated tokens/s,
peak GPU memory and how many answers agree between batch 1 and batch 8 (fp16 kernels may differ by batch shape, so
a few near-ties can flip on a GPU; on a CPU in fp32 they all agree).

The LM's vocabulary is that of a small locally trained tokenizer (no hub access); everything else has the real
sizes (3.8 B Phi-3-mini, EVA-ViT-g/14 at 224 px, BERT-base Q-Former). Needs ffmpeg on PATH to write the videos,
unless `--videos DIR` already holds them (write them on a machine with ffmpeg, carry them to one without).
Under 5 minutes on one H100.

Usage: python bench/gpu/bench_infer_gpu.py [--samples 16] [--max-new-tokens 64] [--json out.json] [--tiny]
       [--videos DIR]
(`--tiny` runs the same code with the tiny test model on short videos, e.g. on a CPU, to check the script.)
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import bench_config, sync, write_figures
from transformers.utils import logging as hf_logging

from etchat.infer.engine import Engine
from etchat.infer.runner import ShardRunner
from etchat.infer.samples import etbench_samples
from etchat.infer.settings import InferSettings
from etchat.infer.store import read_lines
from etchat.model import build_demo_tokenizer, build_model, match_token_id

CORPUS = [
    "<|system|>\nYou are a helpful AI assistant.<|end|>\n<|user|>\nWhen does the red square appear?<|end|>\n"
    "<|assistant|>\nThe red square appears from <vid> to <vid> seconds.<|end|>",
    "Best Option: (A) a blue circle moves left. Localize the video moment according to the query",
]
DURATIONS = (60, 120, 146, 240)


def write_video(path: Path, seconds: float) -> None:
    """A 3 fps, 224 px (shortest side) H.264 test pattern: E.T. Bench's compressed format."""
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size=398x224:rate=3:duration={seconds}"]
    subprocess.run([*cmd, "-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(path)], check=True)


def write_videos(videos: Path, durations: tuple[float, ...]) -> None:
    """v0.mp4, v1.mp4, ... of the given durations; videos already there are kept (made elsewhere, or a rerun)."""
    videos.mkdir(parents=True, exist_ok=True)
    for i, seconds in enumerate(durations):
        video = videos / f"v{i}.mp4"
        if video.exists():
            continue
        if shutil.which("ffmpeg") is None:
            raise SystemExit(f"{video} is missing and ffmpeg is not on PATH to write it (see --videos)")
        write_video(video, seconds)


def annotations(root: Path, count: int, durations: tuple[float, ...]) -> Path:
    records = []
    for i in range(count):
        seconds = durations[i % len(durations)]
        video = f"v{i % len(durations)}.mp4"  # written by write_videos
        base = {"version": 1.0, "idx": i, "source": "bench", "video": video, "duration": float(seconds)}
        if i % 4 == 0:
            q = "What is happening at <vid> seconds? Options: (A) a (B) b (C) c (D) d."
            records.append({**base, "task": "rar", "src": [seconds / 3], "p": 0, "o": list("abcd"), "q": q})
        else:
            q = "Find the moment when the pattern changes colour. Answer with the start and end timestamps."
            records.append({**base, "task": "tvg", "tgt": [1.0, 2.0], "q": q})
    path = root / "etbench_vid.json"
    path.write_text(json.dumps(records))
    return path


def run(engine: Engine, samples: list, log: Path, device: torch.device) -> dict[str, Any]:
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    summary = ShardRunner(engine, "etbench", log).run(samples)
    sync(device)
    seconds = time.perf_counter() - start
    lines = read_lines(log)
    if summary.errors:
        raise SystemExit(f"{summary.errors} samples failed: {summary.error_samples[:3]}")
    return {
        "seconds": seconds,
        "samples_per_s": len(samples) / seconds,
        "tokens_per_s": sum(line["tokens"] for line in lines) / seconds,
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "answers": {line["key"]: line["answer"] for line in lines},
        "frames": sum(line["frames"] for line in lines),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--attn", choices=("eager", "sdpa"), default="eager", help="eager: the original's")
    parser.add_argument("--vision-chunk-size", type=int, default=256)
    parser.add_argument("--tiny", action="store_true", help="tiny model and short videos (check the script)")
    parser.add_argument("--json", type=str, default=None, help="also write the figures to this file")
    parser.add_argument("--videos", type=Path, default=None, help="folder of the test videos, written when missing")
    args = parser.parse_args()
    hf_logging.disable_progress_bar()
    logging.basicConfig(level=logging.WARNING)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32  # fp16: the original's inference dtype

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tokenizer = build_demo_tokenizer(CORPUS * 8, root / "tok", vocab_size=512)
        ids = dict(
            vocab_size=len(tokenizer),
            match_token_id=match_token_id(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        config = bench_config(args.tiny, **ids)
        durations: tuple[float, ...] = (8, 12) if args.tiny else DURATIONS
        torch.manual_seed(0)
        build_start = time.perf_counter()
        with torch.device(device):
            model = build_model(config, dtype=dtype, attn_implementation=args.attn)
        if args.attn == "sdpa":
            model.model.set_visual_attn_implementation("sdpa")
        build_s = time.perf_counter() - build_start
        videos = args.videos or root / "videos"
        write_videos(videos, durations)
        samples = etbench_samples(annotations(root, args.samples, durations), videos)
        results: dict[str, Any] = {
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "dtype": str(dtype),
            "params": sum(p.numel() for p in model.parameters()),
            "attn": args.attn,
            "samples": len(samples),
            "max_new_tokens": args.max_new_tokens,
            "build_s": build_s,
            "torch": torch.__version__,
        }
        print(
            f"{results['device']}: {results['params'] / 1e9:.2f} B params, {dtype}, {args.attn}, built {build_s:.0f} s"
        )
        runs = {}
        for batch in (1, 8):
            settings = InferSettings(
                decoding="greedy",
                max_new_tokens=args.max_new_tokens,
                batch_size=batch,
                attn_implementation=args.attn,
                vision_chunk_size=args.vision_chunk_size,
                loader_workers=4,
            )
            engine = Engine.from_model(model, tokenizer, settings, name="random full-size model")
            if batch == 1:  # warm-up (CUDA kernels, decord) on one sample
                run(engine, samples[:1], root / "warmup.jsonl", device)
            runs[batch] = run(engine, samples, root / f"b{batch}.jsonl", device)
            r = runs[batch]
            results[f"batch{batch}"] = {k: v for k, v in r.items() if k != "answers"}
            mem = f", peak {r['peak_mem_gib']:.1f} GiB" if r["peak_mem_gib"] is not None else ""
            print(
                f"batch {batch}: {r['samples_per_s']:.2f} samples/s, {r['tokens_per_s']:.0f} generated tok/s, "
                f"{r['frames']} frames in {r['seconds']:.1f} s{mem}"
            )
        same = sum(runs[1]["answers"][k] == runs[8]["answers"][k] for k in runs[1]["answers"])
        results["speedup_b8_over_b1"] = runs[8]["samples_per_s"] / runs[1]["samples_per_s"]
        results["same_answers"] = f"{same}/{len(samples)}"
        print(f"batch 8 / batch 1 = {results['speedup_b8_over_b1']:.2f}x samples/s; same answers {same}/{len(samples)}")
    write_figures(results, args.json, "bench_infer_gpu.json")


if __name__ == "__main__":
    main()
