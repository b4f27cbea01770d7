# Helpers shared by the rule files (config checks, paths and the `etchat` command line).
import json
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from etchat.config import validate_config
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
    return "synth" if SYNTH else listing_fingerprint(video_set(wildcards)["videos"])


def exclude_option(wildcards):
    """Leave the compressed tree out of the listing when it lies inside the input tree."""
    vs = video_set(wildcards)
    inside = os.path.abspath(vs["compressed"]).startswith(os.path.abspath(vs["videos"]) + os.sep)
    return f"--exclude {vs['compressed']}" if inside else ""


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
    outputs += infer_outputs()
    return outputs


# ---------------------------------------------------------------------------------------------- inference
INFER = config["infer"]
# benchmark -> (its annotation file in annotations.files, its video set in video_sets)
INFER_BENCHMARKS = {"etbench": ("etbench_vid", "etbench"), "charades": ("charades", "charades")}


def infer_benchmarks():
    """The benchmarks whose annotation file is configured (a preset leaves one out by setting it to null)."""
    return [name for name, (annotation, _) in INFER_BENCHMARKS.items() if annotation in ANNOTATIONS]


def infer_checkpoint():
    """The checkpoint to evaluate: the training rules' choice (model_for_inference) or infer.checkpoint."""
    helper = globals().get("model_for_inference")
    return helper() if helper else INFER["checkpoint"]


def infer_enabled():
    """Inference joins the DAG when a rule makes its model or the model exists. In the demo that is the trained
    stage 3; a real run always infers (a missing checkpoint is then a missing input, named by Snakemake)."""
    return "model_for_inference" in globals() or not SYNTH or os.path.exists(INFER["checkpoint"])


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
    if not infer_enabled():
        return []
    return [f"results/infer/{name}/predictions.json" for name in infer_benchmarks()]
