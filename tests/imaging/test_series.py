"""Series choice among the series of one study, and the `tumorburden ingest` command."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from dicomgen import write_series

from tumorburden.cli import main
from tumorburden.imaging.ingest import ingest

CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One CT study as a PACS exports it: a localizer, reconstructions, other phases, an MR."""
    root = tmp_path_factory.mktemp("study")
    w = dict(n=6)
    write_series(root / "1", series_number=1, description="Topogram 0.6 T20f", n=2,
                 image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"], uid="1.2.9.1")
    write_series(root / "2", series_number=2, description="Cor 3mm", iop=CORONAL, step=3.0, uid="1.2.9.2", **w)
    write_series(root / "3", series_number=3, description="Thorax 1.0 B70f lung", step=1.0, kernel="B70f", uid="1.2.9.3", **w)
    write_series(root / "4", series_number=4, description="Abdomen arterial 1.0", step=1.0, uid="1.2.9.4", **w)
    hu = write_series(root / "5", series_number=5, description="Abdomen portal venous 3.0", step=3.0, uid="1.2.9.5", seed=5, **w)
    write_series(root / "6", series_number=6, description="Abdomen portal venous 5.0", step=5.0, uid="1.2.9.6", **w)
    write_series(root / "7", series_number=7, description="Abdomen portal venous 0.3", step=0.3, uid="1.2.9.7", **w)
    write_series(root / "8", series_number=8, description="Abdomen portal venous 2.0", step=2.0, skip=(2,), uid="1.2.9.8", **w)
    write_series(root / "9", series_number=9, modality="MR", description="T1 venous", step=3.0, uid="1.2.9.9", **w)
    return root, hu


def test_choice_and_reasons(study, tmp_path):
    root, hu = study
    out, qc = tmp_path / "image.nii.gz", tmp_path / "qc.json"
    ingest(root, out, qc_path=qc)
    np.testing.assert_array_equal(np.asarray(nib.load(out).dataobj), hu)
    report = json.loads(qc.read_text())
    assert report["series"]["series_number"] == 5 and report["series"]["phase_hint"] == "portal"
    verdicts = {o["series"].split()[0]: (o["status"], o["reason"]) for o in report["other_series"]}
    assert verdicts["#1"] == ("rejected", "localizer/scout")
    assert verdicts["#2"] == ("rejected", "coronal slices, not axial")
    assert verdicts["#3"] == ("passed_over", "description/kernel matches an avoided keyword; chose #5 'Abdomen portal venous 3.0'")
    assert verdicts["#4"] == ("passed_over", "no contrast-phase keyword, #5 'Abdomen portal venous 3.0' has one")
    assert verdicts["#6"] == ("passed_over", "thicker slices (5 mm) than #5 'Abdomen portal venous 3.0' (3 mm)")
    assert verdicts["#7"] == ("rejected", "slice thickness 0.3 mm outside [0.5, 5] mm")
    assert verdicts["#8"][0] == "rejected" and verdicts["#8"][1].startswith("missing_slices: about 1 missing slice(s)")
    assert verdicts["#9"] == ("rejected", "modality MR, not CT")


def test_rules_are_configurable(study, tmp_path):
    root, _ = study
    qc = tmp_path / "qc.json"
    ingest(root, tmp_path / "image.nii.gz", qc_path=qc, settings={"phase_keywords": ["arterial"]})
    assert json.loads(qc.read_text())["series"]["series_number"] == 4
    ingest(root, tmp_path / "image.nii.gz", qc_path=qc, settings={"irregular_slices": "resample"})
    report = json.loads(qc.read_text())  # the 2 mm series with a missing slice is now usable and thinnest
    assert report["series"]["series_number"] == 8 and report["resampled"]


def test_cli_ingest_success_and_one_line_failure(study, tmp_path, capsys):
    root, hu = study
    out = tmp_path / "ct.nii.gz"
    assert main(["ingest", str(root), "--out", str(out), "--qc", str(tmp_path / "qc.json"), "--dtype", "float32"]) == 0
    img = nib.load(out)
    assert img.get_data_dtype() == np.float32
    np.testing.assert_array_equal(img.get_fdata(), hu)
    capsys.readouterr()
    assert main(["ingest", str(root / "8"), "--out", str(tmp_path / "bad.nii.gz")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tumorburden ingest: error: ")
    assert "missing_slices: about 1 missing slice(s): gap(s) between slice001.dcm and slice003.dcm" in err
    assert not (tmp_path / "bad.nii.gz").exists()
    assert main(["ingest", str(root / "9"), "--out", str(tmp_path / "mr.nii.gz")]) == 1
    assert "no CT series (modalities: MR)" in capsys.readouterr().err


def test_source_files_are_the_chosen_series(study, tmp_path):
    from tumorburden.imaging.ingest import source_files

    root, _ = study
    assert source_files(root) == sorted(str(p) for p in (root / "5").iterdir())
    listing = tmp_path / "S1.json"
    listing.write_text(json.dumps({"scan_id": "S1", "series_uid": "1.2.9.6", "files": ["a", "b"]}))
    assert source_files(listing) == ["a", "b"]


# --- a DICOMweb server's metadata (DICOM JSON) read into discovery's header records --------------


def _json_records(item: dict, path: str = "/cache/x.dcm"):
    """The record through DicomJson and the record through pydicom's own JSON conversion."""
    import pydicom

    from tumorburden.imaging.series import JSON_TAGS, DicomJson, header_record

    by_pydicom = header_record(pydicom.Dataset.from_json({k: item[k] for k in JSON_TAGS if k in item}), path)
    return header_record(DicomJson(item), path), by_pydicom


def _metadata_of(path) -> dict:
    """What a server answers as an instance's metadata: its DICOM JSON, pixel data by reference."""
    import pydicom

    return pydicom.dcmread(path).to_json_dict(bulk_data_element_handler=lambda elem: "http://pacs/bulk",
                                               bulk_data_threshold=1024)


def test_dicom_json_records_equal_pydicom_conversion(tmp_path):
    """The records read straight from the JSON values are the ones pydicom's Dataset.from_json gives,
    for the shapes servers send: numbers or strings for DS/IS, names with ideographic groups,
    empty values, several values, missing elements."""
    utf8 = {"SpecificCharacterSet": "ISO_IR 192"}
    write_series(tmp_path / "a", n=2, patient_name="Yamada^Tarou=山田^太郎=やまだ^たろう",
                 description="Abdomen portal venous", kernel="B30f", thickness=2.0, overrides={0: utf8, 1: utf8})
    write_series(tmp_path / "b", n=1, signed=False, bits_stored=12, slope=2.0, intercept=-1000.0,
                 image_type=["DERIVED", "SECONDARY", "AXIAL"])
    items = [_metadata_of(p) for p in sorted(tmp_path.rglob("*.dcm"))]
    variants = []
    for item in items:
        variants.append(item)
        as_strings = json.loads(json.dumps(item))
        for key in ("00200032", "00280030", "00180050", "00281052", "00200013"):  # DS and IS as strings
            as_strings[key]["Value"] = [str(v) for v in as_strings[key]["Value"]]
        variants.append(as_strings)
        empty = json.loads(json.dumps(item))
        for key in ("00100010", "00080090", "00180050", "00181210", "00280030"):
            empty[key] = {"vr": empty[key]["vr"]}  # present without a value
        variants.append(empty)
        missing = {k: v for k, v in item.items() if k not in ("00280030", "00200037", "00080008", "00180050")}
        variants.append(missing)
        empty_list = json.loads(json.dumps(item))
        empty_list["00281053"]["Value"] = []
        variants.append(empty_list)
    for item in variants:
        fast, reference = _json_records(item)
        assert fast == reference
    first = _json_records(items[0])[0]
    assert first["status"] == "image" and first["patient_name"] == "Yamada^Tarou=山田^太郎=やまだ^たろう"
    assert len(first["slices"]) == 1 and first["slices"][0].pixel_spacing == (0.7, 0.9)


def test_dicom_json_not_plain_goes_through_pydicom(tmp_path):
    """Sequences, inline binary, bulk data or a value of the wrong JSON type are pydicom's to
    convert: DicomJson refuses them and json_header_record still gives pydicom's record."""
    from dicomgen import write_enhanced

    from tumorburden.imaging.series import DicomJson, NotPlainJson, json_header_record, read_header

    write_enhanced(tmp_path / "mf", n=3)
    (enhanced,) = sorted((tmp_path / "mf").iterdir())
    item = _metadata_of(enhanced)
    with pytest.raises(NotPlainJson):
        DicomJson(item)
    record = json_header_record(item, str(enhanced))
    on_disk = read_header(str(enhanced))
    assert len(record["slices"]) == 3
    assert [s.ipp for s in record["slices"]] == [s.ipp for s in on_disk["slices"]]

    write_series(tmp_path / "s", n=1)
    (path,) = sorted((tmp_path / "s").iterdir())
    item = _metadata_of(path)
    for key, odd in (("00280010", {"vr": "US", "Value": ["512"]}),  # a number as a string
                     ("00100010", {"vr": "PN", "Value": ["Doe^Jane"]}),  # a name not as an object
                     ("00180050", {"vr": "DS", "InlineBinary": "MS4yNQ=="}),
                     ("0008103E", {"vr": "LO", "Value": [True]}),
                     ("00181210", {"vr": "SH", "Value": "B30f"})):  # a value not in a list
        bad = {**item, key: odd}
        with pytest.raises(NotPlainJson):
            DicomJson(bad)
