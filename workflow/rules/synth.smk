# The synthetic trial: tables and truth, then every scan as a DICOM CT series.
# Only used when the config names no study tables.


rule synth_trial:
    output:
        clinical=f"{R}/synthetic/clinical.tsv",
        scans=f"{R}/synthetic/scans.tsv",
        patients=f"{R}/truth/patients.parquet",
        lesions=f"{R}/truth/lesions.parquet",
        scans_truth=f"{R}/truth/scans.parquet",
        model=f"{R}/truth/model.json",
    log:
        f"{R}/logs/synth_trial.log",
    params:
        settings=settings("synthetic"),
        out=lambda wc, output: str(Path(output.model).parents[1]),
    conda:
        ENV
    shell:
        "tumorburden synth-trial --settings={params.settings:q} --out-dir={params.out:q} > {log:q} 2>&1"


rule synth_render:
    """Every scan of a patient (one job per patient: at 600 x 6 scans a job per scan was a quarter of the DAG)."""
    input:
        scans=f"{R}/synthetic/scans.tsv",
    output:
        dicom=directory(f"{R}/synthetic/dicom/{{patient_id}}"),
        truth=directory(f"{R}/truth/scans/{{patient_id}}"),
    log:
        f"{R}/logs/synth_render/{{patient_id}}.log",
    benchmark:
        f"{R}/benchmarks/synth_render/{{patient_id}}.tsv",
    params:
        settings=settings("synthetic"),
    conda:
        ENV
    shell:
        "tumorburden synth-render --settings={params.settings:q} --patient-id={wildcards.patient_id:q}"
        " --dicom-dir={output.dicom:q} --truth-dir={output.truth:q} > {log:q} 2>&1"


rule score_against_truth:
    input:
        # a plain path, not rules.synth_trial.output: a rule reference makes Snakemake hash the
        # 3,600-file input lists once per file (quadratic: 11 of 120 profiled seconds at 600 x 6)
        truth=f"{R}/truth/model.json",
        scans=truth_folders(),
        segmented=patient_files(f"{R}/qc/segment/{{patient_id}}.tsv"),  # every scan's segmentation.nii.gz
        lesions=f"{R}/tables/lesions.parquet",
        burden=f"{R}/tables/burden.parquet",
        features=f"{R}/tables/features.parquet",
        cox=f"{R}/survival/cox.csv",
    output:
        report(f"{R}/truth/scores.csv", caption="../report/table_scores.rst", category="Quality control"),
    log:
        f"{R}/logs/score_against_truth.log",
    params:
        truth=lambda wc, input: str(Path(input.truth).parent),
        results=lambda wc, input: str(Path(input.burden).parents[1]),
    conda:
        ENV
    shell:
        "tumorburden score --truth-dir={params.truth:q} --results-dir={params.results:q} --out={output:q} > {log:q} 2>&1"
