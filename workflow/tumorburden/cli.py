"""`tumorburden <stage> ...`: the commands the Snakemake rules call, usable on their own.

Imports are lazy so that a light stage does not pay for a heavy one's libraries.
A failure prints one line, `tumorburden <stage>: error: <what> (<what to do>)`, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path


def _settings(text: str | None) -> dict:
    """--settings takes inline JSON or @file.json (a YAML or JSON file); a syntax error is
    reported with the file, line and column."""
    if not text:
        return {}
    if text.startswith("@"):
        import yaml

        path = Path(text[1:])
        try:
            settings = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ValueError(f"{path}{where}: YAML syntax error ({problem}); fix the file") from None
        if not isinstance(settings, dict):
            raise ValueError(f"{path}: expected keys and values (a YAML mapping), got a {type(settings).__name__}")
        return settings
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--settings: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}); "
                         "give inline JSON or @path to a YAML/JSON file") from None


def _add_settings(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--settings",
        default=None,
        help="the stage's config section as inline JSON, or @path to a YAML/JSON file "
        "(defaults apply to keys left out)",
    )


# --- one function per subcommand ---------------------------------------------------


def cmd_synth_trial(a):
    from tumorburden.synth.trial import write_trial

    write_trial(_settings(a.settings), Path(a.out_dir))


def cmd_synth_render(a):
    from tumorburden.synth.render import render_patient, render_scan

    if a.patient_id:
        render_patient(_settings(a.settings), a.patient_id, Path(a.dicom_dir), Path(a.truth_dir))
    else:
        render_scan(_settings(a.settings), a.scan_id, Path(a.dicom_dir), Path(a.truth_dir))


def cmd_ingest(a):
    from tumorburden.imaging.ingest import IngestJob, ingest, ingest_patient, ingest_series_list

    settings = _settings(a.settings)
    if a.scan_id:  # a patient's scans: one source or one series list per scan
        if not a.patient_id or not a.record:
            raise ValueError("--scan-id (a patient's scans) needs --patient-id and --record")
        sources = a.series_list or a.series
        _same_length(a, ("scan-id", "out", "qc"))
        if len(sources or []) != len(a.scan_id):
            raise ValueError(f"give one source (SERIES_DIR or NIfTI file, or --series-list) per --scan-id: "
                             f"{len(a.scan_id)} scans, {len(sources or [])} sources")
        jobs = [IngestJob(scan_id, Path(out), Path(qc), **({"series_list": Path(src)} if a.series_list
                                                            else {"source": Path(src)}))
                for scan_id, out, qc, src in zip(a.scan_id, a.out, a.qc, sources)]
        ingest_patient(a.patient_id, jobs, Path(a.record), settings=settings, dtype=a.dtype)
        return
    if len(a.out) != 1 or len(a.qc or [None]) != 1 or len(a.series) > 1 or len(a.series_list or []) > 1:
        raise ValueError("several scans need --scan-id (one per scan), --patient-id and --record")
    qc = Path(a.qc[0]) if a.qc else None
    if a.series_list:  # written by discovery: the files of the scan's chosen series
        ingest_series_list(Path(a.series_list[0]), Path(a.out[0]), qc, settings, a.dtype)
    elif not a.series:
        raise ValueError("give a SERIES_DIR (or NIfTI file), or --series-list")
    else:
        ingest(Path(a.series[0]), Path(a.out[0]), qc_path=qc, settings=settings, series_uid=a.series_uid,
               dtype=a.dtype)


def _discovery_args(a) -> tuple[list, dict]:
    """What discovery reads, from a folder (discover) or a DICOMweb server (pacs pull): the patient
    map, the baseline dates, the output folders and the settings; and the series override."""
    from tumorburden.study import baseline_dates, read_patient_map, read_series_override, read_table

    clinical = read_table(Path(a.clinical))
    override = read_series_override(Path(a.series_override)) if a.series_override else None
    return ([read_patient_map(Path(a.patient_map), clinical), baseline_dates(clinical, Path(a.clinical)),
             Path(a.results_dir), Path(a.private_dir), {**_ingest_defaults(), **_settings(a.settings)}],
            {"override": override})


def cmd_discover(a):
    from tumorburden.imaging.discover import discover

    args, options = _discovery_args(a)
    discover(Path(a.dicom_root), *args, **options)


def cmd_pacs_pull(a):
    from tumorburden.pacs.pull import pull

    args, options = _discovery_args(a)
    pull(_settings(a.dicomweb), *args, **options)


def cmd_pacs_push(a):
    from tumorburden.pacs.push import push_patient

    push_patient(a.patient_id, a.scan_id, private_seg_dir=Path(a.private_seg_dir), public_seg_dir=Path(a.public_seg_dir),
                 lesions_path=Path(a.lesions), burden_path=Path(a.burden), namespace=a.uid_namespace,
                 private_sr_dir=Path(a.private_sr_dir), public_sr_dir=Path(a.public_sr_dir),
                 dicomweb=_settings(a.dicomweb) or None, receipt=Path(a.receipt))


def cmd_pacs_fetch_reviews(a):
    from tumorburden.pacs.reviews import fetch_study_reviews

    fetch_study_reviews(_settings(a.dicomweb), Path(a.scans_table), Path(a.private_seg_dir), Path(a.review_dir),
                        a.series_description or None)


def _ingest_defaults() -> dict:
    from tumorburden.imaging.ingest import DEFAULTS

    return DEFAULTS


def cmd_merge_exclusions(a):
    from tumorburden.imaging.discover import merge_exclusions

    merge_exclusions(Path(a.into), [Path(p) for p in a.extra])


def _per_scan(values: list[str] | None, scan_ids: list[str], option: str) -> dict[str, Path]:
    """`--mask`/`--bodycomp` values, SCAN_ID=PATH each (a bare PATH when there is one scan) -> scan -> path."""
    out = {}
    for value in values or []:
        scan_id, sep, path = value.partition("=")
        if sep and scan_id in scan_ids:
            out[scan_id] = Path(path)
        elif len(scan_ids) == 1:
            out[scan_ids[0]] = Path(value)
        else:
            raise ValueError(f"{option} {value!r}: give SCAN_ID=PATH with one of the --scan-id values")
    return out


def _same_length(a, names: tuple[str, ...]) -> None:
    lengths = {name: len(getattr(a, name.replace("-", "_")) or []) for name in names}
    if len(set(lengths.values())) != 1:
        raise ValueError("give one value per scan, in the same order, to each of "
                         + ", ".join(f"--{name} ({n})" for name, n in lengths.items()))


def cmd_segment(a):
    from tumorburden.segment.run import ScanJob, segment, segment_patient

    if not a.scan_id:  # one scan, named by its files
        if len(a.image) != 1 or len(a.out) != 1 or len(a.overlay or [None]) != 1:
            raise ValueError("several --image need --scan-id (one per image), --patient-id and --record")
        masks, bodycomp = _per_scan(a.mask, ["scan"], "--mask"), _per_scan(a.bodycomp, ["scan"], "--bodycomp")
        segment(Path(a.image[0]), Path(a.out[0]), mask_path=masks.get("scan"), settings=_settings(a.settings),
                bodycomp_path=bodycomp.get("scan"), overlay_path=Path(a.overlay[0]) if a.overlay else None,
                threads=a.threads)
        return
    _same_length(a, ("scan-id", "image", "out") + (("overlay",) if a.overlay else ()))
    if not a.patient_id or not a.record:
        raise ValueError("--scan-id (a patient's scans) needs --patient-id and --record")
    masks, bodycomp = _per_scan(a.mask, a.scan_id, "--mask"), _per_scan(a.bodycomp, a.scan_id, "--bodycomp")
    nifti = set(a.nifti_source or [])
    jobs = [ScanJob(scan_id, Path(image), Path(out), overlay=Path(a.overlay[i]) if a.overlay else None,
                    mask=masks.get(scan_id), bodycomp=bodycomp.get(scan_id), dicom_source=scan_id not in nifti)
            for i, (scan_id, image, out) in enumerate(zip(a.scan_id, a.image, a.out))]
    segment_patient(a.patient_id, jobs, Path(a.record), settings=_settings(a.settings), threads=a.threads)


def cmd_segment_dicom(a):
    from tumorburden.segment.dicomseg import write_dicom_seg

    if len(a.segmentation) != len(a.series):
        sys.exit(f"tumorburden segment-dicom: {len(a.segmentation)} segmentations but {len(a.series)} series: "
                 "give one --series per --segmentation, in the same order")
    if a.out:
        if len(a.segmentation) != 1:
            sys.exit("tumorburden segment-dicom: --out takes one scan; use --out-dir and --scan-id for several")
        jobs = [(Path(a.out).stem, a.segmentation[0], a.series[0], Path(a.out),
                 Path(a.pacs_out) if a.pacs_out else None)]
    else:
        if not a.scan_id or len(a.scan_id) != len(a.segmentation):
            sys.exit("tumorburden segment-dicom: --out-dir needs one --scan-id per --segmentation, in the same order")
        from tumorburden.paths import inside

        jobs = [(scan_id, seg, series, inside(Path(a.out_dir), Path(a.out_dir) / f"{scan_id}.dcm"),
                 inside(Path(a.pacs_dir), Path(a.pacs_dir) / f"{scan_id}.dcm") if a.pacs_dir else None)
                for scan_id, seg, series in zip(a.scan_id, a.segmentation, a.series)]
        Path(a.out_dir).mkdir(parents=True, exist_ok=True)
        if a.pacs_dir:
            Path(a.pacs_dir).mkdir(parents=True, exist_ok=True)
    for i, (scan_id, segmentation, series, out, pacs_out) in enumerate(jobs, 1):
        write_dicom_seg(Path(segmentation), Path(series), out, patient_id=a.patient_id,
                        namespace=f"{a.uid_namespace}/{a.patient_id}/{scan_id}", pacs_out=pacs_out,
                        model_name=a.model_name, settings={**_ingest_defaults(), **_settings(a.settings)})
        logging.getLogger(__name__).info("%d/%d DICOM-SEG written", i, len(jobs))


def cmd_segment_train(a):
    import torch

    from tumorburden.segment.train import train

    if a.threads:
        torch.set_num_threads(a.threads)
    train((_settings(a.settings) or {}).get("train"), Path(a.out_dir))


def cmd_segment_evaluate(a):
    from tumorburden.segment.evaluate import evaluate

    evaluate(Path(a.scans_dir), Path(a.truth_dir), Path(a.out_dir), settings=_settings(a.settings),
             threads=a.threads)


def cmd_measure(a):
    from tumorburden.lesions.measure import ScanFiles, measure_patient, measure_scan

    if not a.record:  # one scan, no registration
        if len(a.image) != 1 or len(a.segmentation) != 1 or len(a.scan_id) != 1:
            raise ValueError("several scans need --record, --transform-out, --reference-scan-id and "
                             "--reference-image (a patient's job)")
        measure_scan(Path(a.image[0]), Path(a.segmentation[0]), a.patient_id, a.scan_id[0],
                     Path(a.lesions_out[0]), Path(a.tissue_out[0]), settings=_settings(a.settings))
        return
    _same_length(a, ("scan-id", "image", "segmentation", "lesions-out", "tissue-out", "transform-out"))
    if not a.reference_scan_id or not a.reference_image:
        raise ValueError("--record (a patient's job) needs --reference-scan-id and --reference-image")
    scans = [ScanFiles(*(Path(p) if i else p for i, p in enumerate(row)))
             for row in zip(a.scan_id, a.image, a.segmentation, a.lesions_out, a.tissue_out, a.transform_out)]
    measure_patient(a.patient_id, a.reference_scan_id, Path(a.reference_image), scans, Path(a.record),
                    settings=_settings(a.settings))


def cmd_register(a):
    from tumorburden.lesions.register import register_scan

    register_scan(Path(a.image), Path(a.reference_image), a.scan_id, a.reference_scan_id, Path(a.out),
                  settings=_settings(a.settings))


def cmd_track(a):
    from tumorburden.lesions.track import track_study

    track_study(Path(a.scans_table), [Path(p) for p in a.lesions], Path(a.out),
                settings=_settings(a.settings),
                transform_paths=[Path(p) for p in a.transforms] if a.transforms else None)


def cmd_review(a):
    from tumorburden.lesions.review import measure_review
    from tumorburden.segment.review import write_reviewed_segmentation

    kind = write_reviewed_segmentation(Path(a.image), Path(a.segmentation), Path(a.review), Path(a.segmentation_out))
    measure_review(Path(a.image), Path(a.segmentation), Path(a.segmentation_out), Path(a.ai_lesions), a.patient_id,
                   a.scan_id, kind, Path(a.lesions_out), Path(a.agreement_out), settings=_settings(a.settings))


def cmd_review_table(a):
    from tumorburden.lesions.review import review_table

    try:
        passed_over = json.loads(a.passed_over)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"--passed-over: not JSON ({exc}); give scan_id -> [reason, ...]") from None
    review_table(Path(a.scans_table), [Path(p) for p in a.lesions], [Path(p) for p in a.agreement or []], Path(a.out),
                 passed_over=passed_over)


def cmd_burden(a):
    from tumorburden.kinetics.burden import write_burden

    write_burden(Path(a.lesions), [Path(p) for p in a.tissue], Path(a.scans_table), Path(a.out),
                 settings=_settings(a.settings))


def cmd_site_burden(a):
    from tumorburden.kinetics.sites import write_site_tables

    write_site_tables(Path(a.lesions), Path(a.scans_table), Path(a.out), Path(a.kinetics))


def cmd_body_composition(a):
    from tumorburden.kinetics.bodycomp import write_body_composition

    write_body_composition([Path(p) for p in a.tissue], [Path(p) for p in a.l3], Path(a.scans_table),
                           Path(a.clinical), Path(a.out), settings=_settings(a.settings))


def cmd_features(a):
    from tumorburden.kinetics.features import write_features

    write_features(Path(a.burden), Path(a.lesions), Path(a.clinical), Path(a.out),
                   Path(a.exclusions), settings=_settings(a.settings))


def cmd_survival(a):
    if a.action:
        from tumorburden.survival.standalone import run

        run(a)
        return
    from tumorburden.survival.analysis import write_survival

    missing = [f"--{k.replace('_', '-')}" for k in ("features", "clinical", "out_dir") if not getattr(a, k)]
    if missing:
        raise ValueError(f"survival needs {', '.join(missing)} (or a standalone action: "
                         "survival km|logrank|cox|zph|score|rmst|validate --table T)")
    write_survival(Path(a.features), Path(a.clinical), Path(a.out_dir),
                   settings=_settings(a.settings), burden=Path(a.burden) if a.burden else None)


def cmd_prediction(a):
    from tumorburden.survival.prediction import write_prediction

    write_prediction(Path(a.features), Path(a.clinical), Path(a.out_dir), settings=_settings(a.settings),
                     burden=Path(a.burden) if a.burden else None, truth=Path(a.truth) if a.truth else None)


def cmd_dynamic(a):
    from tumorburden.survival.dynamic import write_dynamic

    write_dynamic(Path(a.features), Path(a.clinical), Path(a.burden), Path(a.out_dir), settings=_settings(a.settings),
                  extra_predictions=[Path(p) for p in a.predictions or []])


def cmd_joint(a):
    from tumorburden.survival.joint import write_joint

    write_joint(Path(a.features), Path(a.clinical), Path(a.burden), Path(a.model), Path(a.predictions),
                settings=_settings(a.settings))


def _cohorts(a):
    """The study's cohorts from clinical.tsv, so a cohort has one colour in every figure."""
    if not getattr(a, "clinical", None):
        return None
    from tumorburden.study import read_clinical_table

    return sorted(read_clinical_table(Path(a.clinical))["cohort"].astype(str).unique())


