"""A real DICOMweb server for the tests: Debian's Orthanc with its DICOMweb plugin, started by
tests/pacs/orthanc.sh on a free loopback port with its own storage folder and stopped by PID.

Skipped when Orthanc (or the plugin) is not installed, unless TUMORBURDEN_REQUIRE_ORTHANC=1 (set by
.ci/run), where a missing server is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

SCRIPT = Path(__file__).with_name("orthanc.sh")
PLUGIN = Path(os.environ.get("ORTHANC_DICOMWEB_PLUGIN", "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"))


def why_no_orthanc() -> str | None:
    if shutil.which("Orthanc") is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if not PLUGIN.exists():
        return f"{PLUGIN} missing (apt-get install orthanc-dicomweb)"
    if shutil.which("curl") is None:
        return "curl is not installed"
    return None


def require_orthanc() -> None:
    why = why_no_orthanc()
    if why:
        if os.environ.get("TUMORBURDEN_REQUIRE_ORTHANC") == "1":
            pytest.fail(f"TUMORBURDEN_REQUIRE_ORTHANC=1 but no Orthanc can be started here: {why}")
        pytest.skip(f"no Orthanc: {why}")


class Orthanc:
    """One Orthanc process: `url` is its DICOMweb root, `rest` its REST root."""

    def __init__(self, folder: Path, credentials: str | None = None):
        self.folder, self.credentials = Path(folder), credentials
        self.url = self.pid = self.port = None

    @property
    def auth(self):
        return tuple(self.credentials.split(":", 1)) if self.credentials else None

    @property
    def rest(self) -> str:
        return self.url.rsplit("/dicom-web", 1)[0]

    def start(self, port: int | None = None) -> "Orthanc":
        env = {**os.environ}
        env.pop("ORTHANC_CREDENTIALS", None)
        if self.credentials:
            env["ORTHANC_CREDENTIALS"] = self.credentials
        proc = subprocess.run([str(SCRIPT), "start", str(self.folder)] + ([str(port)] if port else []),
                              capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        self.url, pid = proc.stdout.split()
        self.pid = int(pid)
        self.port = int(self.url.split(":")[2].split("/")[0])
        return self

    def stop(self) -> None:
        if self.pid is not None:
            subprocess.run([str(SCRIPT), "stop", str(self.pid)], check=True, timeout=30)
            self.pid = None

    def kill(self) -> None:
        """SIGKILL, as a crash would (no clean shutdown)."""
        os.kill(self.pid, 9)
        self.stop()  # waits until the process is gone

    def restart(self) -> None:
        """The same storage on the same port: the same URL serves what was stored before."""
        self.stop()
        self.start(self.port)

    def upload(self, paths) -> int:
        """POST /instances of each file (Orthanc's REST upload); returns how many were stored."""
        n = 0
        with requests.Session() as s:
            s.auth = self.auth
            for p in paths:
                r = s.post(f"{self.rest}/instances", data=Path(p).read_bytes(), timeout=60)
                r.raise_for_status()
                n += 1
        return n

    def delete_series(self, series_uid: str) -> None:
        r = requests.post(f"{self.rest}/tools/lookup", data=series_uid, auth=self.auth, timeout=30)
        r.raise_for_status()
        for hit in r.json():
            if hit["Type"] == "Series":
                requests.delete(f"{self.rest}/series/{hit['ID']}", auth=self.auth, timeout=30).raise_for_status()


@pytest.fixture
def orthanc_factory(tmp_path):
    """orthanc_factory(credentials=None) -> a started Orthanc with its own storage; all stopped after."""
    require_orthanc()
    started: list[Orthanc] = []

    def make(credentials: str | None = None) -> Orthanc:
        server = Orthanc(tmp_path / f"orthanc{len(started)}", credentials).start()
        started.append(server)
        return server

    yield make
    for server in started:  # the storage is thrown away: no need for the clean (4 s) shutdown
        if server.pid is not None:
            server.kill()


@pytest.fixture
def orthanc(orthanc_factory) -> Orthanc:
    """An empty Orthanc (no login) on a free loopback port."""
    return orthanc_factory()
