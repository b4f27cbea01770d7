"""Full size on CPU: the 5.02 B-parameter E.T. Chat through the code the DAG runs, from real-format base files.

Each step runs in a fresh process, so its peak RSS is its own (VmHWM, reset between phases of a step):
  standins    the base-weight stand-ins of scripts/standins.py in WORK/base (kept when already there)
  build_save  stage 1's start, `build_from_base` (Phi-3 shards, eva_vit_g.pth, instruct_blip_vicuna7b_trimmed.pth,
              every key accounted for) in bf16, then `save_checkpoint` in the released layout (fp16 shards,
              index) to WORK/checkpoint, compared with the original's shard plan
  load        `load_checkpoint(WORK/checkpoint)` in fp16, every weight read once: seconds, peak RSS against the
              fp16 size
  train_step  stage 3's start from that checkpoint (`load_start`: tokenizer with `<vid>` added, matching heads),
              LoRA and the stage-3 trainable set, then one forward + backward of an E.T. Instruct-style
              conversation on a real video (ffmpeg test pattern, 3 fps, 224 px; `--frames` at 1 fps) through the
              training dataset and collator; then the LoRA merge, checked against W + scale * B @ A on one layer
  generate    the same start, then a batch of two E.T. Bench prompts through the shard runner (greedy), and
              `generate` with `<vid>` steered at two steps to show the matching head picking frames
Frozen weights stay in bf16 (no fp32 copy); nothing is trained past one backward pass.

Usage: python bench/bench_fullsize.py --work DIR [--steps standins,build_save,...] [--frames 8] [--json F] [--tiny]
(`--tiny` runs every step with the tiny layout in seconds, to check the script; the full size needs ~20 GB free
disk and ~22 GiB RAM and takes about half an hour on 2 cores.)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
STEPS = ("standins", "build_save", "load", "train_step", "generate")


# ------------------------------------------------------------------------------------------------ measuring
def peak_rss_gib() -> float:
    """This process's peak resident set (VmHWM) since start or the last `reset_peak`."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmHWM in /proc/self/status")


