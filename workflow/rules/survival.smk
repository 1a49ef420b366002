# Kaplan-Meier, log-rank, Cox and discrimination per cohort and endpoint.


rule survival:
    input:
        features=f"{R}/tables/features.parquet",
        clinical=CLINICAL_TSV,
    output:
        km=f"{R}/survival/km.csv",
        logrank=f"{R}/survival/logrank.csv",
        cox=f"{R}/survival/cox.csv",
        performance=f"{R}/survival/performance.csv",
    log:
        f"{R}/logs/survival.log",
    params:
        settings=settings("survival"),
        out=lambda wc, output: str(Path(output.km).parent),
    conda:
        ENV
    shell:
        "tumorburden survival --features {input.features} --clinical {input.clinical:q}"
        " --out-dir {params.out} --settings {params.settings} > {log} 2>&1"
