# etchat-pipeline: E.T. Chat (E.T. Bench, NeurIPS 2024) end to end.
# `snakemake --cores all` runs the demo preset in config.yaml; see README.md for real runs.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


# Checks the config first, then defines the helpers the rule files use.
include: "rules/common.smk"


wildcard_constraints:
    vset="|".join(VIDEO_SETS),
    name="|".join(ANNOTATIONS),
    benchmark="|".join(INFER_BENCHMARKS),


# Compression shard jobs per video set; `--set-scatter compress=N` overrides the config value.
scattergather:
    compress=config["compress"]["shards"],


report: "report/workflow.rst"


include: "rules/data.smk"
include: "rules/compress.smk"
include: "rules/train.smk"
include: "rules/infer.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
