# Lesions per scan (measurements, body composition, and the scan aligned to its patient's
# reference scan: one small transform file per scan), then tracks across each patient's scans.

rule measure:
    """Lesions and body composition of one scan, and the scan's rigid transform to its patient's
    reference scan (one job: both are light, and a job per scan per step is what makes an
    IMPACT-size DAG slow to build; see BENCHMARKS.md)."""
    input:
        image=f"{R}/scans/{{scan_id}}/image.nii.gz",
        segmentation=f"{R}/scans/{{scan_id}}/segmentation.nii.gz",
        reference=lambda wc: f"{R}/scans/{reference_of(wc)}/image.nii.gz",
    output:
        lesions=f"{R}/scans/{{scan_id}}/lesions.parquet",
        tissue=f"{R}/scans/{{scan_id}}/tissue.parquet",
        transform=f"{R}/scans/{{scan_id}}/to_reference.json",
    log:
        f"{R}/logs/measure/{{scan_id}}.log",
    benchmark:
        f"{R}/benchmarks/measure/{{scan_id}}.tsv",
    params:
        settings=settings("lesions"),
        patient=lambda wc: scan_row(wc.scan_id)["patient_id"],
        reference=reference_of,
    conda:
        ENV
    shell:
        "(tumorburden register --image={input.image:q} --reference-image={input.reference:q}"
        " --scan-id={wildcards.scan_id:q} --reference-scan-id={params.reference:q}"
        " --out={output.transform:q} --settings={params.settings:q}"
        " && tumorburden measure --image={input.image:q} --segmentation={input.segmentation:q}"
        " --patient-id={params.patient:q} --scan-id={wildcards.scan_id:q}"
        " --lesions-out={output.lesions:q} --tissue-out={output.tissue:q}"
        " --settings={params.settings:q}) > {log:q} 2>&1"


rule track:
    input:
        scans=SCANS_TSV,
        lesions=tracked_lesions,  # a reviewed scan's own lesions (review.smk)
        transforms=scan_files(f"{R}/scans/{{scan_id}}/to_reference.json"),
    output:
        table=f"{R}/tables/lesions.parquet",
        csv=f"{R}/tables/lesions.csv",
    log:
        f"{R}/logs/track.log",
    params:
        settings=settings("lesions"),
    conda:
        ENV
    shell:
        "tumorburden track --scans-table={input.scans:q} --lesions {input.lesions:q}"
        " --transforms {input.transforms:q} --out={output.table:q} --settings={params.settings:q} > {log:q} 2>&1"
