# Publication figures from the tables, in one style (workflow/tumorburden/figures/), each as
# vector PDF + 300 dpi PNG; the PNGs go into `snakemake --report` with a caption each.


include: "figures_common.smk"


rule km_figures:
    input:
        km=f"{R}/survival/km.csv",
        summary=f"{R}/survival/km_summary.csv",
        logrank=f"{R}/survival/logrank.csv",
        cox=f"{R}/survival/cox.csv",
        clinical=CLINICAL_TSV,
    output:
        km_outputs(),
    log:
        f"{R}/logs/figures/km.log",
    params:
        survival=lambda wc, input: str(Path(input.km).parent),
        out=lambda wc, output: str(Path(output[0]).parent),
        settings=figure_settings(),
    conda:
        ENV
    shell:
        "tumorburden figures km --survival-dir={params.survival:q} --clinical={input.clinical:q}"
        " --out-dir={params.out:q} --settings={params.settings:q} > {log:q} 2>&1"


rule forest_figures:
    input:
        cox=f"{R}/survival/cox.csv",
        clinical=CLINICAL_TSV,
    output:
        forest_outputs(),
    log:
        f"{R}/logs/figures/forest.log",
    params:
        survival=lambda wc, input: str(Path(input.cox).parent),
        out=lambda wc, output: str(Path(output[0]).parent),
        settings=figure_settings(),
    conda:
        ENV
    shell:
        "tumorburden figures forest --survival-dir={params.survival:q} --clinical={input.clinical:q}"
        " --out-dir={params.out:q} --settings={params.settings:q} > {log:q} 2>&1"


rule c_index_figure:
    input:
        performance=f"{R}/survival/performance.csv",
        difference=f"{R}/survival/c_index_difference.csv",
        clinical=CLINICAL_TSV,
    output:
        c_index_outputs(),
    log:
        f"{R}/logs/figures/c_index.log",
    params:
        survival=lambda wc, input: str(Path(input.performance).parent),
        out=lambda wc, output: str(Path(output[0]).parent),
        settings=figure_settings(),
    conda:
        ENV
    shell:
        "tumorburden figures c-index --survival-dir={params.survival:q} --clinical={input.clinical:q}"
        " --difference={input.difference:q}"
        " --out-dir={params.out:q} --settings={params.settings:q} > {log:q} 2>&1"


rule burden_figures:
    input:
        burden=f"{R}/tables/burden.parquet",
        features=f"{R}/tables/features.parquet",
        clinical=CLINICAL_TSV,
    output:
        burden_outputs(),
    log:
        f"{R}/logs/figures/burden.log",
    params:
        out=lambda wc, output: str(Path(output[0]).parent),
        settings=figure_settings(),
    conda:
        ENV
    shell:
        "tumorburden figures burden --burden={input.burden:q} --features={input.features:q}"
        " --clinical={input.clinical:q} --out-dir={params.out:q} --settings={params.settings:q} > {log:q} 2>&1"


rule td_auc_figures:
    input:
        td_auc=f"{R}/survival/td_auc.csv",
        clinical=CLINICAL_TSV,
    output:
        td_auc_outputs(),
    log:
        f"{R}/logs/figures/td_auc.log",
    params:
        out=lambda wc, output: str(Path(output[0]).parent),
        settings=figure_settings(),
    conda:
        ENV
    shell:
        "tumorburden figures td-auc --td-auc={input.td_auc:q} --clinical={input.clinical:q}"
        " --out-dir={params.out:q} --settings={params.settings:q} > {log:q} 2>&1"


# The QC contact sheet's pages follow the number of scans, so the rule needs the scan list.
if not DICOM_ROOT:

    rule qc_contact_sheet:
        input:
            segmented=patient_files(f"{R}/qc/segment/{{patient_id}}.tsv"),  # the scans' overlays, one job per patient
        output:
            contact_sheet_outputs(),
        log:
            f"{R}/logs/figures/contact_sheet.log",
        params:
            out=lambda wc, output: str(Path(output[0]).parent),
            settings=figure_settings(),
            overlays=scan_files(f"{R}/qc/overlays/{{scan_id}}.png"),
        conda:
            ENV
        shell:
            "tumorburden figures contact-sheet --overlays {params.overlays:q} --out-dir={params.out:q}"
            " --settings={params.settings:q} > {log:q} 2>&1"


rule prediction_figures:
    input:
        validation=f"{R}/survival/validation.csv",
        calibration=f"{R}/survival/calibration.csv",
        decision_curve=f"{R}/survival/decision_curve.csv",
        truth=f"{R}/survival/truth_comparison.csv" if STUDY.synthetic else [],
        clinical=CLINICAL_TSV,
    output:
        prediction_outputs(),
    log:
        f"{R}/logs/figures/prediction.log",
    params:
        survival=lambda wc, input: str(Path(input.validation).parent),
        out=lambda wc, output: str(Path(output[0]).parent),
        settings=figure_settings(),
    conda:
        ENV
    shell:
        "tumorburden figures prediction --survival-dir={params.survival:q} --clinical={input.clinical:q}"
        " --out-dir={params.out:q} --settings={params.settings:q} > {log:q} 2>&1"


rule dynamic_figures:
    input:
        predictions=f"{R}/survival/dynamic_predictions.parquet",
        burden=f"{R}/tables/burden.parquet",
        clinical=CLINICAL_TSV,
    output:
        dynamic_outputs(),
    log:
        f"{R}/logs/figures/dynamic.log",
    params:
        out=lambda wc, output: str(Path(output[0]).parent),
        patients=",".join(DYNAMIC_PATIENTS),
        endpoints=",".join(ENDPOINTS),
        settings=figure_settings(),
    conda:
        ENV
    shell:
        "tumorburden figures dynamic --predictions={input.predictions:q} --burden={input.burden:q}"
        " --clinical={input.clinical:q} --patients={params.patients:q} --endpoints={params.endpoints:q}"
        " --out-dir={params.out:q} --settings={params.settings:q} > {log:q} 2>&1"
