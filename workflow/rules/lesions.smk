# Lesions per scan (measurements, body composition), then tracks across each patient's scans.


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


rule track:
    input:
        scans=SCANS_TSV,
        lesions=scan_files(f"{R}/scans/{{scan_id}}/lesions.parquet"),
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
        " --out {output.table} --settings {params.settings} > {log} 2>&1"
