# Helpers shared by the rule files (config checks, paths and the `etchat` command line).
import json
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from etchat.config import stage_section, validate_config
from etchat.data.synth import layout as synth_layout
from etchat.errors import ConfigError
from etchat.video.listing import listing_fingerprint

try:
    validate_config(config)
except ConfigError as err:
    raise WorkflowError(f"{err}\n(config.yaml, and any --configfile or --config given)") from None

# Inputs live under data/ (the layout of the E.T. Chat README), outputs under results/.
SYNTH = config["synth"]["enabled"]
SYNTH_MANIFEST = f"data/{synth_layout.MANIFEST}"
# A preset leaves a set or an annotation file out by setting it to null.
VIDEO_SETS = [name for name, entry in config["video_sets"].items() if entry]
ANNOTATIONS = {name: entry for name, entry in config["annotations"]["files"].items() if entry}

# Every rule runs one `etchat` command, a shell function defined here. With conda environments the
# env's python runs it and finds the package through PYTHONPATH; otherwise it is the interpreter
# running Snakemake (the venv), so an un-activated venv works too.
if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method:
    _PYTHON = "python"
else:
    _PYTHON = sys.executable
# (Braces are doubled twice: once for this f-string, once for Snakemake's own formatting.)
shell.prefix(
    f"set -euo pipefail; export PYTHONPATH={workflow.basedir}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    f'etchat() {{{{ {_PYTHON} -m etchat "$@"; }}}}; '
)


def job_resources(rule):
    """What a rule's jobs ask a cluster for, from the `resources:` config section: `runtime` in minutes, times the
    attempt (a job retried after its time limit gets more time), and `mem_mb`. GPUs and CPUs are the rule's own
    settings (train.gpus, infer.gpu, threads). Used as `resources: **job_resources("<rule>")`."""
    entry = config["resources"][rule]
    minutes = entry["runtime"]
    return {"runtime": lambda wildcards, attempt: minutes * attempt, "mem_mb": entry["mem_mb"]}


def synth_outputs():
    """What `etchat synth` declares: its manifest (written last) and every annotation file."""
    return [SYNTH_MANIFEST] + [f"data/{f}" for f in synth_layout.annotation_files()]


def after_synth():
    """Inputs that make a rule wait for the synthetic data set, when it is generated."""
    return [SYNTH_MANIFEST] if SYNTH else []


def video_set(wildcards):
    return config["video_sets"][wildcards.vset]


def listing_params(wildcards):
    """A digest of the set's file names, so adding or removing real videos re-lists the set.

    Synthetic sets are described by the synth manifest instead (they do not exist at DAG time).
    """
    return "synth" if SYNTH else listing_fingerprint(video_set(wildcards)["videos"], compressed_inside(wildcards))


def compressed_inside(wildcards):
    """The set's compressed tree when it lies inside its input tree (left out of listings), else None."""
    vs = video_set(wildcards)
    inside = os.path.abspath(vs["compressed"]).startswith(os.path.abspath(vs["videos"]) + os.sep)
    return vs["compressed"] if inside else None


def exclude_option(wildcards):
    inside = compressed_inside(wildcards)
    return f"--exclude {inside}" if inside else ""


def dst_option(wildcards):
    """Where a set is compressed to; nothing for a set that is already compressed (only checked)."""
    vs = video_set(wildcards)
    return f"--dst {vs['compressed']}" if vs["compress"] else ""


def checked_annotation(name):
    ext = "txt" if ANNOTATIONS[name]["format"] == "charades_sta" else "json"
    return f"results/annotations/{name}.{ext}"


def annotation_roots(wildcards):
    entry = ANNOTATIONS[wildcards.name]
    roots = f"--video-root {entry['video_root']}"
    if "image_root" in entry:
        roots += f" --image-root {entry['image_root']}"
    return roots


def final_outputs():
    outputs = [checked_annotation(name) for name in ANNOTATIONS]
    if VIDEO_SETS:
        outputs += expand("results/compress/{vset}/summary.json", vset=VIDEO_SETS)
        outputs.append("results/compress/summary.tsv")
    outputs += train_outputs()
    outputs += infer_outputs()
    outputs += evaluate_outputs()
    outputs += report_outputs()
    return outputs


# ---------------------------------------------------------------------------------------------- training
TRAIN = config["train"]
MODEL = config["model"]
TRAIN_STAGES = TRAIN["stages"]


def model_for_inference():
    """The checkpoint directory inference evaluates: the stage 3 trained here when `train.stages` contains 3
    (demo, paper, from-stage2), else `infer.checkpoint` (the released preset, `train.stages: []`)."""
    return "results/models/stage3" if 3 in TRAIN_STAGES else config["infer"]["checkpoint"]


