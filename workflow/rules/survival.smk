# Kaplan-Meier, log-rank, Cox (uni/multivariable, landmark, time-varying), cox.zph, discrimination
# and Table 1 per cohort and endpoint. burden.parquet gives the scan schedule (time-varying Cox,
# landmark eligibility) and the RECIST sum of diameters (C-index comparison).


rule survival:
    input:
        features=f"{R}/tables/features.parquet",
        burden=f"{R}/tables/burden.parquet",
        clinical=CLINICAL_TSV,
    output:
        km=f"{R}/survival/km.csv",
        km_summary=f"{R}/survival/km_summary.csv",
        survival_at=f"{R}/survival/survival_at.csv",
        logrank=f"{R}/survival/logrank.csv",
        cox=f"{R}/survival/cox.csv",
        zph=f"{R}/survival/zph.csv",
        performance=f"{R}/survival/performance.csv",
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
        "tumorburden survival --features {input.features} --burden {input.burden} --clinical {input.clinical:q}"
        " --out-dir {params.out} --settings {params.settings} > {log} 2>&1"
