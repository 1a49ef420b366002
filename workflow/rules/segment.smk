# Lesion and body-composition segmentation per scan; an external mask replaces the lesions.


rule segment:
    input:
        unpack(external_mask),
        image=f"{R}/scans/{{scan_id}}/image.nii.gz",
    output:
        f"{R}/scans/{{scan_id}}/segmentation.nii.gz",
    log:
        f"{R}/logs/segment/{{scan_id}}.log",
    benchmark:
        f"{R}/benchmarks/segment/{{scan_id}}.tsv",
    params:
        settings=settings("segmentation"),
        mask=lambda wc, input: f"--mask {shlex.quote(input.mask)}" if "mask" in input.keys() else "",
    threads: 1
    conda:
        ENV
    shell:
        "tumorburden segment --image {input.image} --out {output} {params.mask}"
        " --settings {params.settings} > {log} 2>&1"
