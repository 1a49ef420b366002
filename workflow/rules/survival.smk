# Kaplan-Meier, log-rank, Cox and discrimination per cohort and endpoint.


rule survival:
    input:
        features=f"{R}/tables/features.parquet",
        clinical=CLINICAL_TSV,
    output:
        km=report(f"{R}/survival/km.csv", caption="../report/table_km.rst", category="Tables", subcategory="Survival"),
        logrank=report(
            f"{R}/survival/logrank.csv", caption="../report/table_logrank.rst", category="Tables", subcategory="Survival"
        ),
        cox=report(f"{R}/survival/cox.csv", caption="../report/table_cox.rst", category="Tables", subcategory="Survival"),
        performance=report(
            f"{R}/survival/performance.csv",
            caption="../report/table_performance.rst",
            category="Tables",
            subcategory="Survival",
        ),
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
