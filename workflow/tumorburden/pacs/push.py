"""Push a patient's results to the DICOMweb server: per scan the DICOM-SEG (written by
segment_dicom) and the SR TID 1500 built here (`report.write_reports`), by STOW-RS.

The objects sent are the identified copies in the private area (the PACS files them under the
hospital's patient and study); the pseudonymised SR goes under results/ beside the
de-identified SEG. Their UIDs are derived from the scan, so pushing again replaces what the
server holds (a server that keeps the first copy of a SOP Instance UID, as Orthanc does unless
"OverwriteInstances" is on, still holds one copy, never two).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd
import pydicom

from tumorburden import tables
from tumorburden.pacs.client import PacsError, connect
from tumorburden.pacs.report import write_reports
from tumorburden.paths import inside

log = logging.getLogger(__name__)


def push_patient(patient_id: str, scan_ids: list[str], *, private_seg_dir: Path, public_seg_dir: Path,
                 lesions_path: Path, burden_path: Path, namespace: str, private_sr_dir: Path, public_sr_dir: Path,
                 dicomweb: dict | None, receipt: Path) -> pd.DataFrame:
    """Write each scan's SR (both copies) and STOW-RS the SEG + SR of each scan when `dicomweb`."""
    lesions = tables.read(lesions_path, "lesions")
    burden = tables.read(burden_path, "burden").set_index("scan_id", drop=False)
    try:
        pacs = connect(dicomweb, push=True) if dicomweb else None
    except PacsError as exc:
        raise PacsError(f"patient {patient_id}: {exc}; nothing was pushed") from None
    rows = []
    for i, scan_id in enumerate(scan_ids, 1):
        private_seg = inside(Path(private_seg_dir), Path(private_seg_dir) / f"{scan_id}.dcm")
        public_seg = inside(Path(public_seg_dir), Path(public_seg_dir) / f"{scan_id}.dcm")
        for path in (private_seg, public_seg):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: the DICOM-SEG of scan {scan_id} is missing; run segment_dicom "
                                        "(segmentation.dicom_seg must be true)")
        mine = lesions[(lesions["patient_id"] == patient_id) & (lesions["scan_id"] == scan_id)]
        private_sr = inside(Path(private_sr_dir), Path(private_sr_dir) / f"{scan_id}.dcm")
        public_sr = inside(Path(public_sr_dir), Path(public_sr_dir) / f"{scan_id}.dcm")
        t0 = time.perf_counter()
        write_reports(private_seg, public_seg, mine, burden.loc[scan_id] if scan_id in burden.index else None,
                      patient_id=patient_id, scan_id=scan_id, namespace=f"{namespace}/{patient_id}/{scan_id}",
                      private_out=private_sr, public_out=public_sr)
        built = time.perf_counter() - t0
        if pacs is not None:
            t0 = time.perf_counter()
            try:
                pacs.store([pydicom.dcmread(private_seg), pydicom.dcmread(private_sr)],
                           what=f"scan {scan_id}'s SEG and SR")
            except PacsError as exc:
                raise PacsError(f"patient {patient_id}, scan {scan_id}: {exc}; re-run push_results to send it "
                                "again (the same UIDs: nothing is duplicated)") from None
            log.info("scan %s (%d/%d): SR built in %.2f s, SEG + SR stored in %.2f s", scan_id, i, len(scan_ids),
                     built, time.perf_counter() - t0)
        rows.append({"patient_id": patient_id, "scan_id": scan_id, "n_lesions": int((mine["volume_ml"] > 0).sum()),
                     "seg_bytes": private_seg.stat().st_size, "sr_bytes": private_sr.stat().st_size,
                     "server": pacs.server.url if pacs is not None else ""})
    table = pd.DataFrame(rows, columns=list(tables.SCHEMAS["pushed"]))
    tables.write(table, receipt, "pushed")
    return table
