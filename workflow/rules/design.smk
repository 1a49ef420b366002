# Study design by simulation (not part of `all`: `snakemake design`). The segmentation error comes
# from design.scores, else this run's truth/scores.csv when it exists, else design.error.


rule design:
    input:
        scores=design_scores(),
    output:
        power=report(f"{R}/design/power.csv", caption="../report/table_design.rst", category="Study design"),
        trials=f"{R}/design/trials.parquet",
        figure=report(f"{R}/design/power_curve.pdf", caption="../report/figure_design.rst", category="Study design"),
        png=f"{R}/design/power_curve.png",
    log:
        f"{R}/logs/design.log",
    # design.workers when set, else the cores Snakemake was given (a local run's --cores; under the SLURM
    # profile that resolves to 1: set design.workers there). A function: evaluated only when the rule
    # runs, so a cluster run of the study, which gives no --cores, can read this file
    threads: lambda wildcards: (config.get("design") or {}).get("workers") or workflow.resource_settings.cores or 4
    params:
        settings=lambda wc: json.dumps({k: config.get(k) or {} for k in ("synthetic", "design", "figures")},
                                       sort_keys=True),
        out=lambda wc, output: str(Path(output.power).parent),
    conda:
        ENV
    shell:
        "tumorburden design --settings={params.settings:q} --scores={input.scores:q} --workers={threads:q}"
        " --out-dir={params.out:q} > {log:q} 2>&1"
