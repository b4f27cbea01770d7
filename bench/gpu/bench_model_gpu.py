"""GPU benchmark of the full-size E.T. Chat (Phi-3-mini, EVA-ViT-g, Q-Former) with random bf16 weights.

One script, under 10 minutes on one H100 (usually 2-4):
1. stage-3 style training step (forward + backward, no optimizer step) on one 146-frame video with a ~400-token
   conversation and 4 `<vid>` targets: stage-3 trainable set (Q-Former attention, aggregator, projector, full
   `embed_tokens`/`lm_head`, matching heads; LoRA r128 on qkv/o as `etchat train` adds it). Timed with eager
   attention (the original's) and with SDPA, in the LLM and in EVA/Q-Former alike;
2. batched inference: `generate` on 1 and 8 such videos (prefill time, decode tokens/s).
Reports step time, peak memory, model FLOP utilisation (matmul/attention FLOPs counted by
`torch.utils.flop_counter` over the step, divided by time x the card's dense bf16 peak) and eager/SDPA ratios.

Usage: python bench/gpu/bench_model_gpu.py [--json out.json] [--checkpointing] [--no-lora] [--tiny]
(`--tiny` runs the same code path with the tiny test model, e.g. on a CPU, to check the script.)
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from common import bench_config, conversation, sync, write_figures
from torch.utils.flop_counter import FlopCounterMode

from etchat.model import IGNORE_INDEX, build_model
from etchat.train.run import TrainSettings, add_lora
from etchat.train.stages import STAGES, set_trainable

# Dense bf16 tensor-core peaks (no sparsity), FLOP/s.
PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}


def peak_flops(device: torch.device) -> tuple[float | None, str]:
    if device.type != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_BF16, key=len, reverse=True):
        if all(part in name for part in key.split()):
            return PEAK_BF16[key], name
    return None, name


def train_inputs(config: Any, frames: torch.Tensor, text_tokens: int, device: torch.device) -> dict:
    generator = torch.Generator().manual_seed(0)
    prompt, answer = conversation(config, text_tokens, 4, generator)
    ids = torch.tensor([prompt + answer], device=device)
    labels = torch.tensor([[IGNORE_INDEX] * len(prompt) + answer], device=device)
    t = frames.shape[0]
    return dict(
        input_ids=ids,
        labels=labels,
        frames=[frames],
        queries=[["When does the event happen? " * 4]],
        src=[None],
        tgt=[[0.2 * t, 0.4 * t, 0.5 * t, 0.9 * t]],
    )


def set_attention(model: Any, implementation: str) -> None:
    model.set_attn_implementation(implementation)
    model.model.set_visual_attn_implementation(implementation)


def time_train_step(model: Any, inputs: dict, device: torch.device, steps: int, warmup: int) -> dict:
    model.train()
    for _ in range(warmup):
        model(**inputs).loss.backward()
        model.zero_grad(set_to_none=True)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        out = model(**inputs)
        out.loss.backward()
        sync(device)
        times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {
        "step_s": sorted(times)[len(times) // 2],
        "peak_mem_gib": peak,
        "loss": out.loss.detach().item(),
        "match_loss": out.match_loss.detach().item(),
    }


def count_step_flops(model: Any, inputs: dict) -> float:
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(**inputs).loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def time_generation(
    model: Any, frames: torch.Tensor, batch: int, new_tokens: int, text_tokens: int, device: torch.device, chunk: int
) -> dict:
    model.eval()
    generator = torch.Generator().manual_seed(1)
    prompts = [conversation(model.config, text_tokens, 0, generator)[0] for _ in range(batch)]
    videos = [frames] * batch
    queries = [["Describe the video and give the time of each event."]] * batch
    kwargs = dict(eos_token_id=[-1], vision_chunk_size=chunk)
    model.generate(prompts[:1], videos[:1], queries[:1], max_new_tokens=2, **kwargs)  # warm-up
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    prefill, total = float("inf"), float("inf")
    for _ in range(2):  # best of two: the machine may be shared
        sync(device)
        start = time.perf_counter()
        model.generate(prompts, videos, queries, max_new_tokens=1, **kwargs)
        sync(device)
        prefill = min(prefill, time.perf_counter() - start)
        start = time.perf_counter()
        out = model.generate(prompts, videos, queries, max_new_tokens=new_tokens + 1, **kwargs)
        sync(device)
        total = min(total, time.perf_counter() - start)
    assert all(len(s) == new_tokens + 1 for s in out.sequences)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {
        "batch": batch,
        "prefill_s": prefill,
        "decode_tok_s": batch * new_tokens / max(total - prefill, 1e-9),
        "peak_mem_gib": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=146, help="frames of the video (E.T. Instruct mean: 146)")
    parser.add_argument("--text-tokens", type=int, default=400, help="conversation length in text tokens")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing of the LLM layers")
    parser.add_argument("--no-lora", action="store_true", help="no LoRA layers")
    parser.add_argument("--tiny", action="store_true", help="tiny model (check the script, e.g. on CPU)")
    parser.add_argument("--json", type=str, default=None, help="also write the figures to this file")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    config = bench_config(args.tiny)
    if args.tiny:
        args.frames, args.text_tokens = min(args.frames, 16), min(args.text_tokens, 64)
    build_start = time.perf_counter()
    with torch.device(device):  # random init directly on the GPU, in bf16
        model = build_model(config, dtype=dtype, attn_implementation="sdpa")
    lora = "no"
    if not args.no_lora:
        settings = TrainSettings(stages=[3])  # training's LoRA: r128, alpha 256 on qkv_proj/o_proj
        model = add_lora(model, settings).base_model.model  # keep our forward/generate; the LoRA layers stay
        lora = f"r{settings.lora_r} qkv_proj/o_proj"
    if args.checkpointing:
        model.activation_checkpointing_enable()
    trainable = set_trainable(model, STAGES[3])["trainable"]
    sync(device)
    total_params = sum(p.numel() for p in model.parameters())
    peak, card = peak_flops(device)
    size = config.vision_image_size
    frames = torch.randn(args.frames, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    inputs = train_inputs(config, frames, args.text_tokens, device)
    results: dict[str, Any] = {
        "device": card,
        "dtype": str(dtype),
        "params": total_params,
        "trainable": trainable,
        "lora": lora,
        "frames": args.frames,
        "text_tokens": args.text_tokens,
        "llm_tokens": args.frames + args.text_tokens - 1,
        "checkpointing": args.checkpointing,
        "build_s": time.perf_counter() - build_start,
        "torch": torch.__version__,
    }
    print(
        f"{card}: {total_params / 1e9:.2f} B params ({trainable / 1e6:.0f} M trainable, LoRA {lora}), {dtype}, "
        f"built in {results['build_s']:.0f} s"
    )

    flops = None
    for attn in ("sdpa", "eager"):
        set_attention(model, attn)
        if flops is None:
            flops = count_step_flops(model, inputs)
            results["step_flops"] = flops
        res = time_train_step(model, inputs, device, args.steps, args.warmup)
        res["tflops_per_s"] = flops / res["step_s"] / 1e12
        res["mfu"] = flops / res["step_s"] / peak if peak else None
        results[f"train_{attn}"] = res
        mfu = f"{res['mfu']:.1%}" if res["mfu"] is not None else "n/a"
        print(
            f"train step [{attn}] {res['step_s'] * 1e3:.0f} ms, peak {res['peak_mem_gib']:.1f} GiB, "
            f"{res['tflops_per_s']:.0f} TFLOP/s, MFU {mfu} (loss {res['loss']:.2f}, match {res['match_loss']:.2f})"
        )
    ratio = results["train_eager"]["step_s"] / results["train_sdpa"]["step_s"]
    results["train_eager_over_sdpa"] = ratio
    print(f"train step: eager / sdpa = {ratio:.2f}x  ({flops / 1e12:.1f} TFLOP per step counted)")

    chunk = 256
    for attn in ("sdpa", "eager"):
        set_attention(model, attn)
        for batch in (1, 8):
            res = time_generation(model, frames, batch, args.new_tokens, args.text_tokens // 2, device, chunk)
            results[f"generate_{attn}_b{batch}"] = res
            print(
                f"generate [{attn}] batch {batch}: prefill {res['prefill_s']:.2f} s, decode "
                f"{res['decode_tok_s']:.1f} tok/s, peak {res['peak_mem_gib']:.1f} GiB"
            )
    results["generate_b8_over_b1_tok_s"] = (
        results["generate_sdpa_b8"]["decode_tok_s"] / results["generate_sdpa_b1"]["decode_tok_s"]
    )
    results["prefill_eager_over_sdpa_b8"] = (
        results["generate_eager_b8"]["prefill_s"] / results["generate_sdpa_b8"]["prefill_s"]
    )
    print(
        f"decode tok/s batch 8 / batch 1 [sdpa] = {results['generate_b8_over_b1_tok_s']:.2f}x; "
        f"prefill eager / sdpa (batch 8) = {results['prefill_eager_over_sdpa_b8']:.2f}x"
    )
    write_figures(results, args.json, "bench_model_gpu.json")


if __name__ == "__main__":
    main()
