# Scoring: E.T. Bench (the official metrics, our own code) and Charades-STA, from the merged predictions.


rule score_etbench:
    input:
        predictions="results/infer/etbench/predictions.json",
        reference=lambda wc: checked_annotation(INFER_BENCHMARKS["etbench"][0]),
    output:
        tsv="results/evaluate/etbench/metrics.tsv",
        json="results/evaluate/etbench/metrics.json",
        text="results/evaluate/etbench/metrics.log",
    params:
        options=score_options(),
        subset="",
    resources:
        **job_resources("score_etbench"),
    log:
        "results/logs/evaluate/etbench.log",
    conda:
        "../envs/eval.yaml"
    shell:
        "etchat score {input.predictions} --reference {input.reference} --out-dir $(dirname {output.tsv})"
        " {params.subset} {params.options} > {log} 2>&1"


# The same scoring restricted to the samples of evaluate.subset (the paper's 470-sample subset).
use rule score_etbench as score_etbench_subset with:
    output:
        tsv="results/evaluate/etbench_subset/metrics.tsv",
        json="results/evaluate/etbench_subset/metrics.json",
        text="results/evaluate/etbench_subset/metrics.log",
    params:
        options=score_options(),
        subset=f"--subset {config['evaluate']['subset']}",
    resources:
        **job_resources("score_etbench_subset"),
    log:
        "results/logs/evaluate/etbench_subset.log",


rule score_charades:
    input:
        "results/infer/charades/predictions.json",
    output:
        json="results/evaluate/charades/metrics.json",
        text="results/evaluate/charades/metrics.log",
    resources:
        **job_resources("score_charades"),
    log:
        "results/logs/evaluate/charades.log",
    conda:
        "../envs/eval.yaml"
    shell:
        "etchat score-charades {input} --out-dir $(dirname {output.json}) > {log} 2>&1"
