# Inference: E.T. Bench and Charades-STA, each split into shards (one job, one model, one GPU per shard), each
# shard appending to its resumable answer log, then merged into predictions.json for the scorers.


# Shard jobs per benchmark; `--set-scatter infer_etbench=N` overrides the config value. The split is strided (sample
# i goes to shard i mod N); with another N the new shards take over the finished answers of the old logs.
scattergather:
    infer_etbench=config["infer"]["etbench"]["shards"],
    infer_charades=config["infer"]["charades"]["shards"],


rule infer_shard:
    input:
        checkpoint=model_for_inference(),
        annotations=infer_annotation,
        videos=infer_videos_ready,
    output:
        "results/infer/{benchmark}/shards/{scatteritem}.json",
    params:
        # The answer log is not a declared output: Snakemake deletes a failed job's outputs, the log must survive.
        answers="results/infer/{benchmark}/shards/{scatteritem}.jsonl",
        root=lambda wc: infer_video_root(wc.benchmark),
        manifest=infer_manifest_option,
        settings=infer_settings_json(),
    threads: config["infer"]["threads"]
    resources:
        **job_resources("infer_shard"),
        gpu=config["infer"]["gpu"],
        nodes=1,
    log:
        "results/logs/infer/{benchmark}/{scatteritem}.log",
    conda:
        "../envs/train.yaml"
    shell:
        "etchat infer-shard --benchmark {wildcards.benchmark} --annotations {input.annotations}"
        " --video-root {params.root} --checkpoint {input.checkpoint} --shard {wildcards.scatteritem}"
        " --log {params.answers} --summary {output} --settings {params.settings:q} --threads {threads}"
        " {params.manifest} > {log} 2>&1"


rule infer_merge:
    input:
        shards=infer_shard_summaries,
        annotations=infer_annotation,
    output:
        predictions="results/infer/{benchmark}/predictions.json",
        summary="results/infer/{benchmark}/summary.json",
    params:
        root=lambda wc: infer_video_root(wc.benchmark),
        on_error=config["infer"]["on_error"],
        limit=f"--limit {config['infer']['limit']}" if config["infer"]["limit"] else "",
    resources:
        **job_resources("infer_merge"),
    log:
        "results/logs/infer/{benchmark}/merge.log",
    conda:
        "../envs/train.yaml"
    shell:
        "etchat infer-merge --benchmark {wildcards.benchmark} --annotations {input.annotations}"
        " --video-root {params.root} --shards {input.shards} --out {output.predictions}"
        " --summary {output.summary} --on-error {params.on_error} {params.limit} > {log} 2>&1"