def train_nproc():
    """Workers of a training job: one per GPU, or `train.cpu_processes` on CPU."""
    return TRAIN["gpus"] if TRAIN["gpus"] > 0 else TRAIN["cpu_processes"]


def train_launcher():
    """torchrun on one node with a free rendezvous port, running `etchat` in each worker (snakemake.md §2.4)."""
    return f"{_PYTHON} -m torch.distributed.run --standalone --nnodes 1 --nproc_per_node {train_nproc()} -m etchat"


def train_annotation(stage):
    name = f"stage{stage}"
    if name not in ANNOTATIONS:
        raise WorkflowError(f"train.stages has {stage} but annotations.files.{name} is null; configure the file")
    return name


def train_video_set(stage):
    """The video set whose `videos` tree is the stage's annotation video_root (its videos are read compressed)."""
    root = os.path.normpath(ANNOTATIONS[train_annotation(stage)]["video_root"])
    for name in VIDEO_SETS:
        if os.path.normpath(config["video_sets"][name]["videos"]) == root:
            return name
    return None


def train_start(stage):
    """The checkpoint directory stage `stage` starts from (None: stage 1 from the original base weights)."""
    stage = int(stage)
    if stage != TRAIN_STAGES[0]:
        return f"results/models/stage{stage - 1}"
    if stage == 1:
        return "results/models/base" if MODEL["init"] == "demo" else None
    if not TRAIN["start_checkpoint"]:
        raise WorkflowError(
            f"train.stages starts at {stage}: set train.start_checkpoint to the stage-{stage - 1} checkpoint directory"
        )
    return TRAIN["start_checkpoint"]


def train_inputs(wildcards):
    stage = int(wildcards.stage)
    inputs = {"annotations": checked_annotation(train_annotation(stage))}
    vset = train_video_set(stage)
    if vset:
        inputs["manifest"] = f"results/compress/{vset}/manifest.tsv"
    start = train_start(stage)
    if start:
        inputs["init"] = start
    else:
        inputs.update(llm=MODEL["llm_dir"], eva=MODEL["eva_vit"], qformer=MODEL["qformer"])
    return inputs


def train_video_options(stage):
    """Where a stage reads its videos: the compressed tree (or the originals of a set that is only checked), with
    the compression manifest that says which videos failed; the annotation's video_root when no set matches."""
    vset = train_video_set(stage)
    if not vset:
        return f"--video-root {ANNOTATIONS[train_annotation(stage)]['video_root']}"
    entry = config["video_sets"][vset]
    root = entry["compressed"] if entry["compress"] else entry["videos"]
    return f"--manifest results/compress/{vset}/manifest.tsv --video-root {root}"


def train_options(wildcards):
    """The media and the start checkpoint of a training stage, as `etchat train` options."""
    stage = int(wildcards.stage)
    options = train_video_options(stage)
    entry = ANNOTATIONS[train_annotation(stage)]
    if "image_root" in entry:
        options += f" --image-root {entry['image_root']}"
    start = train_start(stage)
    return options + (f" --init {start}" if start else "")


def probe_options():
    return train_video_options(3) if grounding_probe_enabled() else ""


def train_settings(wildcards):
    """The train: section with only this stage's hyper-parameters (editing stage 3's does not re-run stage 1)."""
    return json.dumps(stage_section(TRAIN, int(wildcards.stage)), sort_keys=True)


def train_base_corpus():
    return [checked_annotation(f"stage{s}") for s in (1, 2, 3) if f"stage{s}" in ANNOTATIONS]


def grounding_probe_enabled():
    return 3 in TRAIN_STAGES and (TRAIN["stage3"] or {}).get("holdout_fraction", 0) > 0


def train_outputs():
    outputs = expand("results/train/stage{stage}/summary.json", stage=TRAIN_STAGES)
    if grounding_probe_enabled():
        outputs.append("results/train/stage3/grounding.json")
    return outputs


# ---------------------------------------------------------------------------------------------- inference
INFER = config["infer"]
# benchmark -> (its annotation file in annotations.files, its video set in video_sets)
INFER_BENCHMARKS = {"etbench": ("etbench_vid", "etbench"), "charades": ("charades", "charades")}


def infer_benchmarks():
    """The benchmarks whose annotation file is configured (a preset leaves one out by setting it to null)."""
    return [name for name, (annotation, _) in INFER_BENCHMARKS.items() if annotation in ANNOTATIONS]


def infer_annotation(wildcards):
    """The checked annotation file a benchmark's inference reads."""
    return checked_annotation(INFER_BENCHMARKS[wildcards.benchmark][0])


