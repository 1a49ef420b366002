#!/usr/bin/env bash
# Run by Snakemake inside the new conda environment, once, after creating it: installs the
# tumorburden package (the code the rules call) from the checkout the workflow runs from.
# TUMORBURDEN_SOURCE is set by workflow/rules/common.smk to the repository root.
set -euo pipefail
: "${TUMORBURDEN_SOURCE:?not set: run this through snakemake --software-deployment-method conda}"
python -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation "$TUMORBURDEN_SOURCE"
