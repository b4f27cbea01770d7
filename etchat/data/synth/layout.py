"""Where the synthetic data set puts its annotation files (the layout of a real run), without heavy imports.

The Snakefile reads this to declare what `etchat synth` produces.
"""

from __future__ import annotations

from etchat.etbench import TASKS

MANIFEST = "synth_manifest.json"

# Sources per E.T. Bench task, as many as the real benchmark has (spec: etbench_metrics.md §2).
ETBENCH_SOURCES: dict[str, tuple[str, ...]] = {
    "rar": ("synth",),
    "eca": ("synth",),
    "rvq": ("synth",),
    "tvg": ("synth", "synth_b"),
    "epm": ("synth",),
    "tal": ("synth", "synth_b", "synth_c"),
    "evs": ("synth", "synth_b"),
    "vhd": ("synth", "synth_b", "synth_c"),
    "dvc": ("synth",),
    "slc": ("synth", "synth_b"),
    "tem": ("synth", "synth_b"),
    "gvq": ("synth",),
}

STAGE1 = "llamavid/llava_558k_with_webvid.json"
STAGE2 = "llamavid/llava_v1_5_mix665k_with_video_chatgpt.json"
STAGE3 = {flavour: f"et_instruct_164k/et_instruct_164k_{flavour}.json" for flavour in ("vid", "txt")}
ETBENCH = {flavour: f"etbench/annotations/etbench_{flavour}_v1.0.json" for flavour in ("vid", "txt")}
CHARADES = "charades/charades_sta_test.txt"


def etbench_task_file(flavour: str, task: str, source: str) -> str:
    return f"etbench/annotations/{flavour}/{task}_{source}.json"


def annotation_files() -> list[str]:
    """Every annotation file `etchat synth` writes, relative to the data root."""
    files = [STAGE1, STAGE2, *STAGE3.values(), *ETBENCH.values(), CHARADES]
    files += [etbench_task_file(f, t, s) for f in ("vid", "txt") for t in TASKS for s in ETBENCH_SOURCES[t]]
    return files
