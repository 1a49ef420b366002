"""Take a radiologist's review back from the DICOMweb server (`snakemake fetch_reviews` /
`tumorburden pacs fetch-reviews`): the corrected DICOM-SEG or RT Structure Set of a scan, stored on
the server beside the scan's CT and our SEG, downloaded into the review folder, where the next run
finds it (docs/review.md).

Which studies and series to look for comes from the private side only: each scan's source series
(the first file of discovery's series list, in the pull's cache) and our identified DICOM-SEG of the
scan (`private/<name>/dicom_seg/<patient_id>/<scan_id>.dcm`). The log names the server, scan_ids
and file names (a hash of the SOP Instance UID), never a hospital UID or ID.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from tumorburden.pacs.client import PacsError, connect
from tumorburden.paths import inside
from tumorburden.segment.review import choose_reviews, fetch_reviews, review_references

log = logging.getLogger(__name__)


def fetch_study_reviews(dicomweb: dict, scans_table: Path, private_seg_dir: Path, folder: Path,
                        series_description: str | None = None) -> dict[str, Path]:
    """Download the reviews of the study's scans from `study.dicomweb` into `folder` (a rerun fetches
    nothing already there), then match every review object of the folder to its scan as the next run
    will (`choose_reviews`: one that fits no scan stops here, naming the file; of two for one scan the
    newer is taken and the other logged as passed over). Returns scan_id -> its review file."""
    scans = pd.read_csv(scans_table, sep="\t", dtype=str, keep_default_na=False)
    images = dict(zip(scans["scan_id"], scans["image"]))
    segs_root = Path(private_seg_dir)
    ours = {s: str(inside(segs_root, segs_root / p / f"{s}.dcm")) for s, p in zip(scans["scan_id"], scans["patient_id"])}
    studies = review_references(images, ours)
    folder = Path(folder)
    before = {p.name for p in folder.glob("*.dcm")} if folder.is_dir() else set()
    pacs = connect(dicomweb)
    log.info("looking for reviews of %d scan(s) in %d study(ies) on DICOMweb server %s", len(images), len(studies),
             pacs.server.url)
    try:
        fetched = pacs.call("QIDO-RS / WADO-RS of the studies' SEG and RTSTRUCT series", fetch_reviews, pacs.client,
                            folder, studies, series_description)
    except PacsError as exc:
        raise PacsError(f"{exc}; the reviews downloaded so far are kept, and a re-run fetches only the others") from None
    new = sorted(p.name for p in fetched if p.name not in before)
    log.info("%d review object(s) on the server, %d new in %s", len(fetched), len(new), folder)
    choice = choose_reviews(folder, images, series_description, ours)
    for scan_id, taken in sorted(choice.taken.items()):
        log.info("scan %s: %s review %s%s", scan_id, taken.modality, taken.path.name,
                 " (new)" if taken.path.name in new else "")
        for obj, why in choice.passed_over.get(scan_id, []):
            log.info("scan %s: %s review %s passed over, %s", scan_id, obj.modality, obj.path.name, why)
    return choice.paths()
