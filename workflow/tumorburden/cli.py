"""`tumorburden <stage> ...`: the commands the Snakemake rules call, usable on their own.

Imports are lazy so that a light stage does not pay for a heavy one's libraries.
A failure prints one line, `tumorburden <stage>: error: <what> (<what to do>)`, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
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
    from tumorburden.imaging.ingest import ingest

    files, uid, label, redact = None, a.series_uid, None, None
    if a.series_list:  # written by discovery: the files of the scan's chosen series
        listing = json.loads(Path(a.series_list).read_text())
        files, uid, label, redact = listing["files"], listing["series_uid"], listing["scan_id"], listing.get("redact")
    elif not a.series:
        raise ValueError("give a SERIES_DIR (or NIfTI file), or --series-list")
    ingest(Path(a.series) if a.series else None, Path(a.out), qc_path=Path(a.qc) if a.qc else None,
           settings=_settings(a.settings), files=files, series_uid=uid, dtype=a.dtype, label=label, redact=redact)


def cmd_discover(a):
    from tumorburden.imaging.discover import discover
    from tumorburden.study import baseline_dates, read_patient_map, read_series_override, read_table

    clinical = read_table(Path(a.clinical))
    override = read_series_override(Path(a.series_override)) if a.series_override else None
    discover(Path(a.dicom_root), read_patient_map(Path(a.patient_map), clinical),
             baseline_dates(clinical, Path(a.clinical)), Path(a.results_dir), Path(a.private_dir),
             {**_ingest_defaults(), **_settings(a.settings)}, override=override)


def _ingest_defaults() -> dict:
    from tumorburden.imaging.ingest import DEFAULTS

    return DEFAULTS


def cmd_merge_exclusions(a):
    from tumorburden.imaging.discover import merge_exclusions

    merge_exclusions(Path(a.into), [Path(p) for p in a.extra])


def cmd_segment(a):
    from tumorburden.segment.run import segment

    segment(Path(a.image), Path(a.out), mask_path=Path(a.mask) if a.mask else None,
            settings=_settings(a.settings), bodycomp_path=Path(a.bodycomp) if a.bodycomp else None,
            overlay_path=Path(a.overlay) if a.overlay else None, threads=a.threads)


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
    from tumorburden.lesions.measure import measure_scan

    measure_scan(Path(a.image), Path(a.segmentation), a.patient_id, a.scan_id,
                 Path(a.lesions_out), Path(a.tissue_out), settings=_settings(a.settings))


def cmd_register(a):
    from tumorburden.lesions.register import register_scan

    register_scan(Path(a.image), Path(a.reference_image), a.scan_id, a.reference_scan_id, Path(a.out),
                  settings=_settings(a.settings))


def cmd_track(a):
    from tumorburden.lesions.track import track_study

    track_study(Path(a.scans_table), [Path(p) for p in a.lesions], Path(a.out),
                settings=_settings(a.settings),
                transform_paths=[Path(p) for p in a.transforms] if a.transforms else None)


def cmd_burden(a):
    from tumorburden.kinetics.burden import write_burden

    write_burden(Path(a.lesions), [Path(p) for p in a.tissue], Path(a.scans_table), Path(a.out),
                 settings=_settings(a.settings))


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
    scans = f"{len(study.scans)} scans" if study.scans is not None else f"scans to be discovered under {study.dicom_root}"
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

    p = sub.add_parser("ingest", help="read the diagnostic CT series of a folder (or a NIfTI) into an HU NIfTI with its RAS affine")
    p.add_argument("series", nargs="?", help="a folder holding DICOM files (any layout, several series allowed), or a NIfTI file")
    p.add_argument("--out", required=True, help="OUT.nii.gz")
    p.add_argument("--qc", default=None, help="write the ingest QC report here (JSON)")
    p.add_argument("--series-uid", default=None, help="read this series instead of choosing one")
    p.add_argument("--series-list", default=None, help="a series list written by `tumorburden discover` (pipeline use)")
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

    p = sub.add_parser("merge-exclusions", help="append exclusion tables (stage, patient_id, scan_id, reason) to another")
    p.add_argument("--into", required=True)
    p.add_argument("extra", nargs="*")
    p.set_defaults(func=cmd_merge_exclusions)

    p = sub.add_parser("segment", help="segment lesions and body composition (or import an external mask)")
    p.add_argument("--image", required=True, help="image.nii.gz from ingest")
    p.add_argument("--out", required=True, help="segmentation.nii.gz (labels as in DESIGN.md)")
    p.add_argument("--mask", default=None,
                   help="external lesion mask replacing the engine's lesions: NIfTI (nonzero = lesion) or DICOM-SEG")
    p.add_argument("--bodycomp", default=None,
                   help="TotalSegmentator --task tissue_types output folder replacing muscle/SAT/VAT")
    p.add_argument("--overlay", default=None, help="write the QC overlay PNG here")
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

    p = sub.add_parser("measure", help="per-lesion measurements and body composition of one scan")
    p.add_argument("--image", required=True)
    p.add_argument("--segmentation", required=True)
    p.add_argument("--patient-id", required=True)
    p.add_argument("--scan-id", required=True)
    p.add_argument("--lesions-out", required=True, help="lesions.parquet")
    p.add_argument("--tissue-out", required=True, help="tissue.parquet (muscle, SAT, VAT volumes)")
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

    p = sub.add_parser("burden", help="burden per scan: tables/burden.parquet")
    p.add_argument("--lesions", required=True, help="tables/lesions.parquet")
    p.add_argument("--tissue", nargs="+", required=True, help="per-scan tissue.parquet files")
    p.add_argument("--scans-table", required=True)
    p.add_argument("--out", required=True)
    _add_settings(p)
    p.set_defaults(func=cmd_burden)

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
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format=f"%(asctime)s tumorburden {args.command}: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("numexpr").setLevel(logging.WARNING)  # its thread-count notice is noise in every log
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, OSError, RuntimeError) as exc:  # user-facing failures
        if args.verbose:
            raise
        msg = " ".join(str(exc).split())
        print(f"tumorburden {args.command}: error: {msg}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
