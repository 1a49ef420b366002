"""Push to a real Orthanc: SEG + SR of each scan stored, a re-push replaces, faults name the scan."""

from __future__ import annotations

import shutil

import pandas as pd
import pydicom
import pytest
from test_report import BURDEN, LESIONS, scan  # noqa: F401  (the scan fixture: a CT series and both SEG copies)

from tumorburden import tables
from tumorburden.pacs.client import PacsError, connect
from tumorburden.pacs.push import push_patient


def _study(scan, tmp_path):  # noqa: F811
    for kind in ("private", "public"):
        (tmp_path / f"{kind}_seg").mkdir()
        shutil.copy(scan / f"{kind}_seg.dcm", tmp_path / f"{kind}_seg" / "P01_d0.dcm")
    tables.write(LESIONS, tmp_path / "lesions.parquet", "lesions")
    burden = pd.DataFrame([{**BURDEN.to_dict(), "patient_id": "P01", "scan_id": "P01_d0", "days": 0.0, "n_new_lesions": 0,
                            "pct_change_volume": 0.0, "pct_change_sld": 0.0, "recist_response": "",
                            "volumetric_response": ""}])
    tables.write(burden, tmp_path / "burden.parquet", "burden")


def _push(tmp_path, dicomweb):
    return push_patient("P01", ["P01_d0"], private_seg_dir=tmp_path / "private_seg", public_seg_dir=tmp_path / "public_seg",
                        lesions_path=tmp_path / "lesions.parquet", burden_path=tmp_path / "burden.parquet",
                        namespace="trial", private_sr_dir=tmp_path / "private_sr", public_sr_dir=tmp_path / "public_sr",
                        dicomweb=dicomweb, receipt=tmp_path / "pushed.tsv")


def test_push_stores_seg_and_sr_once(orthanc, scan, tmp_path):  # noqa: F811
    _study(scan, tmp_path)
    table = _push(tmp_path, {"url": orthanc.url})
    assert list(table["n_lesions"]) == [2] and list(table["server"]) == [orthanc.url]
    assert tables.read(tmp_path / "pushed.tsv", "pushed")["scan_id"].tolist() == ["P01_d0"]
    pacs = connect({"url": orthanc.url})
    (study,) = pacs.studies_of("HOSP-77")
    study_uid = study["0020000D"]["Value"][0]
    sent = {pydicom.dcmread(tmp_path / "private_seg/P01_d0.dcm").SOPInstanceUID,
            pydicom.dcmread(tmp_path / "private_sr/P01_d0.dcm").SOPInstanceUID}
    assert {m: len(pacs.series_of(study_uid, modality=m)) for m in ("SEG", "SR")} == {"SEG": 1, "SR": 1}
    _push(tmp_path, {"url": orthanc.url})  # again: the same UIDs replace, nothing is added
    held = set()
    for m in ("SEG", "SR"):
        for series in pacs.series_of(study_uid, modality=m):
            held |= {ds.SOPInstanceUID for ds in pacs.iter_series(study_uid, series["0020000E"]["Value"][0])}
    assert held == sent


def test_push_to_a_stopped_server_names_the_server_and_patient(orthanc, scan, tmp_path):  # noqa: F811
    _study(scan, tmp_path)
    url = orthanc.url
    orthanc.kill()
    with pytest.raises(PacsError) as err:
        _push(tmp_path, {"url": url})
    msg = str(err.value)
    assert "\n" not in msg and url in msg and "unreachable" in msg and msg.startswith("patient P01:")
