# Video compression, sharded: list -> N shard jobs (each a worker pool) -> per-set summary -> table.


rule list_videos:
    input:
        after_synth(),
    output:
        scatter.compress("results/compress/{{vset}}/lists/{scatteritem}.txt"),
    params:
        root=lambda wc: video_set(wc)["videos"],
        exclude=exclude_option,
        listing=listing_params,
    resources:
        **job_resources("list_videos"),
    log:
        "results/logs/compress/{vset}/list.log",
    conda:
        "../envs/video.yaml"
    shell:
        "etchat list-videos --root {params.root} {params.exclude} --out {output} > {log} 2>&1"


rule compress_shard:
    input:
        "results/compress/{vset}/lists/{scatteritem}.txt",
    output:
        "results/compress/{vset}/shards/{scatteritem}.tsv",
    params:
        src=lambda wc: video_set(wc)["videos"],
        dst=dst_option,
        # Only what the command reads: editing on_error (a summary setting) must not mark every shard as changed.
        c={k: config["compress"][k] for k in ("fps", "size", "crf", "preset", "ffmpeg_threads", "duration_tolerance", "timeout")},
    threads: config["compress"]["workers"]
    resources:
        **job_resources("compress_shard"),
    log:
        "results/logs/compress/{vset}/{scatteritem}.log",
    conda:
        "../envs/video.yaml"
    shell:
        "etchat compress --list {input} --src {params.src} {params.dst} --manifest {output}"
        " --workers {threads} --fps {params.c[fps]} --size {params.c[size]} --crf {params.c[crf]}"
        " --preset {params.c[preset]} --ffmpeg-threads {params.c[ffmpeg_threads]}"
        " --duration-tolerance {params.c[duration_tolerance]} --timeout {params.c[timeout]} > {log} 2>&1"


rule compress_summary:
    input:
        gather.compress("results/compress/{{vset}}/shards/{scatteritem}.tsv"),
    output:
        manifest="results/compress/{vset}/manifest.tsv",
        failed="results/compress/{vset}/failed.tsv",
        summary="results/compress/{vset}/summary.json",
    params:
        on_error=config["compress"]["on_error"],
    resources:
        **job_resources("compress_summary"),
    log:
        "results/logs/compress/{vset}/summary.log",
    conda:
        "../envs/video.yaml"
    shell:
        "etchat compress-summary --name {wildcards.vset} --manifests {input} --out-dir $(dirname {output.summary})"
        " --on-error {params.on_error} > {log} 2>&1"


rule compress_table:
    input:
        expand("results/compress/{vset}/summary.json", vset=VIDEO_SETS),
    output:
        report(
            "results/compress/summary.tsv",
            caption="../report/compress.rst",
            category="Data",
            subcategory="Compression",
        ),
    resources:
        **job_resources("compress_table"),
    log:
        "results/logs/compress/table.log",
    conda:
        "../envs/video.yaml"
    shell:
        "etchat compress-summary --summaries {input} --table {output} > {log} 2>&1"
