"""GPU benchmark: full-size E.T. Chat stage-3 optimizer steps through the training code path of `etchat train`.

The model of bench_model_gpu.py (Phi-3-mini + EVA-ViT-g + Q-Former, random weights built on the GPU in fp32, as
`etchat train` loads them) gets a fresh LoRA (r128 on qkv_proj/o_proj) and the stage-3 trainable set, then runs
`--steps` optimizer steps of the HF Trainer with DeepSpeed ZeRO-2 (etchat/train/zero2.json, gradient clipping off,
bf16 or the paper's fp16) on samples shaped like E.T. Instruct (one 146-frame video, ~400 text tokens, 4 `<vid>`
targets), collated by the training collator. One worker (ZeRO-2's partitioning needs several to save memory).

Reports: time per optimizer step (median after the first), samples/s, peak GPU memory, trainable parameters.
Usage: python bench/gpu/bench_train_gpu.py [--steps 4] [--precision bf16|fp16] [--checkpointing] [--tiny] [--json F]
(`--tiny` runs the same path with the tiny test model on a CPU, to check the script.)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainingArguments

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from common import bench_config, conversation, sync, write_figures  # noqa: E402

from etchat.data.collate import TrainingCollator  # noqa: E402
from etchat.model import IGNORE_INDEX, build_model  # noqa: E402
from etchat.train.run import (  # noqa: E402
    TrainSettings,
    add_lora,
    deepspeed_config,
    disable_deepspeed_shm_op,
    ensure_distributed_env,
)
from etchat.train.stages import STAGES, set_trainable  # noqa: E402
from etchat.train.trainer import ETChatTrainer  # noqa: E402


class ShapedLikeETInstruct(torch.utils.data.Dataset):
    """Random samples with the training dataset's fields: one video, a prompt with <image>, an answer with <vid>s."""

    def __init__(self, config: Any, frames: int, text_tokens: int, size: int, length: int) -> None:
        self.config, self.frames, self.text_tokens, self.size, self.length = config, frames, text_tokens, size, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(i)
        prompt, answer = conversation(self.config, self.text_tokens, 4, g)
        t = self.frames
        return {
            "index": i,
            "input_ids": torch.tensor(prompt + answer),
            "labels": torch.tensor([IGNORE_INDEX] * len(prompt) + answer),
            "frames": torch.randn(t, 3, self.size, self.size, generator=g),
            "queries": ["When does the event happen? " * 4],
            "src": [],
            "tgt": [0.2 * t, 0.4 * t, 0.5 * t, 0.9 * t],
        }


class StepTimer(TrainerCallback):
    def __init__(self, device: torch.device) -> None:
        self.device, self.times, self._start = device, [], 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        sync(self.device)
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        sync(self.device)
        self.times.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--frames", type=int, default=146)
    parser.add_argument("--text-tokens", type=int, default=400)
    parser.add_argument("--precision", choices=("bf16", "fp16"), default="bf16")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing (the paper's)")
    parser.add_argument("--attn", choices=("eager", "sdpa"), default="eager")
    parser.add_argument("--tiny", action="store_true", help="tiny test model (check the script on a CPU)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    ensure_distributed_env()
    disable_deepspeed_shm_op()
    import deepspeed

    deepspeed.init_distributed()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.manual_seed(0)
    config = bench_config(args.tiny)
    if args.tiny:
        args.frames, args.text_tokens = min(args.frames, 16), min(args.text_tokens, 64)
    start = time.perf_counter()
    with torch.device(device):
        model = build_model(config, dtype=torch.float32, attn_implementation=args.attn)
    model.model.set_visual_attn_implementation(args.attn)
    model = add_lora(model, TrainSettings(stages=[3]))
    counts = set_trainable(model, STAGES[3])
    build_s = time.perf_counter() - start
    precision = args.precision if cuda else "fp32"
    dataset = ShapedLikeETInstruct(config, args.frames, args.text_tokens, config.vision_image_size, args.steps + 1)
    timer = StepTimer(device)
    with tempfile.TemporaryDirectory() as tmp:
        training_args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=1,
            gradient_accumulation_steps=1,
            learning_rate=2e-5,
            max_steps=args.steps + 1,
            lr_scheduler_type="cosine",
            warmup_steps=0.03,
            weight_decay=0.0,
            max_grad_norm=0.0,
            logging_steps=1,
            save_strategy="no",
            fp16=precision == "fp16",
            bf16=precision == "bf16",
            use_cpu=not cuda,
            deepspeed=deepspeed_config(None, 0.0),
            report_to=[],
            remove_unused_columns=False,
            dataloader_num_workers=2 if cuda else 0,
            activation_checkpointing=args.checkpointing,
            activation_checkpointing_kwargs={"use_reentrant": False} if args.checkpointing else None,
            disable_tqdm=True,
        )
        trainer = ETChatTrainer(
            model=model,
            args=training_args,
            train_dataset=dataset,
            data_collator=TrainingCollator(0, 1, use_matching=True),
            lora_learning_rate=5e-5,
            global_batch=1,
            callbacks=[timer],
        )
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        trainer.train()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    step = statistics.median(timer.times[1:]) if len(timer.times) > 1 else timer.times[0]
    results = {
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "precision": precision,
        "attn": args.attn,
        "checkpointing": args.checkpointing,
        "frames": args.frames,
        "text_tokens": args.text_tokens,
        "params": counts["total"],
        "trainable": counts["trainable"],
        "build_s": build_s,
        "step_s": step,
        "samples_per_s": 1 / step,
        "first_step_s": timer.times[0],
        "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if cuda else None,
        "losses": losses,
        "torch": torch.__version__,
    }
    print(
        f"{results['device']}: stage-3 ZeRO-2 step ({precision}, {args.attn}, checkpointing {args.checkpointing}) "
        f"{step:.2f} s per optimizer step of 1 sample ({args.frames} frames, {args.text_tokens} tokens), first step "
        f"{timer.times[0]:.1f} s; peak {results['peak_mem_gib'] or float('nan'):.1f} GiB; "
        f"{counts['trainable'] / 1e6:.0f} M of {counts['total'] / 1e9:.2f} B parameters trainable; losses {losses}"
    )
    write_figures(results, args.json, "bench_train_gpu.json")


if __name__ == "__main__":
    main()
