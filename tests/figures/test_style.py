import matplotlib
import pytest

from tumorburden.figures import style


def test_a_cohort_keeps_its_colour_whatever_the_other_cohorts_of_a_figure():
    study = ["melanoma", "lung", "renal"]
    full = style.cohort_colours(study)
    assert style.cohort_colours(list(reversed(study))) == full
    assert full["all"] == "#000000"
    assert len({full[c] for c in study}) == 3
    assert style.cohort_colours(study, {"lung": "#123456"})["lung"] == "#123456"


def test_response_colours_are_distinct_and_from_the_colour_blind_safe_palette():
    allowed = set(style.OKABE_ITO.values()) | {style.GREY}
    assert set(style.RESPONSE_COLOURS) == set(style.RESPONSE_ORDER)
    assert len(set(style.RESPONSE_COLOURS.values())) == len(style.RESPONSE_ORDER)
    assert set(style.RESPONSE_COLOURS.values()) <= allowed
    # cohorts never take the colour of a response category
    assert not set(style.COHORT_PALETTE) & set(style.RESPONSE_COLOURS.values())


def test_the_style_file_embeds_truetype_fonts_and_uses_the_okabe_ito_cycle():
    with style.style_context():
        assert matplotlib.rcParams["pdf.fonttype"] == 42
        assert matplotlib.rcParams["savefig.dpi"] == 300
        cycle = [c.lower() for c in matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]]
    assert {f"#{c}" if not c.startswith("#") else c for c in cycle} <= {v.lower() for v in style.OKABE_ITO.values()}


@pytest.mark.parametrize("name, expected", [("baseline_volume_ml:median", "baseline_volume_ml-median"),
                                            ("none", "none"), ("recist bor", "recist-bor")])
def test_slug(name, expected):
    assert style.slug(name) == expected


def test_saving_twice_gives_the_same_bytes_without_timestamps(tmp_path):
    def draw():
        with style.style_context():
            fig = style.new_figure(style.SINGLE_COLUMN_MM, 50)
            ax = fig.add_subplot()
            ax.plot([0, 1, 2], [1, 0.5, 0.2], label="\u2264 median")
            ax.legend()
        return fig

    a = style.save(draw(), tmp_path / "a" / "fig.v1")
    b = style.save(draw(), tmp_path / "b" / "fig.v1")
    assert [p.name for p in a] == ["fig.v1.pdf", "fig.v1.png"]  # a dot in the stem is kept
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes()
    pdf = a[0].read_bytes()
    assert b"/CreationDate" not in pdf and b"/FontFile2" in pdf
    assert b"Software" not in a[1].read_bytes()
