# Lesions per scan (measurements, body composition), each scan aligned to its patient's
# reference scan (one small transform file per scan), then tracks across each patient's scans.

rule measure:
    input:
        image=f"{R}/scans/{{scan_id}}/image.nii.gz",
        segmentation=f"{R}/scans/{{scan_id}}/segmentation.nii.gz",
    output:
        lesions=f"{R}/scans/{{scan_id}}/lesions.parquet",
        tissue=f"{R}/scans/{{scan_id}}/tissue.parquet",
    log:
        f"{R}/logs/measure/{{scan_id}}.log",
    benchmark:
        f"{R}/benchmarks/measure/{{scan_id}}.tsv",
    params:
        settings=settings("lesions"),
        patient=lambda wc: SCANS.loc[wc.scan_id, "patient_id"],
    conda:
        ENV
    shell:
        "tumorburden measure --image {input.image} --segmentation {input.segmentation}"
        " --patient-id {params.patient} --scan-id {wildcards.scan_id}"
        " --lesions-out {output.lesions} --tissue-out {output.tissue}"
        " --settings {params.settings} > {log} 2>&1"


rule register:
    input:
        image=f"{R}/scans/{{scan_id}}/image.nii.gz",
        reference=lambda wc: f"{R}/scans/{reference_of(wc)}/image.nii.gz",
    output:
        f"{R}/scans/{{scan_id}}/to_reference.json",
    log:
        f"{R}/logs/register/{{scan_id}}.log",
    benchmark:
        f"{R}/benchmarks/register/{{scan_id}}.tsv",
    params:
        settings=settings("lesions"),
        reference=reference_of,
    conda:
        ENV
    shell:
        "tumorburden register --image {input.image} --reference-image {input.reference}"
        " --scan-id {wildcards.scan_id} --reference-scan-id {params.reference}"
        " --out {output} --settings {params.settings} > {log} 2>&1"


rule track:
    input:
        scans=SCANS_TSV,
        lesions=scan_files(f"{R}/scans/{{scan_id}}/lesions.parquet"),
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
        "tumorburden track --scans-table {input.scans:q} --lesions {input.lesions}"
        " --transforms {input.transforms} --out {output.table} --settings {params.settings} > {log} 2>&1"
