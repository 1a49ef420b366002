"""Whether R with the named packages can be run here: the parity tests re-run R live where it can."""

import functools
import shutil
import subprocess


@functools.cache
def r_has(*packages: str) -> bool:
    if shutil.which("Rscript") is None:
        return False
    probe = subprocess.run(["Rscript", "-e", "; ".join(f"library({p})" for p in packages)],
                           capture_output=True, timeout=120)
    return probe.returncode == 0
