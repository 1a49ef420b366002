# A radiologist's review: per reviewed scan its own measurement (the model's segmentation and every
# other scan's measurement stay as they are), then the model-vs-radiologist table of the study.


rule measure_review:
    """The reviewed scan's label map (the review's lesions in place of the model's, the model's tissues
    kept), its lesions, and its row of the review table."""
    input:
        # the patient's measure job: the scan's image, the model's segmentation and lesions
        measured=lambda wc: f"{R}/qc/measure/{PLAN.patient_of(wc.scan_id)}.tsv",
        review=lambda wc: str(reviews()[wc.scan_id]),
    output:
        segmentation=f"{R}/scans/{{scan_id}}/review/segmentation.nii.gz",
        lesions=f"{R}/scans/{{scan_id}}/review/lesions.parquet",
        agreement=f"{R}/scans/{{scan_id}}/review/agreement.parquet",
    log:
        f"{R}/logs/measure_review/{{scan_id}}.log",
    benchmark:
        f"{R}/benchmarks/measure_review/{{scan_id}}.tsv",
    params:
        # what measuring and comparing read: the lesions section and the review's Dice threshold
        settings=json.dumps({**(config.get("lesions") or {}), "same_lesion_dice": REVIEW["same_lesion_dice"]},
                            sort_keys=True),
        patient=lambda wc: PLAN.patient_of(wc.scan_id),
        image=f"{R}/scans/{{scan_id}}/image.nii.gz",
        segmentation=f"{R}/scans/{{scan_id}}/segmentation.nii.gz",
        ai_lesions=f"{R}/scans/{{scan_id}}/lesions.parquet",
    conda:
        ENV
    shell:
        "tumorburden review --image={params.image:q} --segmentation={params.segmentation:q}"
        " --ai-lesions={params.ai_lesions:q} --review={input.review:q} --patient-id={params.patient:q}"
        " --scan-id={wildcards.scan_id:q} --segmentation-out={output.segmentation:q}"
        " --lesions-out={output.lesions:q} --agreement-out={output.agreement:q}"
        " --settings={params.settings:q} > {log:q} 2>&1"


rule review_table:
    input:
        scans=SCANS_TSV,
        measured=patient_files(f"{R}/qc/measure/{{patient_id}}.tsv"),  # every scan's lesions
        agreement=lambda wc: [f"{R}/scans/{s}/review/agreement.parquet" for s in sorted(reviews())],
    output:
        table=f"{R}/tables/review.parquet",
        csv=report(f"{R}/tables/review.csv", caption="../report/table_review.rst", category="Quality control",
                   subcategory="Review"),
    log:
        f"{R}/logs/review_table.log",
    params:
        lesions=scan_files(f"{R}/scans/{{scan_id}}/lesions.parquet"),
        # older reviews of a scan, not taken (common.smk): listed in the table, nothing else reruns for them
        passed_over=lambda wc: passed_over_reviews(),
    conda:
        ENV
    shell:
        "tumorburden review-table --scans-table={input.scans:q} --lesions {params.lesions:q}"
        " --agreement {input.agreement:q} --passed-over={params.passed_over:q} --out={output.table:q} > {log:q} 2>&1"
