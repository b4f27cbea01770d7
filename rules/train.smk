# Training: the demo's tiny base model, then stages 1 -> 2 -> 3, each one job of HF Trainer + DeepSpeed ZeRO-2 under
# torchrun (one worker per GPU, or CPU workers through DeepSpeed's CPU accelerator), and the demo's grounding probe.


rule base_model:
    input:
        train_base_corpus(),
    output:
        directory("results/models/base"),
    params:
        model=json.dumps(MODEL, sort_keys=True),
    resources:
        **job_resources("base_model"),
    log:
        "results/logs/train/base.log",
    conda:
        "../envs/train.yaml"
    shell:
        "etchat build-base --model-settings {params.model:q} --annotations {input} --out {output} > {log} 2>&1"


rule train_stage:
    input:
        unpack(train_inputs),
    output:
        model=directory("results/models/stage{stage}"),
        metrics=report(
            "results/train/stage{stage}/metrics.tsv",
            caption="../report/train.rst",
            category="Training",
            labels={"stage": "{stage}", "table": "metrics"},
        ),
        skipped="results/train/stage{stage}/skipped.tsv",
        heldout="results/train/stage{stage}/heldout.json",
        summary="results/train/stage{stage}/summary.json",
    wildcard_constraints:
        stage="1|2|3",
    params:
        # Checkpoints, tensorboard and live logs: not declared, because Snakemake deletes a failed job's outputs
        # and a re-run must resume from them.
        work="results/train/stage{stage}/work",
        launcher=train_launcher(),
        options=train_options,
        train=train_settings,
        model=json.dumps(MODEL, sort_keys=True),
    threads: TRAIN["threads"] * train_nproc()
    # One task holding train.gpus GPUs on one node; torchrun starts the workers inside it. No `tasks`: the SLURM plugin
    # would turn it into --ntasks-per-gpu and run the whole command once per GPU.
    resources:
        **job_resources("train_stage"),
        gpu=TRAIN["gpus"],
        nodes=1,
        tasks_per_gpu=0,
    log:
        "results/logs/train/stage{stage}.log",
    conda:
        "../envs/train.yaml"
    shell:
        "{params.launcher} train --stage {wildcards.stage}"
        " --train-settings {params.train:q} --model-settings {params.model:q} --annotations {input.annotations}"
        " {params.options} --work-dir {params.work} --out {output.model} --metrics {output.metrics}"
        " --skipped {output.skipped} --heldout {output.heldout} --summary {output.summary} > {log} 2>&1"


rule grounding_probe:
    input:
        model="results/models/stage3",
        records="results/train/stage3/heldout.json",
    output:
        report(
            "results/train/stage3/grounding.json",
            caption="../report/grounding.rst",
            category="Training",
            labels={"stage": "3", "table": "grounding probe"},
        ),
    params:
        options=probe_options(),
        fps=TRAIN["fps"],
    resources:
        **job_resources("grounding_probe"),
    log:
        "results/logs/train/grounding_probe.log",
    conda:
        "../envs/train.yaml"
    shell:
        "etchat grounding-probe --model {input.model} --records {input.records} {params.options}"
        " --fps {params.fps} --out {output} > {log} 2>&1"
