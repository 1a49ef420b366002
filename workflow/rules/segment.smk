# Lesion and body-composition segmentation per scan (MONAI bundle or classical baseline),
# external masks, DICOM-SEG out, QC overlays; training and evaluation of the demo model.

rule segment:
    input:
        unpack(segment_inputs),
    output:
        segmentation=f"{R}/scans/{{scan_id}}/segmentation.nii.gz",
        overlay=f"{R}/qc/overlays/{{scan_id}}.png",
    log:
        f"{R}/logs/segment/{{scan_id}}.log",
    benchmark:
        f"{R}/benchmarks/segment/{{scan_id}}.tsv",
    params:
        # training and export settings are not the segmentation's: editing them must not redo every scan
        settings=settings("segmentation", without=("train", "dicom_seg")),
        mask=lambda wc, input: [f"--mask={input.mask}"] if "mask" in input.keys() else [],
        bodycomp=lambda wc, input: [f"--bodycomp={input.bodycomp}"] if "bodycomp" in input.keys() else [],
        note=lambda wc: "" if is_dicom_source(wc.scan_id) else
        "no DICOM-SEG for this scan: its source image is a NIfTI file, with no DICOM series to reference",
    threads: 2 if SEGMENTATION.get("engine", "monai") == "monai" else 1  # torch uses them; the classical engine is serial
    resources:
        mem_mb=6000,
    conda:
        ENV
    shell:
        "tumorburden segment --image={input.image:q} --out={output.segmentation:q} --overlay={output.overlay:q}"
        " {params.mask:q} {params.bodycomp:q} --threads={threads:q} --settings={params.settings:q} > {log:q} 2>&1"
        " && printf '%s' {params.note:q} >> {log:q}"


rule segment_dicom:
    """DICOM-SEG of each of a patient's scans whose source is a DICOM series (one job per patient: the
    export is light, and a job per scan per step is what makes an IMPACT-size DAG slow to build; see
    BENCHMARKS.md): de-identified under results/, and the identified copy that references the
    hospital's instances, for its PACS, under the private area."""
    input:
        unpack(dicom_seg_inputs),
    output:
        seg=directory(f"{R}/dicom_seg/{{patient_id}}"),
        pacs=directory(f"{PRIVATE}/dicom_seg/{{patient_id}}"),
    log:
        f"{R}/logs/segment_dicom/{{patient_id}}.log",
    benchmark:
        f"{R}/benchmarks/segment_dicom/{{patient_id}}.tsv",
    params:
        scans=lambda wc: dicom_scans_of_patient()[wc.patient_id],
        series=dicom_series_of_patient,
        namespace=config["study"]["name"],
        settings=settings("imaging"),
    conda:
        ENV
    shell:
        "tumorburden segment-dicom --patient-id={wildcards.patient_id:q} --scan-id {params.scans:q}"
        " --segmentation {input.segmentations:q} --series {params.series:q} --uid-namespace={params.namespace:q}"
        " --out-dir={output.seg:q} --pacs-dir={output.pacs:q} --settings={params.settings:q} > {log:q} 2>&1"


rule segment_outputs:
    """Every scan's segmentation, QC overlay and (DICOM sources) DICOM-SEG."""
    input:
        scan_files(f"{R}/scans/{{scan_id}}/segmentation.nii.gz"),
        scan_files(f"{R}/qc/overlays/{{scan_id}}.png"),
        dicom_seg_targets,


rule train_segmentation:
    """Train the demo model on a synthetic trial drawn with segmentation.train.trial_seed.
    `snakemake train_segmentation` writes results/<name>/model/; the shipped models/tumorburden_ct is its output."""
    output:
        weights=f"{R}/model/tumorburden_ct/models/model.pt",
        metadata=f"{R}/model/tumorburden_ct/configs/metadata.json",
    log:
        f"{R}/logs/train_segmentation.log",
    benchmark:
        f"{R}/benchmarks/train_segmentation.tsv",
    params:
        settings=settings("segmentation"),
        out=lambda wc, output: str(Path(output.weights).parents[1]),
    threads: 2
    conda:
        ENV
    shell:
        "tumorburden segment-train --out-dir={params.out:q} --threads={threads:q} --settings={params.settings:q} > {log:q} 2>&1"


rule evaluate_segmentation:
    """Score the configured bundle (bf16 and fp32) and the classical baseline per lesion site on this run's
    synthetic scans (held out: the training trial uses another seed)."""
    input:
        images=scan_files(f"{R}/scans/{{scan_id}}/image.nii.gz"),
        truth=truth_folders(),
    output:
        scores=f"{R}/segment_eval/scores.csv",
        table=f"{R}/segment_eval/scores.md",
    log:
        f"{R}/logs/evaluate_segmentation.log",
    params:
        settings=settings("segmentation"),
        scans=lambda wc, input: str(Path(input.images[0]).parents[1]),
        truth=lambda wc, input: str(Path(input.truth[0]).parents[1]),
        out=lambda wc, output: str(Path(output.scores).parent),
    threads: 2
    conda:
        ENV
    shell:
        "tumorburden segment-evaluate --scans-dir={params.scans:q} --truth-dir={params.truth:q} --out-dir={params.out:q}"
        " --threads={threads:q} --settings={params.settings:q} > {log:q} 2>&1"
