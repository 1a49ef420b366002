# Publication figures from the survival tables.


rule km_figures:
    input:
        km=f"{R}/survival/km.csv",
        logrank=f"{R}/survival/logrank.csv",
        cox=f"{R}/survival/cox.csv",
    output:
        expand(
            f"{R}/figures/km_{{cohort}}_{{endpoint}}.{{ext}}",
            cohort=ANALYSED_COHORTS,
            endpoint=ENDPOINTS,
            ext=["pdf", "png"],
        ),
    log:
        f"{R}/logs/km_figures.log",
    params:
        survival=lambda wc, input: str(Path(input.km).parent),
        out=lambda wc, output: str(Path(output[0]).parent),
    conda:
        ENV
    shell:
        "tumorburden figures --survival-dir {params.survival} --out-dir {params.out} > {log} 2>&1"
