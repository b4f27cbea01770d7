"""The data path at the real record counts, without loading media: `etchat validate` and the training start-up.

Synthetic annotation files with the real counts and shapes, their media as empty files (nothing is decoded):
  stage1   llava_558k_with_webvid.json: 558,128 image captions (LCS-558K) + 232,000 WebVid clips, one round each
  stage2   llava_v1_5_mix665k_with_video_chatgpt.json: 624,610 image conversations (1-15 rounds; COCO, GQA,
           OCR-VQA, TextVQA, VG images, shared between records), 40,688 text-only ShareGPT chats (long, several
           rounds), 98,000 Video-ChatGPT questions (one round, long answers)
  stage3   et_instruct_164k_vid.json: 164,440 records on 101,000 distinct videos, `<vid>` in questions and answers
           with their src/tgt seconds
  etbench  etbench_vid_v1.0.json: 7,289 samples of the 12 tasks
Measured per file, each in a fresh process on one core (taskset when available): `etchat validate` with the
workflow's settings (seconds, peak RSS; targets <= 60 s and <= 2 GiB), and for the training files the dataset
start-up of `etchat train` (index, filters, media checks, modality grouping; target <= 30 s) with the real Phi-3
tokenizer.

Usage: python bench/bench_datapath.py --work DIR [--files stage1,stage2,stage3,etbench] [--scale 1.0] [--json F]
(`--scale 0.01` writes 1% of every count: the quick mode the tests run.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WORDS = (
    "the a man woman child dog cat car street table kitchen red blue green white black small large two three people "
    "holding standing sitting walking running next to in on of with near under behind front picture image shows "
    "what is are there how many color where why does this that which left right top bottom wearing shirt hat"
).split()
COUNTS = {
    "stage1": {"image": 558_128, "video": 232_000},
    "stage2": {"image": 624_610, "text": 40_688, "video": 98_000},
    "stage3": {"video": 164_440},
}
STAGE3_VIDEOS = 101_000
STAGE2_IMAGES = 380_000  # distinct images behind the 624,610 image conversations
# What the workflow's validation runs with (the oversized-text scan walks every string of every record).
MAX_TEXT_CHARS = yaml.safe_load((REPO / "config.yaml").read_text())["annotations"]["max_text_chars"]
ET_TASKS = ("tvg", "epm", "tal", "evs", "vhd", "dvc", "slc", "tem", "rar", "eca", "rvq", "gvq")


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def _touch(root: Path, rels: set[str]) -> None:
    for rel in rels:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()


def stage1(rng: random.Random, scale: float, media: Path) -> list[dict[str, Any]]:
    records, images, videos = [], set(), set()
    for i in range(int(COUNTS["stage1"]["image"] * scale)):
        rel = f"{i // 1000:05d}/{i:09d}.jpg"
        images.add(rel)
        ask = rng.choice(["<image>\nRender a clear and concise summary of the photo.", "Describe the image.\n<image>"])
        records.append({"id": f"{i:09d}", "image": rel, "conversations": [
            {"from": "human", "value": ask}, {"from": "gpt", "value": _text(rng, 5, 25)}]})  # fmt: skip
    for i in range(int(COUNTS["stage1"]["video"] * scale)):
        rel = f"webvid/{i // 1000:04d}/{i:08d}.mp4"
        videos.add(rel)
        records.append({"id": f"webvid_{i}", "video": rel, "conversations": [
            {"from": "human", "value": "<image>\nDescribe the following video concisely."},
            {"from": "gpt", "value": _text(rng, 5, 20)}]})  # fmt: skip
    _touch(media / "images", images)
    _touch(media / "videos", videos)
    rng.shuffle(records)
    return records


def _rounds(rng: random.Random, first_image: bool, rounds: int, answer: tuple[int, int]) -> list[dict[str, str]]:
    turns = []
    for r in range(rounds):
        question = _text(rng, 4, 14) + "?"
        if r == 0 and first_image:
            question = f"<image>\n{question}" if rng.random() < 0.5 else f"{question}\n<image>"
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": _text(rng, *answer) + "."}]
    return turns


def stage2(rng: random.Random, scale: float, media: Path) -> list[dict[str, Any]]:
    records, images, videos = [], set(), set()
    distinct = max(1, int(STAGE2_IMAGES * scale))
    for i in range(int(COUNTS["stage2"]["image"] * scale)):
        folder = rng.choice(["coco/train2017", "gqa/images", "ocr_vqa/images", "textvqa/train_images", "vg/VG_100K"])
        rel = f"{folder}/{rng.randrange(distinct):07d}.jpg"
        images.add(rel)
        rounds = rng.choice([1, 1, 1, 2, 3, 4, 5, 6, 8, 10, 15])
        records.append({"id": f"img_{i}", "image": rel, "conversations": _rounds(rng, True, rounds, (1, 12))})
    for i in range(int(COUNTS["stage2"]["text"] * scale)):
        rounds = rng.choice([1, 2, 3, 4, 6])
        records.append({"id": f"sharegpt_{i}", "conversations": _rounds(rng, False, rounds, (20, 150))})
    for i in range(int(COUNTS["stage2"]["video"] * scale)):
        rel = f"activitynet/v_{i % max(1, int(13_000 * scale)):06d}.mp4"
        videos.add(rel)
        records.append({"id": f"vcgpt_{i}", "video": rel, "conversations": _rounds(rng, True, 1, (30, 90))})
    _touch(media / "images", images)
    _touch(media / "videos", videos)
    rng.shuffle(records)
    return records


def stage3(rng: random.Random, scale: float, media: Path) -> list[dict[str, Any]]:
    records, videos = [], set()
    distinct = max(1, int(STAGE3_VIDEOS * scale))
    for i in range(int(COUNTS["stage3"]["video"] * scale)):
        rel = (
            f"{rng.choice(['how_to_step', 'activitynet', 'hacs', 'ego4d_naq', 'qvhighlights'])}/{i % distinct:06d}.mp4"
        )
        videos.add(rel)
        duration = round(rng.uniform(5, 300), 1)
        n_src, n_tgt = rng.choice([0, 0, 1, 2]), rng.choice([1, 2, 2, 4, 6])
        question = _text(rng, 8, 30) + " " + " ".join("<vid>" for _ in range(n_src)) + "?"
        answer = " ".join(f"{_text(rng, 2, 6)} <vid>" for _ in range(n_tgt)) + "."
        records.append({"video": rel, "duration": duration, "task": rng.choice(ET_TASKS), "source": "synthetic",
                        "conversations": [{"from": "human", "value": f"<image>\n{question}"},
                                          {"from": "gpt", "value": answer}],
                        "src": sorted(round(rng.uniform(0, duration), 1) for _ in range(n_src)),
                        "tgt": sorted(round(rng.uniform(0, duration), 1) for _ in range(n_tgt))})  # fmt: skip
    _touch(media / "videos", videos)
    return records


def etbench(rng: random.Random, scale: float, media: Path) -> list[dict[str, Any]]:
    from etchat.evaluate.synthetic import synthetic_predictions

    records = synthetic_predictions(seed=0, crash_cases=False)
    records = records[: max(12, int(len(records) * scale))]
    for record in records:
        record.pop("a", None)
        # The scorer's synthetic set jitters some ends below starts, and past the video's end.
        record["tgt"] = _ordered(record.get("tgt"), record["duration"])
        record["q"] = _text(rng, 8, 25) + "".join(" <vid>" for _ in record.get("src", [])) + "?"
    _touch(media / "videos", {r["video"] for r in records})
    return records


def _ordered(value: Any, duration: float) -> Any:
    """Spans with 0 <= start <= end <= duration, at any nesting depth."""
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        return sorted(min(max(v, 0), duration) for v in value)
    return [_ordered(v, duration) for v in value] if isinstance(value, list) else value


FILES = {
    "stage1": ("llava_558k_with_webvid.json", "llamavid", stage1),
    "stage2": ("llava_v1_5_mix665k_with_video_chatgpt.json", "llamavid", stage2),
    "stage3": ("et_instruct_164k_vid.json", "et_instruct", stage3),
    "etbench": ("etbench_vid_v1.0.json", "etbench_vid", etbench),
}


# ------------------------------------------------------------------------------------------------ measuring
def measured(cmd: list[str]) -> dict[str, Any]:
    """Wall seconds and peak RSS of a child, pinned to one core where taskset exists."""
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "{}"
    out = json.loads(last) if last.startswith("{") else {}
    return {"wall_s": round(wall, 1), **out}


# Peak RSS from VmHWM after resetting it at the start: ru_maxrss would carry the parent's peak across fork and exec.
PEAK = r"""
from pathlib import Path
def peak_gib():
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
    return round(int(line.split()[1]) / 2**20, 2)
