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
