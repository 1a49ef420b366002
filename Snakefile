# tumorburden: CT scans of a trial -> tumour burden -> kinetics -> survival.
# Usage: snakemake --cores N [--configfile my.yaml]   (see README.md)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/imaging.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/lesions.smk"
include: "workflow/rules/review.smk"
include: "workflow/rules/kinetics.smk"
include: "workflow/rules/survival.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/pacs.smk"
include: "workflow/rules/design.smk"


rule all:
    input:
        final_targets(),
        discovered_scan_targets,
    default_target: True
