# Lesion and body-composition segmentation per scan (MONAI bundle or classical baseline),
# external masks, DICOM-SEG out, QC overlays; training and evaluation of the demo model.

rule segment:
    """Every scan of a patient in one process: the engine (torch, MONAI and the model's weights for
    monai) loads once per patient, not once per scan (BENCHMARKS.md). Each scan keeps its own files,
    scans/<scan_id>/segmentation.nii.gz and qc/overlays/<scan_id>.png; the job's tracked output is
    the patient's record (one row per scan)."""
    input:
        unpack(segment_inputs),
    output:
        record=f"{R}/qc/segment/{{patient_id}}.tsv",
    log:
        f"{R}/logs/segment/{{patient_id}}.log",
    benchmark:
        f"{R}/benchmarks/segment/{{patient_id}}.tsv"
    params:
        # training and export settings are not the segmentation's: editing them must not redo every scan
        settings=settings("segmentation", without=("train", "dicom_seg", "threads")),
        # the models' configs, plans and label names by content: editing one redoes the segmentation
        model=MODEL_FINGERPRINT,
        scans=scans_of,
        images=lambda wc: patient_scan_files(wc, f"{R}/scans/{{scan_id}}/image.nii.gz"),
        segmentations=lambda wc: patient_scan_files(wc, f"{R}/scans/{{scan_id}}/segmentation.nii.gz"),
        overlays=lambda wc: patient_scan_files(wc, f"{R}/qc/overlays/{{scan_id}}.png"),
        masks=lambda wc: [f"--mask={s}={m}" for s, m in external_files_of(wc, "mask")],
        bodycomp=lambda wc: [f"--bodycomp={s}={m}" for s, m in external_files_of(wc, "bodycomp")],
        nifti=lambda wc: [s for s in scans_of(wc) if not is_dicom_source(s)],
    # torch's threads (the classical engine is serial). One per job by default: --cores N then runs N
    # patients side by side, which costs 1.5x less CPU per scan than two threads on one, and a torch
    # job whose second thread shares a core with another job waits on it (BENCHMARKS.md)
    threads: SEGMENTATION["threads"] if SEGMENTATION["engine"] in ("monai", "nnunet") else 1
    resources:
        mem_mb=6000,
    conda:
        ENV
    shell:
        "tumorburden segment --patient-id={wildcards.patient_id:q} --record={output.record:q}"
        " --scan-id {params.scans:q} --image {params.images:q} --out {params.segmentations:q}"
        " --overlay {params.overlays:q} --nifti-source {params.nifti:q} {params.masks:q} {params.bodycomp:q}"
        " --threads={threads:q} --settings={params.settings:q} > {log:q} 2>&1"


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
        segmentations=dicom_segmentations_of_patient,
        series=dicom_series_of_patient,
        namespace=config["study"]["name"],
        settings=settings("imaging"),
    conda:
        ENV
    shell:
        "tumorburden segment-dicom --patient-id={wildcards.patient_id:q} --scan-id {params.scans:q}"
        " --segmentation {params.segmentations:q} --series {params.series:q} --uid-namespace={params.namespace:q}"
        " --out-dir={output.seg:q} --pacs-dir={output.pacs:q} --settings={params.settings:q} > {log:q} 2>&1"


rule segment_outputs:
    """Every scan's segmentation and QC overlay (the patients' records), and (DICOM sources) DICOM-SEG."""
    input:
        patient_files(f"{R}/qc/segment/{{patient_id}}.tsv"),
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
        ingested=patient_files(f"{R}/qc/ingest/{{patient_id}}.tsv"),  # every scan's image.nii.gz
        truth=truth_folders(),
    output:
        scores=f"{R}/segment_eval/scores.csv",
        table=f"{R}/segment_eval/scores.md",
    log:
        f"{R}/logs/evaluate_segmentation.log",
    params:
        settings=settings("segmentation"),
        scans=f"{R}/scans",
        truth=lambda wc, input: str(Path(input.truth[0]).parents[1]),
        out=lambda wc, output: str(Path(output.scores).parent),
    threads: 2
    conda:
        ENV
    shell:
        "tumorburden segment-evaluate --scans-dir={params.scans:q} --truth-dir={params.truth:q} --out-dir={params.out:q}"
        " --threads={threads:q} --settings={params.settings:q} > {log:q} 2>&1"
