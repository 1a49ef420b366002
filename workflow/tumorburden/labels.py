"""The label map shared by segmentations and the synthetic truth (DESIGN.md, one place)."""

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


def normalise_name(name: str) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def label_of_name(name: str, numbered: bool = False) -> int | None:
    """Our label for a structure's name, or None. `numbered`: a radiologist's numbered ROIs
    ("Lesion 3", "tumor_12", "GTV-2") count as the structure without the number."""
    key = normalise_name(name)
    if key in ALIASES:
        return ALIASES[key]
    if numbered:
        stem = key.rstrip("0123456789").rstrip("_")
        if stem != key and stem in ALIASES:
            return ALIASES[stem]
    return None