def cmd_figures(a):
    from tumorburden.figures import burden, contact_sheet, discrimination, forest, km

    s, out = _settings(a.settings), Path(a.out_dir)
    if a.kind == "km":
        km.write_km_figures(Path(a.survival_dir), out, settings=s, cohorts=_cohorts(a))
    elif a.kind == "forest":
        forest.write_forest_figures(Path(a.survival_dir), out, settings=s, cohorts=_cohorts(a))
    elif a.kind == "c-index":
        discrimination.write_c_index_figure(Path(a.survival_dir), out, settings=s, cohorts=_cohorts(a),
                                            difference_path=Path(a.difference) if a.difference else None)
    elif a.kind == "td-auc":
        discrimination.write_td_auc_figures(Path(a.td_auc), out, settings=s, cohorts=_cohorts(a))
    elif a.kind == "burden":
        burden.write_burden_figures(Path(a.burden), Path(a.features), Path(a.clinical), out, settings=s)
    elif a.kind == "prediction":
        from tumorburden.figures import prediction

        prediction.write_prediction_figures(Path(a.survival_dir), out, settings=s)
    elif a.kind == "dynamic":
        from tumorburden.figures import dynamic

        dynamic.write_dynamic_figures(Path(a.predictions), Path(a.burden), Path(a.clinical) if a.clinical else None,
                                      out, a.patients.split(","), a.endpoints.split(","), settings=s)
    elif a.kind == "contact-sheet":
        contact_sheet.write_contact_sheets([Path(p) for p in a.overlays], out, settings=s)


