# Scoring: E.T. Bench (the official metrics, our own code) and Charades-STA, from the merged predictions.


rule score_etbench:
    input:
        "results/infer/etbench/predictions.json",
    output:
        tsv="results/evaluate/etbench/metrics.tsv",
        json="results/evaluate/etbench/metrics.json",
        text="results/evaluate/etbench/metrics.log",
    params:
        options=score_options(),
    log:
        "results/logs/evaluate/etbench.log",
    conda:
        "../envs/eval.yaml"
    shell:
        "etchat score {input} --out-dir $(dirname {output.tsv}) {params.options} > {log} 2>&1"


rule score_etbench_subset:
    input:
        "results/infer/etbench/predictions.json",
    output:
        tsv="results/evaluate/etbench_subset/metrics.tsv",
        json="results/evaluate/etbench_subset/metrics.json",
        text="results/evaluate/etbench_subset/metrics.log",
    params:
        options=score_options(),
        subset=config["evaluate"]["subset"],
    log:
        "results/logs/evaluate/etbench_subset.log",
    conda:
        "../envs/eval.yaml"
    shell:
        "etchat score {input} --out-dir $(dirname {output.tsv}) --subset {params.subset} {params.options} > {log} 2>&1"


rule score_charades:
    input:
        "results/infer/charades/predictions.json",
    output:
        json="results/evaluate/charades/metrics.json",
        text="results/evaluate/charades/metrics.log",
    log:
        "results/logs/evaluate/charades.log",
    conda:
        "../envs/eval.yaml"
    shell:
        "etchat score-charades {input} --out-dir $(dirname {output.json}) > {log} 2>&1"
