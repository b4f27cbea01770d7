# Inputs: the synthetic demo data set, and the check of every annotation file.


rule synth:
    output:
        synth_outputs(),
    params:
        settings=json.dumps(config["synth"]),
    threads: 2
    resources:
        **job_resources("synth"),
    log:
        "results/logs/synth.log",
    conda:
        "../envs/video.yaml"
    shell:
        "etchat synth --out data --settings {params.settings:q} --workers {threads} > {log} 2>&1"


rule validate_annotations:
    input:
        annotations=lambda wc: ANNOTATIONS[wc.name]["path"],
        synth=after_synth(),
    output:
        checked="results/annotations/{name}.{ext}",
        report="results/annotations/{name}.{ext}.report.json",
        dropped="results/annotations/{name}.{ext}.dropped.tsv",
    wildcard_constraints:
        ext="json|txt",
    params:
        format=lambda wc: ANNOTATIONS[wc.name]["format"],
        roots=annotation_roots,
        on_invalid=config["annotations"]["on_invalid"],
        max_text_chars=config["annotations"]["max_text_chars"],
    resources:
        **job_resources("validate_annotations"),
    log:
        "results/logs/validate/{name}.{ext}.log",
    conda:
        "../envs/video.yaml"
    shell:
        "etchat validate {input.annotations} --format {params.format} {params.roots}"
        " --on-invalid {params.on_invalid} --out {output.checked} --report {output.report}"
        " --dropped {output.dropped} --max-text-chars {params.max_text_chars} > {log} 2>&1"
