# Burden per scan and kinetics features per patient.


rule burden:
    input:
        lesions=f"{R}/tables/lesions.parquet",
        measured=patient_files(f"{R}/qc/measure/{{patient_id}}.tsv"),  # the scans' tissue.parquet, one job per patient
        scans=SCANS_TSV,
    output:
        table=f"{R}/tables/burden.parquet",
        csv=report(f"{R}/tables/burden.csv", caption="../report/table_burden.rst", category="Tables", subcategory="Burden"),
    log:
        f"{R}/logs/burden.log",
    params:
        settings=settings("kinetics"),
        tissue=scan_files(f"{R}/scans/{{scan_id}}/tissue.parquet"),
    conda:
        ENV
    shell:
        "tumorburden burden --lesions {input.lesions:q} --tissue {params.tissue:q}"
        " --scans-table={input.scans:q} --out={output.table:q} --settings={params.settings:q} > {log:q} 2>&1"


rule site_burden:
    """Burden per site (liver, lung, lymph nodes, other) per scan, and its kinetics per patient."""
    input:
        lesions=f"{R}/tables/lesions.parquet",
        scans=SCANS_TSV,
    output:
        table=f"{R}/tables/site_burden.parquet",
        csv=report(f"{R}/tables/site_burden.csv", caption="../report/table_site_burden.rst", category="Tables",
                   subcategory="Burden"),
        kinetics=f"{R}/tables/site_kinetics.parquet",
        kinetics_csv=report(f"{R}/tables/site_kinetics.csv", caption="../report/table_site_burden.rst",
                            category="Tables", subcategory="Burden"),
    log:
        f"{R}/logs/site_burden.log",
    conda:
        ENV
    shell:
        "tumorburden site-burden --lesions={input.lesions:q} --scans-table={input.scans:q} --out={output.table:q}"
        " --kinetics={output.kinetics:q} > {log:q} 2>&1"


rule body_composition:
    """Body composition per scan: whole-volume, and at the middle of L3 (areas, skeletal muscle index
    with height from clinical.tsv, sarcopenia) when an organ model gives the L3 vertebra."""
    input:
        measured=patient_files(f"{R}/qc/measure/{{patient_id}}.tsv"),  # the scans' tissue.parquet and l3.parquet
        scans=SCANS_TSV,
        clinical=CLINICAL_TSV,
    output:
        table=f"{R}/tables/body_composition.parquet",
        csv=report(f"{R}/tables/body_composition.csv", caption="../report/table_body_composition.rst",
                   category="Tables", subcategory="Body composition"),
    log:
        f"{R}/logs/body_composition.log",
    params:
        settings=settings("body_composition"),
        tissue=scan_files(f"{R}/scans/{{scan_id}}/tissue.parquet"),
        l3=scan_files(f"{R}/scans/{{scan_id}}/l3.parquet"),
    conda:
        ENV
    shell:
        "tumorburden body-composition --tissue {params.tissue:q} --l3 {params.l3:q} --scans-table={input.scans:q}"
        " --clinical={input.clinical:q} --out={output.table:q} --settings={params.settings:q} > {log:q} 2>&1"


rule features:
    input:
        burden=f"{R}/tables/burden.parquet",
        lesions=f"{R}/tables/lesions.parquet",
        clinical=CLINICAL_TSV,
        ingest_exclusions=INGEST_EXCLUSIONS,  # scans rejected by discovery (dicom_root studies)
    output:
        table=f"{R}/tables/features.parquet",
        csv=report(
            f"{R}/tables/features.csv", caption="../report/table_features.rst", category="Tables", subcategory="Burden"
        ),
        exclusions=report(
            f"{R}/qc/exclusions.tsv", caption="../report/table_exclusions.rst", category="Quality control"
        ),
    log:
        f"{R}/logs/features.log",
    params:
        settings=settings("kinetics"),
    conda:
        ENV
    shell:
        "tumorburden features --burden={input.burden:q} --lesions {input.lesions:q}"
        " --clinical={input.clinical:q} --out={output.table:q} --exclusions={output.exclusions:q}"
        " --settings={params.settings:q} > {log:q} 2>&1"
        " && tumorburden merge-exclusions --into={output.exclusions:q} -- {input.ingest_exclusions:q} >> {log:q} 2>&1"