def cmd_score(a):
    from tumorburden.synth.score import write_scores

    write_scores(Path(a.truth_dir), Path(a.results_dir), Path(a.out))


def cmd_design(a):
    from tumorburden.design import write_design

    config = _settings(a.settings)
    scores = Path(a.scores) if a.scores else None
    if scores is not None and not scores.is_file():
        raise ValueError(f"--scores {scores}: no such file (give a run's truth/scores.csv, or leave it out to "
                         "use design.error)")
    write_design(config.get("synthetic"), config.get("design"), Path(a.out_dir), scores_path=scores,
                 workers=a.workers, figure_settings=config.get("figures"))


def cmd_check_study(a):
    from tumorburden.study import check_study, merged_config

    # the run's config: config/config.yaml updated with the user's, as Snakemake merges --configfile
    study = check_study(merged_config(_settings(a.settings)), Path(a.schemas))
    scans = (f"{len(study.scans)} scans" if study.scans is not None
             else f"scans to be pulled from {study.dicomweb['url']}" if study.dicomweb
             else f"scans to be discovered under {study.dicom_root}")
    print(f"ok: {len(study.clinical)} patients, {scans}")


# --- parser ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tumorburden",
        description="Tumour burden from trial CT scans: the stages of the pipeline, one command each.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")

    p = sub.add_parser("synth-trial", help="simulate a trial: clinical.tsv, scans.tsv and the truth tables")
    _add_settings(p)
    p.add_argument("--out-dir", required=True, help="results/<name>: writes synthetic/ and truth/ under it")
    p.set_defaults(func=cmd_synth_trial)

    p = sub.add_parser("synth-render", help="render a synthetic patient's scans (or one scan) as DICOM CT series + truth masks")
    _add_settings(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--patient-id", help="every scan of this patient: a folder per scan under --dicom-dir and --truth-dir")
    which.add_argument("--scan-id", help="this scan only: its series in --dicom-dir, its masks in --truth-dir")
    p.add_argument("--dicom-dir", required=True, help="folder for the series (one file per slice)")
    p.add_argument("--truth-dir", required=True, help="folder for labels.nii.gz and lesions.nii.gz")
    p.set_defaults(func=cmd_synth_render)

    p = sub.add_parser("ingest", help="read the diagnostic CT series of a folder (or a NIfTI) into an HU NIfTI with its "
                       "RAS affine; or a patient's scans in one process (--scan-id, --patient-id, --record)")
    p.add_argument("series", nargs="*", help="a folder holding DICOM files (any layout, several series allowed), or a "
                   "NIfTI file; one per --scan-id")
    p.add_argument("--out", required=True, nargs="+", help="OUT.nii.gz, one per scan")
    p.add_argument("--qc", default=None, nargs="+", help="write the ingest QC report here (JSON), one per scan")
    p.add_argument("--series-uid", default=None, help="read this series instead of choosing one (one scan)")
    p.add_argument("--series-list", default=None, nargs="+",
                   help="a series list written by `tumorburden discover` (pipeline use), one per scan")
    p.add_argument("--scan-id", nargs="+", default=None, help="the scans' IDs, in the same order (a patient's job)")
    p.add_argument("--patient-id", default=None, help="the patient whose scans these are (a patient's job)")
    p.add_argument("--record", default=None, help="write the patient's ingest record here (TSV, one row per scan)")
    p.add_argument("--dtype", choices=["auto", "int16", "float32"], default="auto",
                   help="auto: int16 when the HU are exact integers, else float32")
    _add_settings(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("discover", help="index a DICOM export (headers only), choose one series per study, write the manifest")
    p.add_argument("--dicom-root", required=True)
    p.add_argument("--clinical", required=True, help="clinical.tsv with a baseline_date column")
    p.add_argument("--patient-map", required=True, help="table dicom_patient_id -> patient_id")
    p.add_argument("--series-override", default=None, help="table scan_id -> series_uid (or exclude)")
    p.add_argument("--results-dir", required=True, help="results/<name>: writes manifest/ and qc/ingest_exclusions.tsv")
    p.add_argument("--private-dir", required=True, help="where the file lists of chosen series go (outside results/)")
    _add_settings(p)
    p.set_defaults(func=cmd_discover)

    p = sub.add_parser("pacs", help="a DICOMweb server (study.dicomweb): pull the study's scans, push SEG + SR back, "
                       "fetch the radiologist's reviews")
    pacs = p.add_subparsers(dest="pacs_command", required=True)
    p = pacs.add_parser("pull", help="find each mapped patient's studies (QIDO-RS), choose one series per study from "
                        "their metadata, retrieve only those (WADO-RS) into the private cache; writes what discover writes")
    p.add_argument("--dicomweb", required=True, help="study.dicomweb as JSON (url, credentials_env or netrc, workers)")
    p.add_argument("--clinical", required=True, help="clinical.tsv with a baseline_date column")
    p.add_argument("--patient-map", required=True, help="table dicom_patient_id -> patient_id")
    p.add_argument("--series-override", default=None, help="table scan_id -> series_uid (or exclude)")
    p.add_argument("--results-dir", required=True, help="results/<name>: writes manifest/ and qc/ingest_exclusions.tsv")
    p.add_argument("--private-dir", required=True, help="the private area: the cache of pulled files and the series lists")
    _add_settings(p)
    p.set_defaults(func=cmd_pacs_pull)
    p = pacs.add_parser("push", help="per scan of a patient: write the SR TID 1500 (identified for the PACS, "
                        "pseudonymised for results/) and STOW-RS the identified SEG + SR to the server")
    p.add_argument("--patient-id", required=True)
    p.add_argument("--scan-id", nargs="+", required=True, help="the patient's scans with a DICOM-SEG")
    p.add_argument("--private-seg-dir", required=True, help="private/<name>/dicom_seg/<patient_id>")
    p.add_argument("--public-seg-dir", required=True, help="results/<name>/dicom_seg/<patient_id>")
    p.add_argument("--lesions", required=True, help="tables/lesions.parquet")
    p.add_argument("--burden", required=True, help="tables/burden.parquet")
    p.add_argument("--uid-namespace", required=True, help="the study's name (UIDs are derived from it)")
    p.add_argument("--private-sr-dir", required=True, help="where the identified SRs go")
    p.add_argument("--public-sr-dir", required=True, help="where the pseudonymised SRs go (results/)")
    p.add_argument("--dicomweb", default=None, help="study.dicomweb as JSON; absent: write the SRs, push nothing")
    p.add_argument("--receipt", required=True, help="pacs/pushed/<patient_id>.tsv: what was sent")
    p.set_defaults(func=cmd_pacs_push)
    p = pacs.add_parser("fetch-reviews", help="download the radiologist's SEG / RTSTRUCT reviews of the study's scans "
                        "(those referencing a scan's series or our SEG of it, or matching --series-description) into "
                        "the review folder; what is there already is not fetched again")
    p.add_argument("--dicomweb", required=True, help="study.dicomweb as JSON (url, credentials_env or netrc)")
    p.add_argument("--scans-table", required=True, help="manifest/scans.tsv: each scan's series list (private)")
    p.add_argument("--private-seg-dir", required=True, help="private/<name>/dicom_seg: our identified SEGs")
    p.add_argument("--review-dir", required=True, help="review.dir, or private/<name>/reviews (keep it out of results/)")
    p.add_argument("--series-description", default=None, help="review.series_description (fnmatch pattern)")
    p.set_defaults(func=cmd_pacs_fetch_reviews)

    p = sub.add_parser("merge-exclusions", help="append exclusion tables (stage, patient_id, scan_id, reason) to another")
    p.add_argument("--into", required=True)
    p.add_argument("extra", nargs="*")
    p.set_defaults(func=cmd_merge_exclusions)

    p = sub.add_parser("segment", help="segment lesions and body composition (or import an external mask) of one "
                       "scan, or of a patient's scans in one process (--scan-id, --patient-id, --record)")
    p.add_argument("--image", required=True, nargs="+", help="image.nii.gz from ingest, one per scan")
    p.add_argument("--out", required=True, nargs="+", help="segmentation.nii.gz (labels as in labels.py), one per scan")
    p.add_argument("--scan-id", nargs="+", default=None, help="the scans' IDs, in the same order (a patient's job)")
    p.add_argument("--patient-id", default=None, help="the patient whose scans these are (a patient's job)")
    p.add_argument("--record", default=None, help="write the patient's segmentation record here (TSV, one row per scan)")
    p.add_argument("--mask", action="append", default=None,
                   help="external lesion mask replacing the engine's lesions: NIfTI (nonzero = lesion) or DICOM-SEG; "
                   "SCAN_ID=PATH with --scan-id (repeat per scan)")
    p.add_argument("--bodycomp", action="append", default=None,
                   help="TotalSegmentator --task tissue_types output folder replacing muscle/SAT/VAT; "
                   "SCAN_ID=PATH with --scan-id (repeat per scan)")
    p.add_argument("--overlay", nargs="+", default=None, help="write the QC overlay PNG here, one per scan")
    p.add_argument("--nifti-source", nargs="*", default=None,
                   help="scans whose source is a NIfTI file (their log says why they get no DICOM-SEG)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (the rule's threads)")
    _add_settings(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("segment-dicom", help="write segmentations as DICOM-SEG referencing their source CT series "
                       "(de-identified; optionally an identified copy for the hospital's PACS)")
    p.add_argument("--segmentation", required=True, nargs="+", help="segmentation.nii.gz, one per scan")
    p.add_argument("--series", required=True, nargs="+",
                   help="the scan's source, one per scan: a DICOM folder or a series list written by discover (JSON)")
    p.add_argument("--patient-id", required=True, help="the study's pseudonymous patient_id, written as the SEG's patient")
    p.add_argument("--uid-namespace", default="",
                   help="text the de-identified UIDs are derived from, with patient and scan (the pipeline: the study name)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="segmentation.dcm (one scan), de-identified")
    out.add_argument("--out-dir", help="folder for <scan_id>.dcm, one per scan (needs --scan-id), de-identified")
    pacs = p.add_mutually_exclusive_group()
    pacs.add_argument("--pacs-out", help="also write the identified SEG here (one scan; keep it out of results/)")
    pacs.add_argument("--pacs-dir", help="also write the identified SEGs here as <scan_id>.dcm (keep it out of results/)")
    p.add_argument("--scan-id", nargs="+", default=None, help="the scans' IDs, in the same order")
    p.add_argument("--model-name", default="tumorburden")
    _add_settings(p)  # the imaging section: a folder's series is chosen as ingest chose it
    p.set_defaults(func=cmd_segment_dicom)

    p = sub.add_parser("segment-train", help="train the demo segmentation model on a synthetic trial (a MONAI bundle)")
    p.add_argument("--out-dir", required=True, help="bundle folder to write")
    p.add_argument("--threads", type=int, default=None)
    _add_settings(p)
    p.set_defaults(func=cmd_segment_train)

    p = sub.add_parser("segment-evaluate", help="score segmentation engines per lesion site against synthetic truth")
    p.add_argument("--scans-dir", required=True, help="results/<name>/scans (image.nii.gz per scan)")
    p.add_argument("--truth-dir", required=True, help="results/<name>/truth")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--threads", type=int, default=None)
    _add_settings(p)
    p.set_defaults(func=cmd_segment_evaluate)

    p = sub.add_parser("measure", help="per-lesion measurements and body composition of one scan, or of a patient's "
                       "scans in one process with each one's rigid registration to the reference scan (--record)")
    p.add_argument("--image", required=True, nargs="+", help="image.nii.gz, one per scan")
    p.add_argument("--segmentation", required=True, nargs="+", help="segmentation.nii.gz, one per scan")
    p.add_argument("--patient-id", required=True)
    p.add_argument("--scan-id", required=True, nargs="+", help="the scans' IDs, in the same order")
    p.add_argument("--lesions-out", required=True, nargs="+", help="lesions.parquet, one per scan")
    p.add_argument("--tissue-out", required=True, nargs="+", help="tissue.parquet (muscle, SAT, VAT volumes), one per scan")
    p.add_argument("--transform-out", nargs="+", default=None,
                   help="to_reference.json (4x4 matrix: scan mm -> reference mm), one per scan (a patient's job)")
    p.add_argument("--reference-scan-id", default=None, help="the patient's reference (baseline) scan (a patient's job)")
    p.add_argument("--reference-image", default=None, help="its image.nii.gz (a patient's job)")
    p.add_argument("--record", default=None, help="write the patient's measurement record here (TSV, one row per scan)")
    _add_settings(p)
    p.set_defaults(func=cmd_measure)

    p = sub.add_parser("register", help="rigid alignment of one scan to its patient's reference scan (JSON)")
    p.add_argument("--image", required=True, help="image.nii.gz of the scan")
    p.add_argument("--reference-image", required=True, help="image.nii.gz of the patient's reference (baseline) scan")
    p.add_argument("--scan-id", required=True)
    p.add_argument("--reference-scan-id", required=True)
    p.add_argument("--out", required=True, help="to_reference.json (4x4 matrix: scan mm -> reference mm)")
    _add_settings(p)
    p.set_defaults(func=cmd_register)

    p = sub.add_parser("track", help="match lesions across each patient's scans: tables/lesions.parquet")
    p.add_argument("--scans-table", required=True, help="scans.tsv of the study (patient_id, scan_id, days)")
    p.add_argument("--lesions", nargs="+", required=True, help="per-scan lesions.parquet files")
    p.add_argument("--transforms", nargs="*", default=None,
                   help="per-scan to_reference.json files from `register` (without: scanner coordinates)")
    p.add_argument("--out", required=True)
    _add_settings(p)
    p.set_defaults(func=cmd_track)

    p = sub.add_parser("review", help="a radiologist's review of one scan (DICOM-SEG or RTSTRUCT): the reviewed "
                       "segmentation, its lesions, and its agreement with the model's")
    p.add_argument("--image", required=True, help="image.nii.gz of the scan")
    p.add_argument("--segmentation", required=True, help="the model's segmentation.nii.gz of the scan")
    p.add_argument("--ai-lesions", required=True, help="the model's lesions.parquet of the scan")
    p.add_argument("--review", required=True, help="the radiologist's DICOM-SEG or RT Structure Set")
    p.add_argument("--patient-id", required=True)
    p.add_argument("--scan-id", required=True)
    p.add_argument("--segmentation-out", required=True, help="review/segmentation.nii.gz")
    p.add_argument("--lesions-out", required=True, help="review/lesions.parquet")
    p.add_argument("--agreement-out", required=True, help="review/agreement.parquet (the scan's row of tables/review)")
    _add_settings(p)
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("review-table", help="every scan reviewed or not, with the model-vs-radiologist agreement: "
                       "tables/review.parquet")
    p.add_argument("--scans-table", required=True)
    p.add_argument("--lesions", nargs="+", required=True, help="the model's per-scan lesions.parquet files")
    p.add_argument("--agreement", nargs="*", default=None, help="review/agreement.parquet of each reviewed scan")
    p.add_argument("--passed-over", default="{}",
                   help="JSON: scan_id -> the reviews of the scan not taken, each '<name>: <why>'")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_review_table)

    p = sub.add_parser("burden", help="burden per scan: tables/burden.parquet")
    p.add_argument("--lesions", required=True, help="tables/lesions.parquet")
    p.add_argument("--tissue", nargs="+", required=True, help="per-scan tissue.parquet files")
    p.add_argument("--scans-table", required=True)
    p.add_argument("--out", required=True)
    _add_settings(p)
    p.set_defaults(func=cmd_burden)

    p = sub.add_parser("site-burden", help="burden per site (liver, lung, node, other): tables/site_burden.parquet "
                       "per scan, tables/site_kinetics.parquet per patient")
    p.add_argument("--lesions", required=True, help="tables/lesions.parquet")
    p.add_argument("--scans-table", required=True)
    p.add_argument("--out", required=True, help="tables/site_burden.parquet")
    p.add_argument("--kinetics", required=True, help="tables/site_kinetics.parquet")
    p.set_defaults(func=cmd_site_burden)

    p = sub.add_parser("body-composition", help="body composition per scan, whole-volume and at L3 (skeletal muscle "
                       "index, sarcopenia): tables/body_composition.parquet")
    p.add_argument("--tissue", nargs="+", required=True, help="per-scan tissue.parquet files")
    p.add_argument("--l3", nargs="+", required=True, help="per-scan l3.parquet files, in the same order")
    p.add_argument("--scans-table", required=True)
    p.add_argument("--clinical", required=True)
    p.add_argument("--out", required=True)
    _add_settings(p)
    p.set_defaults(func=cmd_body_composition)

    p = sub.add_parser("features", help="kinetics per patient: tables/features.parquet + exclusions")
    p.add_argument("--burden", required=True)
    p.add_argument("--lesions", required=True)
    p.add_argument("--clinical", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--exclusions", required=True, help="qc/exclusions.tsv")
    _add_settings(p)
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("survival", help="Kaplan-Meier, log-rank, Cox and C-index per cohort and endpoint; "
                       "or one analysis on any table: survival km|logrank|cox|zph|score|rmst|validate --table T ...")
    p.add_argument("--features")
    p.add_argument("--clinical")
    p.add_argument("--burden", help="tables/burden.parquet (time-varying Cox, landmark, RECIST SLD)")
    p.add_argument("--out-dir", help="results/<name>/survival")
    _add_settings(p)
    p.set_defaults(func=cmd_survival, action=None)
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    for name, text in (("km", "Kaplan-Meier curves, medians with CI (OUT) and curves (OUT_curve.csv)"),
                       ("logrank", "log-rank test (stratified with --strata, trend with --trend)"),
                       ("cox", "Cox model: HR, CI, Wald/LR/score tests"), ("zph", "cox.zph proportional-hazards tests"),
                       ("score", "Brier, IPA and AUC(t) with CIs of the Cox model and the null model at --times "
                                 "(riskRegression::Score)"),
                       ("rmst", "restricted mean survival time to --tau per --group, difference and ratio between "
                                "groups"),
                       ("validate", "bootstrap optimism-corrected Dxy, C, slope, R2, D (and Brier at --horizon) of "
                                    "the Cox model (rms::validate.cph)")):
        q = actions.add_parser(name, help=text)
        q.add_argument("--table", required=True, help="TSV (or .csv) with one row per patient")
        q.add_argument("--duration", required=True, help="time column")
        q.add_argument("--event", required=True, help="event column, 1 = event, 0 = censored")
        q.add_argument("--group", help="group column (km, logrank)")
        q.add_argument("--covariates", help="comma-separated model terms (cox, zph); text columns become indicators")
        q.add_argument("--strata", help="stratum column (logrank, cox, zph)")
        q.add_argument("--ci", choices=["log", "log-log"], default="log", help="KM band type (R's default: log)")
        q.add_argument("--ties", choices=["efron", "breslow"], default="efron")
        q.add_argument("--trend", action="store_true", help="logrank: test for trend over the sorted groups")
        q.add_argument("--times", help="km: survival at these comma-separated times; score: the horizons")
        q.add_argument("--tau", type=float, help="rmst: the restriction time (days)")
        q.add_argument("--horizon", help="validate: Brier at these comma-separated horizons")
        q.add_argument("--bootstrap", type=int, help="validate: bootstrap replicates (default: survival's bootstrap)")
        q.add_argument("--seed", type=int, help="validate: seed of the resampling (default: survival's seed)")
        q.add_argument("--alpha", type=float, default=0.05)
        q.add_argument("--out", required=True, help="output CSV")

    p = sub.add_parser("prediction", help="prediction models per cohort x endpoint x model set: bootstrap-validated "
                       "indices, calibration, Brier/IPA/AUC(t), decision curves, model comparison, RMST")
    p.add_argument("--features", required=True)
    p.add_argument("--clinical", required=True)
    p.add_argument("--burden", help="tables/burden.parquet (baseline RECIST SLD)")
    p.add_argument("--truth", help="truth/patients.parquet of a synthetic trial: adds truth_comparison.csv")
    p.add_argument("--out-dir", required=True, help="results/<name>/survival")
    _add_settings(p)
    p.set_defaults(func=cmd_prediction)

    p = sub.add_parser("dynamic", help="landmark super-model, dynamic predictions at every scan and their accuracy "
                       "(Brier, IPA, AUC per landmark) beside the baseline Cox model and any other dynamic model")
    p.add_argument("--features", required=True)
    p.add_argument("--clinical", required=True)
    p.add_argument("--burden", required=True, help="tables/burden.parquet (the scans' burden over time)")
    p.add_argument("--predictions", action="append", metavar="TABLE",
                   help="another model's predictions in the dynamic_prediction schema (Parquet or CSV; e.g. the "
                   "joint model's), scored beside the landmark model; repeatable")
    p.add_argument("--out-dir", required=True, help="results/<name>/survival")
    _add_settings(p)
    p.set_defaults(func=cmd_dynamic)

    p = sub.add_parser("joint", help="joint model of ln burden and survival per cohort x endpoint (ML, "
                       "Gauss-Hermite), with every patient's dynamic survival prediction at each scan")
    p.add_argument("--features", required=True)
    p.add_argument("--clinical", required=True)
    p.add_argument("--burden", required=True, help="tables/burden.parquet (the burden at every scan)")
    p.add_argument("--model", required=True, help="output: survival/joint_model.csv (+ .parquet)")
    p.add_argument("--predictions", required=True, help="output: survival/joint_predictions.parquet")
    _add_settings(p)
    p.set_defaults(func=cmd_joint)

    p = sub.add_parser("figures", help="publication figures from the tables: km, forest, c-index, td-auc, burden, "
                       "contact-sheet")
    figs = p.add_subparsers(dest="kind", required=True, metavar="KIND")
    for kind, text in (("km", "Kaplan-Meier curves with number at risk, per cohort x endpoint x grouping"),
                       ("forest", "forest plots of the Cox models, per endpoint"),
                       ("c-index", "C-index with CIs per feature (and differences, when given)")):
        f = figs.add_parser(kind, help=text)
        f.add_argument("--survival-dir", required=True, help="results/<name>/survival")
        if kind == "c-index":
            f.add_argument("--difference", default=None, help="c_index_difference.csv (optional)")
    f = figs.add_parser("prediction", help="calibration plots and decision curves per endpoint, model-comparison panel")
    f.add_argument("--survival-dir", required=True, help="results/<name>/survival (validation, calibration, decision_curve)")
    f = figs.add_parser("td-auc", help="time-dependent AUC curves, per endpoint")
    f.add_argument("--td-auc", required=True, help="survival/td_auc.csv")
    f = figs.add_parser("burden", help="spaghetti, waterfall and swimmer plots")
    f.add_argument("--burden", required=True, help="tables/burden.parquet")
    f.add_argument("--features", required=True, help="tables/features.parquet")
    f = figs.add_parser("dynamic", help="per patient and endpoint: burden over time above, the survival prediction "
                        "updated at each scan below")
    f.add_argument("--predictions", required=True, help="survival/dynamic_predictions.parquet")
    f.add_argument("--burden", required=True, help="tables/burden.parquet")
    f.add_argument("--patients", required=True, help="comma-separated study IDs")
    f.add_argument("--endpoints", default="pfs,os", help="comma-separated endpoints (default pfs,os)")
    f = figs.add_parser("contact-sheet", help="pages of per-scan QC overlays")
    f.add_argument("--overlays", nargs="+", required=True, help="qc/overlays/<scan_id>.png files, in order")
    for kind, f in figs.choices.items():
        f.add_argument("--out-dir", required=True, help="folder for the .pdf and .png files")
        if kind == "burden":
            f.add_argument("--clinical", required=True, help="clinical.tsv (cohorts, PFS, OS)")
        elif kind != "contact-sheet":
            f.add_argument("--clinical", default=None, help="clinical.tsv: the study's cohorts, for their colours")
        _add_settings(f)
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("score", help="score every stage of a synthetic run against its truth")
    p.add_argument("--truth-dir", required=True)
    p.add_argument("--results-dir", required=True)
    p.add_argument("--out", required=True, help="scores.csv")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("design", help="study design by simulation: power to detect the burden's hazard ratio "
                       "for death against the number of patients, true vs measured burden")
    p.add_argument("--settings", default=None,
                   help="the config's synthetic, design and figures sections as inline JSON or @config.yaml")
    p.add_argument("--scores", default=None, help="a run's truth/scores.csv: the segmentation error to simulate "
                   "(empty or left out: design.error)")
    p.add_argument("--workers", type=int, default=None, help="processes (default design.workers, else all CPUs)")
    p.add_argument("--out-dir", required=True, help="writes power.csv, trials.parquet, power_curve.{pdf,png}")
    p.set_defaults(func=cmd_design)

    p = sub.add_parser("check-study", help="run the workflow's checks of a config and its study (tables, IDs, "
                       "ranges, the files it names) without running anything")
    _add_settings(p)
    p.add_argument("--schemas", default=str(Path(__file__).resolve().parents[1] / "schemas"))
    p.set_defaults(func=cmd_check_study)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code. Without `argv` (the `tumorburden` console script, the rules'
    way in) the process ends here, see _exit."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s tumorburden {args.command}: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("numexpr").setLevel(logging.WARNING)  # its thread-count notice is noise in every log
    started = time.monotonic()
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, OSError, RuntimeError) as exc:  # user-facing failures
        if args.verbose:
            raise
        msg = " ".join(str(exc).split())
        print(f"tumorburden {args.command}: error: {msg}", file=sys.stderr)
        return 1 if argv is not None else _exit(1)
    logging.getLogger(__name__).info("done: %s", cost_since(started))
    return 0 if argv is not None else _exit(0)


def _exit(code: int):
    """Out of the process without the interpreter's teardown: freeing every module of torch, MONAI,
    pandas and matplotlib one by one cost a job 0.5 CPU-s (pandas) to 2.3 (MONAI) after its work was
    done and its files closed, which adds up over the hundreds of jobs of a study. Logging and the
    standard streams are flushed first; an exception still takes Python's normal way out."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cost_since(started: float) -> str:
    """Wall seconds since `started` and the CPU seconds of this process (imports included) and its
    waited-for children: what a job costs, to its end. Snakemake's benchmark files sample a job's CPU
    every 0.5 s for 15 s and then every 30 s, so they miss what a longer job spends after its last
    sample; this line in the job's log does not."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return f"{time.monotonic() - started:.1f} s wall, {cpu:.1f} CPU-s"


if __name__ == "__main__":  # python -m tumorburden.cli: the normal way out (a profiler writes its file then)
    sys.exit(main(sys.argv[1:]))
