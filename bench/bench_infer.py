"""CPU benchmark of inference on the demo's synthetic E.T. Bench: samples/s at batch 1 vs batch 8, same run.

Runs the shard runner (video decoding with prefetch, prompts, batched generation with `<vid>` matching, answer lines
appended and fsynced) over the demo E.T. Bench (40 samples over 12 tasks) with the demo model, greedy, once at
batch 1 and once at batch 8, and checks that both give the same answers. The model is the demo's trained stage 3
when `results/models/stage3` exists (or `--checkpoint`), else a random model of the demo size (`tiny_config("demo")`)
whose answers mostly run to `--max-new-tokens`.

Needs the demo data: run `snakemake --cores all` (or at least the compression of the etbench set) first.
Usage: python bench/bench_infer.py [--threads 1] [--max-new-tokens 32] [--repeats 2]
Times depend on machine load: compare figures from the same run only.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from etchat.infer.engine import Engine
from etchat.infer.runner import ShardRunner
from etchat.infer.samples import etbench_samples
from etchat.infer.settings import InferSettings
from etchat.infer.store import read_lines
from etchat.model import ETChatPhi3ForCausalLM, build_demo_tokenizer, tiny_config_for

REPO = Path(__file__).resolve().parents[1]
CORPUS = [
    "<|system|>\nYou are a helpful AI assistant.<|end|>\n<|user|>\nWhen does the red square appear?<|end|>\n"
    "<|assistant|>\nThe red square appears from <vid> to <vid> seconds.<|end|>",
    "Best Option: (A) a blue circle moves left. Localize the video moment according to the query",
]


def random_demo_engine(settings: InferSettings, tmp: Path) -> Engine:
    tokenizer = build_demo_tokenizer(CORPUS * 8, tmp, vocab_size=512)
    torch.manual_seed(0)
    config = tiny_config_for(
        tokenizer,
        "demo",
    )
    return Engine.from_model(ETChatPhi3ForCausalLM(config), tokenizer, settings, name="random demo model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is best on a loaded 2-core box)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="runs per batch size; the best is reported")
    parser.add_argument("--checkpoint", type=Path, default=REPO / "results/models/stage3")
    parser.add_argument("--annotations", type=Path, default=REPO / "results/annotations/etbench_vid.json")
    parser.add_argument("--videos", type=Path, default=REPO / "data/etbench/videos_compressed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()
    logging.basicConfig(level=logging.WARNING)
    if not args.annotations.is_file():
        raise SystemExit(f"{args.annotations} not found: run the demo DAG first (snakemake --cores all)")
    samples = etbench_samples(args.annotations, args.videos)

    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for batch in (1, 8):
            settings = InferSettings(decoding="greedy", max_new_tokens=args.max_new_tokens, batch_size=batch)
            if args.checkpoint.is_dir():
                engine = Engine(args.checkpoint, settings)
                model_name = str(args.checkpoint)
            else:
                engine = random_demo_engine(settings, Path(tmp) / "tok")
                model_name = "random demo-size model (no trained stage 3 found)"
            best = None
            for repeat in range(args.repeats):
                log = Path(tmp) / f"b{batch}-{repeat}.jsonl"
                start = time.perf_counter()
                summary = ShardRunner(engine, "etbench", log).run(samples)
                seconds = time.perf_counter() - start
                if summary.errors:
                    raise SystemExit(f"{summary.errors} samples failed: {summary.error_samples[:3]}")
                lines = read_lines(log)
                tokens = sum(line["tokens"] for line in lines)
                if best is None or seconds < best[0]:
                    best = (seconds, tokens, {line["key"]: line["answer"] for line in lines})
            results[batch] = best
        (s1, tok1, ans1), (s8, tok8, ans8) = results[1], results[8]
        same = sum(ans1[k] == ans8[k] for k in ans1)
        figures = {
            "model": model_name,
            "samples": len(samples),
            "threads": args.threads,
            "max_new_tokens": args.max_new_tokens,
            "batch1_samples_per_s": len(samples) / s1,
            "batch8_samples_per_s": len(samples) / s8,
            "speedup": s1 / s8,
            "batch1_tokens_per_s": tok1 / s1,
            "batch8_tokens_per_s": tok8 / s8,
            "same_answers": f"{same}/{len(ans1)}",
        }
    print(f"model: {model_name}; {len(samples)} samples; torch threads {args.threads}; greedy")
    print(
        f"batch 1: {figures['batch1_samples_per_s']:.2f} samples/s ({figures['batch1_tokens_per_s']:.0f} tok/s); "
        f"batch 8: {figures['batch8_samples_per_s']:.2f} samples/s ({figures['batch8_tokens_per_s']:.0f} tok/s); "
        f"{figures['speedup']:.2f}x; same answers {figures['same_answers']}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
