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
    """--settings takes inline JSON or @file.json (a YAML or JSON file)."""
    if not text:
        return {}
    if text.startswith("@"):
        import yaml

        return yaml.safe_load(Path(text[1:]).read_text()) or {}
    return json.loads(text)


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
    from tumorburden.synth.render import render_scan

    render_scan(_settings(a.settings), a.scan_id, Path(a.dicom_dir), Path(a.truth_dir))


def cmd_ingest(a):
    from tumorburden.imaging.ingest import ingest

    ingest(Path(a.series), Path(a.out), qc_path=Path(a.qc) if a.qc else None,
           settings=_settings(a.settings))


def cmd_segment(a):
    from tumorburden.segment.run import segment

    segment(Path(a.image), Path(a.out), mask_path=Path(a.mask) if a.mask else None,
            settings=_settings(a.settings), bodycomp_path=Path(a.bodycomp) if a.bodycomp else None,
            overlay_path=Path(a.overlay) if a.overlay else None, threads=a.threads)


def cmd_segment_dicom(a):
    from tumorburden.segment.dicomseg import write_dicom_seg

    write_dicom_seg(Path(a.segmentation), Path(a.series), Path(a.out), model_name=a.model_name)


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


def cmd_track(a):
    from tumorburden.lesions.track import track_study

    track_study(Path(a.scans_table), [Path(p) for p in a.lesions], Path(a.out),
                settings=_settings(a.settings))


def cmd_burden(a):
    from tumorburden.kinetics.burden import write_burden

    write_burden(Path(a.lesions), [Path(p) for p in a.tissue], Path(a.scans_table), Path(a.out),
                 settings=_settings(a.settings))


def cmd_features(a):
    from tumorburden.kinetics.features import write_features

    write_features(Path(a.burden), Path(a.lesions), Path(a.clinical), Path(a.out),
                   Path(a.exclusions), settings=_settings(a.settings))


def cmd_survival(a):
    from tumorburden.survival.analysis import write_survival

    write_survival(Path(a.features), Path(a.clinical), Path(a.out_dir),
                   settings=_settings(a.settings))


def cmd_figures(a):
    from tumorburden.figures.km import write_km_figures

    write_km_figures(Path(a.survival_dir), Path(a.out_dir), settings=_settings(a.settings))


def cmd_score(a):
    from tumorburden.synth.score import write_scores

    write_scores(Path(a.truth_dir), Path(a.results_dir), Path(a.out))


def cmd_check_study(a):
    from tumorburden.study import config_problem, load_study

    config = _settings(a.settings)
    problem = config_problem(config, Path(a.schemas))
    if problem:
        raise ValueError(problem)
    study = load_study(config, Path(a.schemas))
    print(f"ok: {len(study.clinical)} patients, {len(study.scans)} scans")


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

    p = sub.add_parser("synth-render", help="render one synthetic scan as a DICOM CT series + truth masks")
    _add_settings(p)
    p.add_argument("--scan-id", required=True)
    p.add_argument("--dicom-dir", required=True, help="folder for the series (one file per slice)")
    p.add_argument("--truth-dir", required=True, help="folder for labels.nii.gz and lesions.nii.gz")
    p.set_defaults(func=cmd_synth_render)

    p = sub.add_parser("ingest", help="read a DICOM CT series (or NIfTI) into an HU NIfTI with its RAS affine")
    p.add_argument("series", help="a DICOM series folder, or a NIfTI file")
    p.add_argument("--out", required=True, help="OUT.nii.gz")
    p.add_argument("--qc", default=None, help="write the ingest QC report here (JSON)")
    _add_settings(p)
    p.set_defaults(func=cmd_ingest)

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

    p = sub.add_parser("segment-dicom", help="write a segmentation as DICOM-SEG referencing its source CT series")
    p.add_argument("--segmentation", required=True, help="segmentation.nii.gz")
    p.add_argument("--series", required=True, help="the source DICOM series folder")
    p.add_argument("--out", required=True, help="segmentation.dcm")
    p.add_argument("--model-name", default="tumorburden")
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

    p = sub.add_parser("track", help="match lesions across each patient's scans: tables/lesions.parquet")
    p.add_argument("--scans-table", required=True, help="scans.tsv of the study (patient_id, scan_id, days)")
    p.add_argument("--lesions", nargs="+", required=True, help="per-scan lesions.parquet files")
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

    p = sub.add_parser("survival", help="Kaplan-Meier, log-rank, Cox and C-index per cohort and endpoint")
    p.add_argument("--features", required=True)
    p.add_argument("--clinical", required=True)
    p.add_argument("--out-dir", required=True, help="results/<name>/survival")
    _add_settings(p)
    p.set_defaults(func=cmd_survival)

    p = sub.add_parser("figures", help="Kaplan-Meier figures with number at risk, from the survival tables")
    p.add_argument("--survival-dir", required=True)
    p.add_argument("--out-dir", required=True)
    _add_settings(p)
    p.set_defaults(func=cmd_figures)

    p = sub.add_parser("score", help="score every stage of a synthetic run against its truth")
    p.add_argument("--truth-dir", required=True)
    p.add_argument("--results-dir", required=True)
    p.add_argument("--out", required=True, help="scores.csv")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("check-study", help="validate a study's clinical.tsv and scans.tsv without running anything")
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