def infer_video_root(benchmark):
    annotation, vset = INFER_BENCHMARKS[benchmark]
    if INFER[benchmark]["videos"] == "raw":
        return ANNOTATIONS[annotation]["video_root"]
    entry = config["video_sets"].get(vset)
    if not entry:
        raise WorkflowError(
            f"infer.{benchmark}.videos is compressed but video_sets.{vset} is null; configure the set or use raw"
        )
    return entry["compressed"] if entry["compress"] else entry["videos"]


def infer_videos_ready(wildcards):
    """Compressed videos: wait for their compression (its manifest names the videos that failed)."""
    _, vset = INFER_BENCHMARKS[wildcards.benchmark]
    if INFER[wildcards.benchmark]["videos"] == "compressed":
        return [f"results/compress/{vset}/manifest.tsv"]
    return after_synth()


def infer_manifest_option(wildcards):
    _, vset = INFER_BENCHMARKS[wildcards.benchmark]
    if INFER[wildcards.benchmark]["videos"] == "compressed":
        return f"--manifest results/compress/{vset}/manifest.tsv"
    return ""


def infer_settings_json():
    """What changes answers or their speed (the shard jobs re-run when it changes; finished answers are reused)."""
    from etchat.infer.settings import InferSettings

    names = InferSettings.__dataclass_fields__
    return json.dumps({key: value for key, value in INFER.items() if key in names}, sort_keys=True)


def infer_shard_summaries(wildcards):
    return getattr(gather, f"infer_{wildcards.benchmark}")(
        f"results/infer/{wildcards.benchmark}/shards/{{scatteritem}}.json"
    )


def infer_outputs():
    return [f"results/infer/{name}/predictions.json" for name in infer_benchmarks()]


# ---------------------------------------------------------------------------------------------- evaluation
EVALUATE = config["evaluate"]


def score_options():
    """`etchat score` options from the evaluate section (its defaults are the official behaviour)."""
    options = [f"--mc-form {EVALUATE['mc_form']}", f"--seed {EVALUATE['seed']}"]
    if EVALUATE["strict"]:
        options.append("--strict")
    if EVALUATE["sentence_model"]:
        options.append(f"--sentence-model {EVALUATE['sentence_model']}")
    return " ".join(options)


def evaluate_outputs():
    benchmarks = infer_benchmarks()
    outputs = ["results/evaluate/etbench/metrics.tsv"] if "etbench" in benchmarks else []
    if "etbench" in benchmarks and EVALUATE["subset"]:
        outputs.append("results/evaluate/etbench_subset/metrics.tsv")
    if "charades" in benchmarks:
        outputs.append("results/evaluate/charades/metrics.json")
    return outputs


def report_inputs(wildcards):
    """Everything the report shows; only the E.T. Bench metrics are required."""
    inputs = {"metrics": "results/evaluate/etbench/metrics.tsv"}
    if EVALUATE["subset"]:
        inputs["subset"] = "results/evaluate/etbench_subset/metrics.tsv"
    if "charades" in infer_benchmarks():
        inputs["charades"] = "results/evaluate/charades/metrics.json"
    for stage in TRAIN_STAGES:
        inputs[f"train_stage{stage}"] = f"results/train/stage{stage}/metrics.tsv"
    if grounding_probe_enabled():
        inputs["grounding"] = "results/train/stage3/grounding.json"
    if VIDEO_SETS:
        inputs["compress"] = "results/compress/summary.tsv"
    for name in infer_benchmarks():
        inputs[f"infer_{name}"] = f"results/infer/{name}/summary.json"
    return inputs


def report_options(wildcards, input):
    options = [f"--metrics {input.metrics}"]
    for key, path in input.items():
        if key == "subset":
            options.append(f"--subset-metrics {path}")
        elif key in ("charades", "compress", "grounding"):
            options.append(f"--{key} {path}")
        elif key.startswith("train_"):
            options.append(f"--train-log {key[len('train_'):]}={path}")
        elif key.startswith("infer_"):
            options.append(f"--infer {key[len('infer_'):]}={path}")
    return " ".join(options)


def report_charts():
    """Charts whose number depends on the run: one loss chart per trained stage, compression when videos were."""
    # (No line may start with `report(`: Snakemake would read it as its `report:` directive.)
    charts = []
    for stage in TRAIN_STAGES:
        path = f"results/report/training_stage{stage}.svg"
        charts.append(report(path, caption="../report/train.rst", category="Training", labels={"stage": str(stage)}))
    if VIDEO_SETS:
        charts.append(report("results/report/compression.svg", caption="../report/compress.rst", category="Data"))
    return charts


def report_outputs():
    return ["results/report/index.html"] if "etbench" in infer_benchmarks() else []
