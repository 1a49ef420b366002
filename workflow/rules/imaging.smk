# DICOM series (or NIfTI) -> HU NIfTI with its RAS affine, per scan.


rule ingest:
    input:
        image=lambda wc: SCANS.loc[wc.scan_id, "image"],
    output:
        image=f"{R}/scans/{{scan_id}}/image.nii.gz",
        qc=f"{R}/qc/ingest/{{scan_id}}.json",
    log:
        f"{R}/logs/ingest/{{scan_id}}.log",
    benchmark:
        f"{R}/benchmarks/ingest/{{scan_id}}.tsv",
    params:
        settings=settings("imaging"),
    conda:
        ENV
    shell:
        "tumorburden ingest {input.image:q} --out {output.image} --qc {output.qc}"
        " --settings {params.settings} > {log} 2>&1"
