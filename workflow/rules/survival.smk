# Kaplan-Meier, log-rank, Cox (uni/multivariable, landmark, time-varying), cox.zph, discrimination
# and Table 1 per cohort and endpoint. burden.parquet gives the scan schedule (time-varying Cox,
# landmark eligibility) and the RECIST sum of diameters (C-index comparison).


rule survival:
    input:
        features=f"{R}/tables/features.parquet",
        burden=f"{R}/tables/burden.parquet",
        clinical=CLINICAL_TSV,
    output:
        km=report(f"{R}/survival/km.csv", caption="../report/table_km.rst", category="Tables", subcategory="Survival"),
        km_summary=f"{R}/survival/km_summary.csv",
        survival_at=f"{R}/survival/survival_at.csv",
        logrank=report(
            f"{R}/survival/logrank.csv", caption="../report/table_logrank.rst", category="Tables", subcategory="Survival"
        ),
        cox=report(f"{R}/survival/cox.csv", caption="../report/table_cox.rst", category="Tables", subcategory="Survival"),
        zph=f"{R}/survival/zph.csv",
        performance=report(
            f"{R}/survival/performance.csv",
            caption="../report/table_performance.rst",
            category="Tables",
            subcategory="Survival",
        ),
        td_auc=f"{R}/survival/td_auc.csv",
        c_index_difference=f"{R}/survival/c_index_difference.csv",
        table1=f"{R}/survival/table1.csv",
        exclusions=f"{R}/survival/exclusions.csv",
    log:
        f"{R}/logs/survival.log",
    params:
        settings=settings("survival"),
        out=lambda wc, output: str(Path(output.km).parent),
    conda:
        ENV
    shell:
        "tumorburden survival --features={input.features:q} --burden={input.burden:q} --clinical={input.clinical:q}"
        " --out-dir={params.out:q} --settings={params.settings:q} > {log:q} 2>&1"