Path("/proc/self/clear_refs").write_text("5")
"""

VALIDATE = (
    PEAK
    + r"""
import json, sys, time
from etchat.data.validate import validate_file
start = time.perf_counter()
result = validate_file(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], max_text_chars=int(sys.argv[5]))
seconds = round(time.perf_counter() - start, 1)
peak = peak_gib()
print(json.dumps({"records": result.records, "invalid": result.n_invalid, "seconds": seconds,
                  "peak_rss_gib": peak}))
"""
)

STARTUP = (
    PEAK
    + r"""
import json, sys, time
import torch
from pathlib import Path
torch.set_num_threads(1)
from etchat.data.collate import modality_grouped_indices
from etchat.data.dataset import DataSettings, MediaSource, prepare_dataset
from etchat.data.records import read_records
from etchat.model.tokenizer import add_match_token, load_tokenizer
path, template, matching = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
media, tokenizer_dir = Path(sys.argv[4]), sys.argv[5]
tokenizer = load_tokenizer(tokenizer_dir)
if matching:
    add_match_token(tokenizer)
start = time.perf_counter()
records = read_records(path, check_keys=False)  # as `etchat train` reads the checked copy
read_s = time.perf_counter() - start
status = {r["video"]: "ok" for r in records if isinstance(r.get("video"), str)}
settings = DataSettings(template=template, use_matching=matching, max_video_len=350 if template == "phi3" else -1,
                        min_video_len=5 if matching else -1, max_num_words=200 if matching else -1)