def rss_gib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    raise RuntimeError("no VmRSS in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS


class Phase:
    """Seconds and RSS of a block: `with Phase(figures, "load"): ...` -> figures["load_s"], ["load_before_gib"],
    ["load_peak_gib"], ["load_after_gib"]."""

    def __init__(self, figures: dict[str, Any], name: str) -> None:
        self.figures, self.name = figures, name

    def __enter__(self) -> Phase:
        reset_peak()
        self.figures[f"{self.name}_before_gib"] = round(rss_gib(), 2)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.figures[f"{self.name}_s"] = round(time.perf_counter() - self.start, 2)
        self.figures[f"{self.name}_peak_gib"] = round(peak_rss_gib(), 2)
        self.figures[f"{self.name}_after_gib"] = round(rss_gib(), 2)


def _script(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------ the steps
def step_standins(work: Path, size: str, args: argparse.Namespace) -> dict[str, Any]:
    base = work / "base"
    figures: dict[str, Any] = {}
    if not (base / "Phi-3-mini-4k-instruct" / "config.json").is_file():
        with Phase(figures, "write"):
            _script("standins").write_standins(base, size)
    figures["bytes"] = sum(p.stat().st_size for p in base.rglob("*") if p.is_file())
    return figures


def _base(work: Path) -> dict[str, Path]:
    base = work / "base"
    return {"llm_dir": base / "Phi-3-mini-4k-instruct", "eva_vit": base / "eva_vit_g.pth",
            "qformer": base / "instruct_blip_vicuna7b_trimmed.pth"}  # fmt: skip


def _config(size: str, stage: int) -> Any:
    from etchat.model import original_tiny_config, phi3_mini_config

    return phi3_mini_config(stage) if size == "full" else original_tiny_config(stage)


def step_build_save(work: Path, size: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from etchat.model import build_from_base, save_checkpoint
    from etchat.model.tokenizer import load_tokenizer

    base, figures = _base(work), {}
    with Phase(figures, "build"):
        model = build_from_base(base["llm_dir"], _config(size, 1), base["eva_vit"], base["qformer"], torch.bfloat16)
    figures["parameters"] = sum(p.numel() for p in model.parameters())
    tokenizer = load_tokenizer(base["llm_dir"])
    out = work / "checkpoint"
    with Phase(figures, "save"):
        save_checkpoint(model, out, tokenizer=tokenizer, dtype=torch.float16)
    shards = sorted(p.name for p in out.glob("*.safetensors"))
    figures["checkpoint_bytes"] = sum((out / s).stat().st_size for s in shards)
    figures["shards"] = shards
    index_file = out / "model.safetensors.index.json"
    if index_file.is_file():  # stage 1 and 2 checkpoints hold the same keys: compare with stage 2's plan
        ours = json.loads(index_file.read_text())
        layout = _script("standins").layout(size)
        predicted = layout["predicted_safetensors_index"]
        figures["index_total_size_equal"] = ours["metadata"]["total_size"] == predicted["metadata"]["total_size"]
        figures["index_weight_map_equal"] = ours["weight_map"] == predicted["weight_map"]
    return figures


def step_load(work: Path, size: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from etchat.model import load_checkpoint

    figures: dict[str, Any] = {}
    # Loading in the file's dtype maps the shards: the weights become resident as they are first read. Reading
    # every weight once (a checksum) brings the whole model into memory, as a forward pass would.
    with Phase(figures, "load"):
        model, tokenizer = load_checkpoint(work / "checkpoint", dtype=torch.float16)
        figures["checksum"] = sum(float(p.detach().reshape(-1)[::1024].float().sum()) for p in model.parameters())
    fp16 = sum(p.numel() * p.element_size() for p in model.state_dict().values()) / 2**30
    figures["fp16_gib"] = round(fp16, 2)
    figures["load_peak_over_fp16"] = round(figures["load_peak_gib"] / fp16, 3)
    # what the load added to the process (Python and torch take about 0.4 GiB before it)
    figures["load_added_over_fp16"] = round((figures["load_peak_gib"] - figures["load_before_gib"]) / fp16, 3)
    return figures


def _stage3_start(work: Path) -> tuple[Any, Any]:
    import torch

    from etchat.train.run import TrainSettings, load_start

    settings = TrainSettings(stages=[3], attn_implementation="eager", model_max_length=2048)
    return load_start(3, str(work / "checkpoint"), {}, settings, use_matching=True, dtype=torch.bfloat16)


def _video(work: Path, seconds: int) -> Path:
    path = work / "video" / "clip.mp4"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        source = f"testsrc2=size=398x224:rate=3:duration={seconds}"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", source, "-pix_fmt", "yuv420p",
                        "-c:v", "libx264", str(path)], check=True)  # fmt: skip
    return path


def step_train_step(work: Path, size: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from etchat.data.collate import TrainingCollator
    from etchat.data.dataset import DataSettings, MediaSource, prepare_dataset
    from etchat.train.run import TrainSettings, add_lora
    from etchat.train.stages import STAGES, set_trainable

    figures: dict[str, Any] = {}
    with Phase(figures, "start"):
        model, tokenizer = _stage3_start(work)
        model = add_lora(model, TrainSettings(stages=[3]))
        counts = set_trainable(model, STAGES[3])
    figures["trainable"] = counts["trainable"]
    video = _video(work, args.frames)
    record = {
        "video": video.name,
        "duration": float(args.frames),
        "conversations": [
            {"from": "human", "value": "<image>\nLocalize the visual content described by the given textual query "
                                       "'the colours change' in the video, and output the start and end timestamps."},
            {"from": "gpt", "value": "The given query happens in <vid> - <vid> seconds."},
        ],
        "tgt": [1.0, 0.6 * args.frames],
    }  # fmt: skip
    settings = DataSettings(template="phi3", use_matching=True, vision_processor=model.config.vision_processor)
    prepared = prepare_dataset([record], settings, MediaSource(video_root=video.parent), tokenizer)
    collate = TrainingCollator(tokenizer.pad_token_id, tokenizer.bos_token_id, use_matching=True)
    batch = collate([prepared.dataset[0]])
    for key in ("skipped", "num_samples"):  # the trainer's bookkeeping (ETChatTrainer.compute_loss pops them)
        batch.pop(key, None)
    figures["frames"] = int(batch["frames"][0].shape[0]) if "frames" in batch else None
    figures["text_tokens"] = int(batch["input_ids"].shape[1])
    model.train()
    with Phase(figures, "forward"):
        outputs = model(**batch)
    with Phase(figures, "backward"):
        outputs.loss.backward()
    figures["loss"], figures["match_loss"] = float(outputs.loss), float(outputs.match_loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    figures["trainable_with_grad"] = sum(g is not None and bool(g.abs().sum() > 0) for g in grads)
    figures["trainable_tensors"] = len(grads)
    model.zero_grad(set_to_none=True)
    del outputs, grads
    # LoRA merge at full size, checked on the first layer's qkv_proj: W' = W + (alpha / r) * B @ A.
    layer = model.base_model.model.model.layers[0].self_attn.qkv_proj
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 0.02)  # a trained-looking B (peft initialises it to zero)
        expected = layer.base_layer.weight.float() + layer.scaling["default"] * (
            layer.lora_B["default"].weight.float() @ layer.lora_A["default"].weight.float()
        )
    with Phase(figures, "merge"):
        merged = model.merge_and_unload()
    diff = (merged.model.layers[0].self_attn.qkv_proj.weight.float() - expected).abs().max().item()
    figures["merge_max_abs_diff_vs_formula"] = diff  # bf16 rounding of the merged weight
    return figures


def step_generate(work: Path, size: str, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from etchat.infer.engine import Engine
    from etchat.infer.runner import ShardRunner
    from etchat.infer.samples import etbench_samples
    from etchat.infer.settings import InferSettings
    from etchat.infer.store import read_lines
    from etchat.model import match_token_id

    figures: dict[str, Any] = {}
    with Phase(figures, "start"):
        model, tokenizer = _stage3_start(work)
        model.eval()
    video = _video(work, args.frames)
    records = [
        {"version": 1.0, "idx": 0, "task": "tvg", "source": "bench", "video": video.name, "duration": args.frames,
         "q": "Localize the visual content described by the given textual query 'the colours change' in the video, "
              "and output the start and end timestamps in seconds.", "tgt": [1.0, 2.0]},
        {"version": 1.0, "idx": 1, "task": "rar", "source": "bench", "video": video.name, "duration": args.frames,
         "q": "What is happening at <vid>? Options: (A) a test pattern (B) a dog (C) a car (D) a cat.",
         "src": [2.0], "p": 0, "o": ["a", "b", "c", "d"]},
    ]  # fmt: skip
    annotations = work / "etbench_vid.json"
    annotations.write_text(json.dumps(records))
    samples = etbench_samples(annotations, video.parent)
    settings = InferSettings(decoding="greedy", max_new_tokens=args.new_tokens, batch_size=2, loader_workers=1)
    engine = Engine.from_model(model, tokenizer, settings, name="full-size stand-in")
    log = work / "answers.jsonl"
    log.unlink(missing_ok=True)
    with Phase(figures, "shard_runner"):
        summary = ShardRunner(engine, "etbench", log).run(samples)
    lines = read_lines(log)
    figures["answers"] = len(lines)
    figures["errors"] = summary.errors
    figures["generated_tokens"] = sum(line["tokens"] for line in lines)
    # <vid> matching at full size: a random model never emits <vid>, so steer it at steps 1 and 3.
    vid = match_token_id(tokenizer)
    prepared = engine.prepare(samples[0])

    def steer(histories: list[list[int]], scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        for b, history in enumerate(histories):
            if len(history) in (1, 3):
                scores[b, vid] += 1e4
        return scores

    with Phase(figures, "steered_generate"), torch.no_grad():
        out = model.generate([prepared.input_ids], [prepared.frames], [[samples[0].question]], [None],
                             max_new_tokens=5, do_sample=False, eos_token_id=[], pad_token_id=tokenizer.pad_token_id,
                             logits_processor=steer)  # fmt: skip
    frames = int(prepared.frames.shape[0])
    matched = [int(f) for f in out.matched_frames[0]]
    figures["vid_positions"], figures["matched_frames"] = list(out.vid_positions[0]), matched
    figures["matched_in_range"] = len(matched) == 2 and all(0 <= f < frames for f in matched)
    return figures


STEP_FUNCTIONS = {"standins": step_standins, "build_save": step_build_save, "load": step_load,
                  "train_step": step_train_step, "generate": step_generate}  # fmt: skip


# ------------------------------------------------------------------------------------------------ driver
def run_step(step: str, args: argparse.Namespace) -> dict[str, Any]:
    """One step in a fresh process; its figures come back as the last line of its stdout."""
    cmd = [sys.executable, __file__, "--child", step, "--work", str(args.work), "--frames", str(args.frames),
           "--new-tokens", str(args.new_tokens)] + (["--tiny"] if args.tiny else [])  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}",
                "returncode": proc.returncode, "wall_s": round(time.perf_counter() - start, 1)}  # fmt: skip
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    figures["wall_s"] = round(time.perf_counter() - start, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="stand-ins, checkpoint and video go here")
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--frames", type=int, default=8, help="seconds of test video (frames at 1 fps)")
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--tiny", action="store_true", help="the tiny layout: check the script in seconds")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", choices=STEPS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    size = "tiny" if args.tiny else "full"
    if args.child:
        import torch

        torch.manual_seed(0)
        figures = STEP_FUNCTIONS[args.child](args.work, size, args)
        print(json.dumps(figures, default=str))
        return
    results: dict[str, Any] = {"size": size, "cpu_count": os.cpu_count()}
    for step in args.steps.split(","):
        results[step] = run_step(step, args)
        print(f"{step}: {json.dumps(results[step], default=str)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    failed = [s for s in args.steps.split(",") if "error" in results[s]]
    if failed:
        raise SystemExit(f"steps failed: {failed}")


if __name__ == "__main__":
    main()
