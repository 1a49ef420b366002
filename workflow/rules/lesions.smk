# Lesions per scan (measurements, body composition, and the scan aligned to its patient's
# reference scan: one small transform file per scan), computed one patient per job, then
# tracks across each patient's scans.

rule measure:
    """Every scan of a patient in one process: its rigid transform to the patient's reference scan
    (the reference image read once), then its lesions and body composition. Each scan keeps its own
    files, scans/<scan_id>/lesions.parquet, tissue.parquet and to_reference.json; the job's tracked
    output is the patient's record (one row per scan)."""
    input:
        ingested=f"{R}/qc/ingest/{{patient_id}}.tsv",
        segmented=f"{R}/qc/segment/{{patient_id}}.tsv",
    output:
        record=f"{R}/qc/measure/{{patient_id}}.tsv",
    log:
        f"{R}/logs/measure/{{patient_id}}.log",
    benchmark:
        f"{R}/benchmarks/measure/{{patient_id}}.tsv"
    params:
        settings=settings("lesions"),
        scans=scans_of,
        images=lambda wc: patient_scan_files(wc, f"{R}/scans/{{scan_id}}/image.nii.gz"),
        segmentations=lambda wc: patient_scan_files(wc, f"{R}/scans/{{scan_id}}/segmentation.nii.gz"),
        lesions=lambda wc: patient_scan_files(wc, f"{R}/scans/{{scan_id}}/lesions.parquet"),
        tissue=lambda wc: patient_scan_files(wc, f"{R}/scans/{{scan_id}}/tissue.parquet"),
        transforms=lambda wc: patient_scan_files(wc, f"{R}/scans/{{scan_id}}/to_reference.json"),
        reference=lambda wc: reference_scan_of_patient()[wc.patient_id],
        reference_image=lambda wc: f"{R}/scans/{reference_scan_of_patient()[wc.patient_id]}/image.nii.gz",
    conda:
        ENV
    shell:
        "tumorburden measure --patient-id={wildcards.patient_id:q} --record={output.record:q}"
        " --scan-id {params.scans:q} --image {params.images:q} --segmentation {params.segmentations:q}"
        " --lesions-out {params.lesions:q} --tissue-out {params.tissue:q} --transform-out {params.transforms:q}"
        " --reference-scan-id={params.reference:q} --reference-image={params.reference_image:q}"
        " --settings={params.settings:q} > {log:q} 2>&1"


rule track:
    input:
        scans=SCANS_TSV,
        measured=patient_files(f"{R}/qc/measure/{{patient_id}}.tsv"),  # every scan's lesions and transform
        reviewed=reviewed_lesions,  # a reviewed scan's own lesions (review.smk), read in place of the model's
    output:
        table=f"{R}/tables/lesions.parquet",
        csv=f"{R}/tables/lesions.csv",
    log:
        f"{R}/logs/track.log",
    params:
        settings=settings("lesions"),
        lesions=tracked_lesions,
        transforms=scan_files(f"{R}/scans/{{scan_id}}/to_reference.json"),
    conda:
        ENV
    shell:
        "tumorburden track --scans-table={input.scans:q} --lesions {params.lesions:q}"
        " --transforms {params.transforms:q} --out={output.table:q} --settings={params.settings:q} > {log:q} 2>&1"
