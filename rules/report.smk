# The report: results/report/index.html (one self-contained page) and its charts and tables, which
# `snakemake --report results/report.html` also shows, by category.


rule report:
    input:
        unpack(report_inputs),
    output:
        index=report("results/report/index.html", caption="../report/report.rst", category="Report"),
        tasks=report("results/report/tasks.svg", caption="../report/tasks.rst", category="E.T. Bench"),
        overall=report("results/report/overall.html", caption="../report/overall.rst", category="E.T. Bench"),
        capabilities=report(
            "results/report/capabilities.html", caption="../report/capabilities.rst", category="E.T. Bench"
        ),
        charts=report_charts(),
    params:
        options=report_options,
        config=json.dumps(config),
    resources:
        **job_resources("report"),
    log:
        "results/logs/report.log",
    conda:
        "../envs/eval.yaml"
    shell:
        "etchat report {params.options} --config-json {params.config:q} --out-dir $(dirname {output.index})"
        " > {log} 2>&1"
