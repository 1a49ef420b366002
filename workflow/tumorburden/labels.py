"""The label map shared by segmentations and the synthetic truth (DESIGN.md, one place)."""

from pathlib import Path

BACKGROUND = 0
LESION = 1
MUSCLE = 2
SAT = 3  # subcutaneous adipose tissue
VAT = 4  # visceral adipose tissue
NODE_LESION = 5  # a lesion that is a lymph node (measured by its short axis under RECIST)
LUNG = 6
LIVER = 7

NAMES = {
    BACKGROUND: "background",
    LESION: "lesion",
    MUSCLE: "skeletal_muscle",
    SAT: "subcutaneous_fat",
    VAT: "visceral_fat",
    NODE_LESION: "lymph_node_lesion",
    LUNG: "lung",
    LIVER: "liver",
}

LESION_LABELS = (LESION, NODE_LESION)

# Names other tools give these structures (a model's output channels, a radiologist's segments
# and ROIs) -> our label. Keys are normalised by `normalise_name`.
ALIASES = {
    "background": BACKGROUND, "bg": BACKGROUND, "_background_": BACKGROUND,
    "lesion": LESION, "lesions": LESION, "tumor": LESION, "tumour": LESION,
    "metastasis": LESION, "metastases": LESION, "cancer": LESION, "neoplasm": LESION,
    "gtv": LESION,  # gross tumour volume, what radiotherapy contouring tools call a lesion
    "skeletal_muscle": MUSCLE, "muscle": MUSCLE,
    "subcutaneous_fat": SAT, "subcutaneous_adipose_tissue": SAT, "sat": SAT,
    "visceral_fat": VAT, "visceral_adipose_tissue": VAT, "vat": VAT, "torso_fat": VAT,
    "lymph_node_lesion": NODE_LESION, "node_lesion": NODE_LESION, "lymph_node_metastasis": NODE_LESION,
    "lung": LUNG, "lungs": LUNG,
    "liver": LIVER,
}


# Organs an organ model (e.g. TotalSegmentator's `total` task) provides that matter for where a
# metastasis sits, and the L3 vertebra that body composition is read at. They live in the organ map
# (scans/<scan_id>/organs.nii.gz, written when a model of `segmentation.models` provides any of
# them), never in segmentation.nii.gz, whose labels stay the eight above (the demo model's channels).
SPLEEN = 8
KIDNEY = 9
ADRENAL = 10
PANCREAS = 11
BRAIN = 12
BONE = 13  # every bone but the L3 vertebra: the other vertebrae, ribs, pelvis, long bones, skull
VERTEBRA_L3 = 14

ORGAN_NAMES = {
    SPLEEN: "spleen",
    KIDNEY: "kidney",
    ADRENAL: "adrenal_gland",
    PANCREAS: "pancreas",
    BRAIN: "brain",
    BONE: "bone",
    VERTEBRA_L3: "vertebra_L3",
}
ALL_NAMES = {**NAMES, **ORGAN_NAMES}

# The finding site (lesions.parquet `organ`) an organ label stands for; "node" (a lesion labelled
# 5), "soft_tissue" and "other" complete the vocabulary (lesions/measure.py, pacs/report.py).
SITE_OF_LABEL = {
    LUNG: "lung", LIVER: "liver", SPLEEN: "spleen", KIDNEY: "kidney", ADRENAL: "adrenal_gland",
    PANCREAS: "pancreas", BRAIN: "brain", BONE: "bone", VERTEBRA_L3: "bone",
}
ORGAN_LABELS = tuple(SITE_OF_LABEL)  # the labels of the organ map
ORGAN_MAP_FILE = "organs.nii.gz"  # the organ map's name, beside the scan's segmentation.nii.gz


def organ_map_path(segmentation) -> Path:
    """The scan's organ map: beside its segmentation.nii.gz (written only with an organ model)."""
    return Path(segmentation).with_name(ORGAN_MAP_FILE)


SITES = ("lung", "liver", "node", "spleen", "kidney", "adrenal_gland", "pancreas", "brain", "bone",
         "soft_tissue", "other")

# nnU-Net v2's reserved label name for voxels left unannotated in training (dataset.json): the
# highest number, and not one of the network's outputs (its LabelManager leaves it out of the heads)
NNUNET_IGNORE = "ignore"


def normalise_name(name: str) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def label_of_name(name: str, numbered: bool = False) -> int | None:
    """Our label for a structure's name (the eight of segmentation.nii.gz, then the organs of the
    organ map, ORGAN_ALIASES below), or None. `numbered`: a radiologist's numbered ROIs ("Lesion 3",
    "tumor_12", "GTV-2") count as the structure without the number."""
    key = normalise_name(name)
    keys = [key]
    if numbered:
        stem = key.rstrip("0123456789").rstrip("_")
        if stem != key:
            keys.append(stem)
    for k in keys:
        if k in ALIASES:
            return ALIASES[k]
        if k in ORGAN_ALIASES:
            return ORGAN_ALIASES[k]
    return None


_SIDES = ("left", "right")
_LOBES = ("upper_lobe_left", "lower_lobe_left", "upper_lobe_right", "middle_lobe_right", "lower_lobe_right")
_VERTEBRAE = ([f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)]
              + [f"L{i}" for i in range(1, 6)] + ["S1"])
_BONES = (["sacrum", "sternum", "skull", "costal_cartilages", "bone", "bones"]
          + [f"{b}_{side}" for b in ("hip", "femur", "humerus", "scapula", "clavicula", "clavicle")
             for side in _SIDES]
          + [f"rib_{side}_{i}" for side in _SIDES for i in range(1, 13)])
# An organ model's names for these structures (TotalSegmentator v2 `total` task, and plain names)
# -> our organ label. Keys are normalised by `normalise_name`. TotalSegmentator's other classes
# (heart, aorta, bowel, ...) map to none: a model entry lists them under `ignore` (config/README.md).
ORGAN_ALIASES = {
    **{name: LUNG for name in ("lung", "lungs", *(f"lung_{lobe}" for lobe in _LOBES), "lung_left", "lung_right")},
    "liver": LIVER,
    "spleen": SPLEEN,
    **{name: KIDNEY for name in ("kidney", "kidneys", "kidney_left", "kidney_right")},
    **{name: ADRENAL for name in ("adrenal_gland", "adrenal_glands", "adrenal", "adrenal_gland_left",
                                  "adrenal_gland_right")},
    "pancreas": PANCREAS,
    "brain": BRAIN,
    **{f"vertebrae_{v.lower()}": BONE for v in _VERTEBRAE if v != "L3"},
    **{name: BONE for name in _BONES},
    "vertebrae_l3": VERTEBRA_L3, "vertebra_l3": VERTEBRA_L3, "l3": VERTEBRA_L3,
}


def label_of_our_name(name: str) -> int | None:
    """One of our labels by its own name (ALL_NAMES, case-insensitive) or an alias of it."""
    key = normalise_name(name)
    for label, own in ALL_NAMES.items():
        if normalise_name(own) == key:
            return label
    return label_of_name(name)
