import numpy as np
import pytest
from PIL import Image

from tumorburden.figures import contact_sheet as cs


def overlays(tmp_path, n):
    paths = []
    for k in range(n):
        p = tmp_path / f"SYN-{k:03d}-S0.png"
        Image.fromarray(np.full((32, 48, 3), 40 * k, dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_every_overlay_is_on_exactly_one_page_labelled_with_its_scan(tmp_path):
    paths = overlays(tmp_path, 5)
    written = cs.write_contact_sheets(paths, tmp_path / "qc", {"contact_sheet_columns": 2, "contact_sheet_rows": 2,
                                                               "formats": ["png"]})
    assert [p.name for p in written] == ["contact_sheet_p1.png", "contact_sheet_p2.png"]
    fig, names = cs.contact_sheet_figure(paths[:4], 2)
    assert names == ["SYN-000-S0", "SYN-001-S0", "SYN-002-S0", "SYN-003-S0"]
    assert [t.get_text() for t in fig.texts if (t.get_gid() or "").startswith("scan:")] == names
    assert len([ax for ax in fig.axes if ax.images]) == 4
    assert cs.n_pages(5, 2, 2) == 2 and cs.n_pages(0, 2, 2) == 1


def test_a_missing_overlay_is_a_one_line_error_naming_it(tmp_path):
    paths = overlays(tmp_path, 2) + [tmp_path / "SYN-009-S1.png"]
    with pytest.raises(FileNotFoundError, match=r"SYN-009-S1.png: QC overlay not found \(1 missing"):
        cs.write_contact_sheets(paths, tmp_path / "qc")