prepared = prepare_dataset(records, settings, MediaSource(media / "videos", media / "images", status), tokenizer)
prepare_s = time.perf_counter() - start - read_s
dataset = prepared.dataset
order = modality_grouped_indices(dataset.modalities, dataset.lengths, 4, 8, torch.Generator().manual_seed(0))
total = time.perf_counter() - start
print(json.dumps({"records": len(records), "usable": len(prepared.dataset), "skipped": prepared.num_skipped,
                  "filtered": prepared.num_filtered, "read_s": round(read_s, 1), "prepare_s": round(prepare_s, 1),
                  "grouping_s": round(total - read_s - prepare_s, 1), "startup_s": round(total, 1),
                  "peak_rss_gib": peak_gib()}))
"""
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--files", default=",".join(FILES))
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--tokenizer", type=Path, default=None, help="a Phi-3 tokenizer directory (default: built)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    tokenizer = args.tokenizer
    if tokenizer is None:
        import importlib.util

        spec = importlib.util.spec_from_file_location("phi3_files", REPO / "scripts/tokenizer_reference/phi3_files.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        tokenizer = module.write_phi3_tokenizer(args.work / "Phi-3-mini-4k-instruct")
    results: dict[str, Any] = {"scale": args.scale}
    for name in args.files.split(","):
        filename, fmt, make = FILES[name]
        media = args.work / f"media_{name}"
        path = args.work / filename
        if not path.is_file():
            start = time.perf_counter()
            records = make(random.Random(0), args.scale, media)
            path.write_text(json.dumps(records))
            print(f"{name}: wrote {len(records)} records in {time.perf_counter() - start:.0f} s", flush=True)
            del records
        figures: dict[str, Any] = {"file_mb": round(path.stat().st_size / 2**20, 1)}
        figures["validate"] = measured([sys.executable, "-c", VALIDATE, str(path), fmt, str(media / "videos"),
                                        str(media / "images"), str(MAX_TEXT_CHARS)])  # fmt: skip
        if name.startswith("stage"):
            template = "plain" if name == "stage1" else "phi3"
            matching = "1" if name == "stage3" else "0"
            figures["startup"] = measured([sys.executable, "-c", STARTUP, str(path), template, matching, str(media),
                                           str(tokenizer)])  # fmt: skip
        results[name] = figures
        print(f"{name}: {json.dumps(figures)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
