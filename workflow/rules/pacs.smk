# A DICOMweb study's results back to the server (docs/pacs.md): `snakemake push_results` writes each
# scan's SR TID 1500 beside its DICOM-SEG and sends both (the identified copies, from the private
# area) by STOW-RS; `snakemake fetch_reviews` downloads the radiologist's corrections into the review
# folder (docs/review.md). Neither is part of `rule all`: the hospital's PACS is reached when asked.

if STUDY.dicomweb:

    localrules: push_patient, push_results, fetch_reviews  # the PACS is reached from this machine, not a cluster node

    rule push_patient:
        input:
            pacs_seg=f"{PRIVATE}/dicom_seg/{{patient_id}}",
            seg=f"{R}/dicom_seg/{{patient_id}}",
            lesions=f"{R}/tables/lesions.parquet",
            burden=f"{R}/tables/burden.parquet",
        output:
            sr=directory(f"{R}/dicom_sr/{{patient_id}}"),
            pacs_sr=directory(f"{PRIVATE}/dicom_sr/{{patient_id}}"),
            receipt=f"{R}/pacs/pushed/{{patient_id}}.tsv",
        log:
            f"{R}/logs/push/{{patient_id}}.log",
        params:
            scans=lambda wc: dicom_scans_of_patient()[wc.patient_id],
            dicomweb=json.dumps(STUDY.dicomweb, sort_keys=True),
            namespace=config["study"]["name"],
        conda:
            ENV
        shell:
            "tumorburden pacs push --patient-id={wildcards.patient_id:q} --scan-id {params.scans:q}"
            " --private-seg-dir={input.pacs_seg:q} --public-seg-dir={input.seg:q} --lesions={input.lesions:q}"
            " --burden={input.burden:q} --uid-namespace={params.namespace:q} --private-sr-dir={output.pacs_sr:q}"
            " --public-sr-dir={output.sr:q} --dicomweb={params.dicomweb:q} --receipt={output.receipt:q} > {log:q} 2>&1"

    rule push_results:
        """Every patient's SEG + SR sent to study.dicomweb (push_url when set)."""
        input:
            lambda wc: expand(f"{R}/pacs/pushed/{{patient_id}}.tsv", patient_id=sorted(dicom_scans_of_patient())),

    rule fetch_reviews:
        """The radiologist's SEG / RTSTRUCT of each scan, from study.dicomweb into the review folder
        (review.dir, else private/<name>/reviews), where the next run takes them. No output: asked for,
        it always asks the server again (what is already downloaded is not fetched twice)."""
        input:
            scans=SCANS_TSV,  # discovery's table: each scan's series list, in the private area
        log:
            f"{R}/logs/fetch_reviews.log",
        params:
            dicomweb=json.dumps(STUDY.dicomweb, sort_keys=True),
            segs=f"{PRIVATE}/dicom_seg",
            folder=str(review_dir(config, existing=False)),
            description=REVIEW["series_description"] or "",
        conda:
            ENV
        shell:
            "tumorburden pacs fetch-reviews --dicomweb={params.dicomweb:q} --scans-table={input.scans:q}"
            " --private-seg-dir={params.segs:q} --review-dir={params.folder:q}"
            " --series-description={params.description:q} > {log:q} 2>&1"
