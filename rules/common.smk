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
    return outputs
