# DICOM -> HU NIfTI with its RAS affine, per scan, one patient per job. Two ways in:
# - study.scans: scans.tsv names each scan's image (a DICOM folder or a NIfTI file);
# - study.dicom_root: the `discover` checkpoint indexes the export (headers only), applies the
#   header-level QC and the series choice, so rejected studies never enter the DAG; its manifest
#   then names the scans, and each scan's ingest reads exactly the chosen series' files.
#   study.dicomweb: the same checkpoint runs `tumorburden pacs pull`, which makes that choice on a
#   DICOMweb server's metadata and retrieves only the chosen series (docs/pacs.md).

if DICOM_ROOT:

    checkpoint discover:
        input:
            clinical=CLINICAL_TSV,
            patient_map=str(STUDY.patient_map_path),
            override=[str(STUDY.series_override_path)] if STUDY.series_override_path else [],
        output:
            series=f"{R}/manifest/series.parquet",
            csv=f"{R}/manifest/series.csv",
            scans=f"{R}/manifest/scans.tsv",
            exclusions=f"{R}/qc/ingest_exclusions.tsv",
            lists=directory(f"{PRIVATE}/series"),
            private_series=f"{PRIVATE}/manifest/series.parquet",
            private_csv=f"{PRIVATE}/manifest/series.csv",
        log:
            f"{R}/logs/discover.log",
        params:
            # study.dicomweb: the same outputs from a DICOMweb server (tumorburden.pacs.pull), its
            # chosen series pulled into the private area's cache
            stage=["pacs", "pull"] if STUDY.dicomweb else ["discover"],
            source=[f"--dicomweb={json.dumps(STUDY.dicomweb, sort_keys=True)}"] if STUDY.dicomweb
            else [f"--dicom-root={STUDY.dicom_root}"],
            settings=settings("imaging"),
            # the folders the outputs name (the command writes more files under them)
            private=lambda wc, output: str(Path(output.private_series).parents[1]),
            results=lambda wc, output: str(Path(output.series).parents[1]),
            override=lambda wc, input: [f"--series-override={input.override[0]}"] if input.override else [],
        threads: (config.get("imaging") or {}).get("workers", 2)
        conda:
            ENV
        shell:
            "tumorburden {params.stage:q} {params.source:q} --clinical={input.clinical:q}"
            " --patient-map={input.patient_map:q} {params.override:q} --results-dir={params.results:q}"
            " --private-dir={params.private:q} --settings={params.settings:q} > {log:q} 2>&1"


rule ingest:
    """Every scan of a patient in one process: its DICOM series (a folder; for a dicom_root study the
    file list discovery chose) or NIfTI file -> scans/<scan_id>/image.nii.gz in HU with its RAS
    affine, and qc/ingest/<scan_id>.json; the job's tracked output is the patient's record."""
    input:
        sources=lambda wc: sorted({scan_source(s) for s in scans_of(wc)}),
    output:
        record=f"{R}/qc/ingest/{{patient_id}}.tsv",
    log:
        f"{R}/logs/ingest/{{patient_id}}.log",
    benchmark:
        f"{R}/benchmarks/ingest/{{patient_id}}.tsv"
    params:
        scans=scans_of,
        images=lambda wc: patient_scan_files(wc, f"{R}/scans/{{scan_id}}/image.nii.gz"),
        qc=lambda wc: patient_scan_files(wc, f"{R}/qc/ingest/{{scan_id}}.json"),
        sources=ingest_source_args,
        settings=settings("imaging"),
    conda:
        ENV
    shell:
        "tumorburden ingest --patient-id={wildcards.patient_id:q} --record={output.record:q}"
        " --scan-id {params.scans:q} --out {params.images:q} --qc {params.qc:q}"
        " --settings={params.settings:q} {params.sources:q} > {log:q} 2>&1"
