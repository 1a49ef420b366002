"""A connection to the study's DICOMweb server (QIDO-RS, WADO-RS, STOW-RS) with one-line errors.

The server is `study.dicomweb.url` (the DICOMweb root, e.g. http://pacs:8042/dicom-web). Its
credentials never sit in the config: `study.dicomweb.credentials_env` names an environment
variable holding `user:password`, or `study.dicomweb.netrc` names a netrc-style file (`machine
HOST login USER password PASSWORD`) whose entry for the server's host is used. A URL with
`user:password@` in it is refused, so a password cannot reach a log through the URL.

Every failure is a `PacsError` whose message names the server (its URL, never a password), what
was asked, and what to do: unreachable, wrong credentials, an answer that is not DICOMweb. The
messages hold no UID or hospital ID (they reach logs under results/); callers add the study's
patient_id or scan_id.
"""

from __future__ import annotations

import logging
import netrc
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
from dicomweb_client.api import DICOMwebClient

log = logging.getLogger(__name__)
# dicomweb-client logs every request with its study and series UIDs; logs live under results/
logging.getLogger("dicomweb_client").setLevel(logging.WARNING)

# WADO-RS in the transfer syntax the server stores (the reader decodes what the CT is compressed
# with): asking for explicit little endian makes a server transcode, and Orthanc 1.10 answers
# HTTP 500 for a JPEG 2000 SEG
AS_STORED = (("application/dicom", "*"),)
AS_STORED_MULTIPART = 'multipart/related; type="application/dicom"; transfer-syntax=*'

DEFAULTS = {"url": None, "credentials_env": None, "netrc": None, "push_url": None, "workers": 4,
            "timeout_s": 60}


class PacsError(RuntimeError):
    """A DICOMweb request that failed; the message is one line that says what to do."""


@dataclass(frozen=True)
class Server:
    url: str  # the DICOMweb root, without credentials
    auth: tuple[str, str] | None = None
    timeout_s: float = 60

    def __repr__(self) -> str:  # the password never reaches a log through a repr
        return f"Server({self.url!r}, auth={'yes' if self.auth else 'no'})"


def server_from_config(dicomweb: dict, push: bool = False) -> Server:
    """The server of `study.dicomweb` (its `push_url` when push and set), with its credentials."""
    s = {**DEFAULTS, **(dicomweb or {})}
    url = (s["push_url"] if push and s.get("push_url") else s["url"]) or ""
    parts = urlsplit(url)
    key = "study.dicomweb." + ("push_url" if push and s.get("push_url") else "url")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PacsError(f"config key {key}: {url!r} is not an http(s) URL of a DICOMweb root "
                        "(e.g. http://pacs:8042/dicom-web)")
    if parts.username or parts.password:
        raise PacsError(f"config key {key}: the URL carries a user name or password; remove it and name an "
                        "environment variable (study.dicomweb.credentials_env) or a netrc file (study.dicomweb.netrc)")
    return Server(url.rstrip("/"), credentials(s, parts.hostname), float(s["timeout_s"]))


def credentials(settings: dict, host: str) -> tuple[str, str] | None:
    """(user, password) from the environment variable or the netrc file the settings name, else None."""
    env, netrc_path = settings.get("credentials_env"), settings.get("netrc")
    if env:
        value = os.environ.get(env)
        if not value:
            raise PacsError(f"config key study.dicomweb.credentials_env: environment variable {env} is not set; "
                            "export it as user:password before the run")
        if ":" not in value:
            raise PacsError(f"environment variable {env} (study.dicomweb.credentials_env) must be user:password")
        user, password = value.split(":", 1)
        return user, password
    if netrc_path:
        path = Path(netrc_path)
        try:
            entry = netrc.netrc(str(path)).authenticators(host)
        except FileNotFoundError:
            raise PacsError(f"config key study.dicomweb.netrc: {path} does not exist") from None
        except netrc.NetrcParseError as exc:
            raise PacsError(f"{path} line {exc.lineno} (study.dicomweb.netrc): not netrc syntax; "
                            "write 'machine HOST login USER password PASSWORD'") from None
        if entry is None:
            raise PacsError(f"{path} (study.dicomweb.netrc) has no entry for machine {host}; add "
                            f"'machine {host} login USER password PASSWORD'")
        return entry[0], entry[2] or ""
    return None


class Pacs:
    """dicomweb-client on a session with the server's credentials; requests fail in one line."""

    def __init__(self, server: Server):
        self.server = server
        session = requests.Session()
        if server.auth:
            session.auth = server.auth
        self.client = DICOMwebClient(server.url, session=session, timeout=server.timeout_s)
        # a refused connection or a 401 is not worth five exponential retries: say it at once
        self.client.set_http_retry_params(retry=False)

    def __repr__(self) -> str:
        return f"Pacs({self.server!r})"

    def call(self, what: str, fn, *args, **kwargs):
        """fn(*args, **kwargs) with its failure turned into a PacsError naming the server and `what`."""
        try:
            return fn(*args, **kwargs)
        except requests.exceptions.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            raise PacsError(self.explain(what, status)) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            kind = "timed out" if isinstance(exc, requests.exceptions.Timeout) else "unreachable"
            raise PacsError(f"DICOMweb server {self.server.url} {kind} ({what}); check that it runs and that "
                            "study.dicomweb.url is right, then re-run") from None
        except requests.exceptions.ChunkedEncodingError:  # the connection dropped in the middle of an answer
            raise PacsError(f"DICOMweb server {self.server.url} broke off its answer ({what}); check that it runs, "
                            "then re-run") from None

    def explain(self, what: str, status: int | None) -> str:
        url = self.server.url
        if status == 401:
            return (f"DICOMweb server {url} refused the credentials ({what}: HTTP 401); "
                    + ("check the user:password in study.dicomweb.credentials_env or the netrc entry"
                       if self.server.auth else "it needs a login: set study.dicomweb.credentials_env or study.dicomweb.netrc"))
        if status == 403:
            return f"DICOMweb server {url} forbids this ({what}: HTTP 403); ask its administrator for access"
        if status == 404:
            return f"DICOMweb server {url}: not found ({what}: HTTP 404)"
        return f"DICOMweb server {url} answered HTTP {status} ({what}); see its log, then re-run"

    # --- the requests the pipeline makes ----------------------------------------------------

    def check(self) -> None:
        """One cheap QIDO-RS request: fails early when the server is down or refuses us."""
        self.call("QIDO-RS search for studies", self.client.search_for_studies, limit=1)

    def studies_of(self, hospital_patient_id: str) -> list[dict]:
        """QIDO-RS: the studies whose PatientID is exactly this one (DICOM JSON)."""
        return self.call("QIDO-RS search for a patient's studies", self.client.search_for_studies,
                         search_filters={"PatientID": hospital_patient_id}, get_remaining=True)

    def series_of(self, study_uid: str, modality: str | None = None) -> list[dict]:
        """QIDO-RS: the series of a study (DICOM JSON), optionally of one modality (e.g. SEG)."""
        filters = {"Modality": modality} if modality else None
        return self.call("QIDO-RS search for the series of a study", self.client.search_for_series,
                         study_uid, search_filters=filters, get_remaining=True)

    def series_metadata(self, study_uid: str, series_uid: str) -> list[dict]:
        """WADO-RS metadata (every instance's header, no pixel data) of one series."""
        return self.call("WADO-RS metadata of a series", self.client.retrieve_series_metadata,
                         study_uid, series_uid)

    def instance_file(self, study_uid: str, series_uid: str, sop_uid: str) -> bytes | None:
        """WADO-RS: one instance, the bytes of its DICOM file as the server stores it (None when the
        answer holds no part)."""
        url = f"{self.server.url}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
        return next(self._files("WADO-RS retrieve of an instance", url), None)

    def iter_series_files(self, study_uid: str, series_uid: str):
        """WADO-RS: a series' instances, the bytes of each DICOM file as the server stores it, yielded
        as each part of the multipart answer arrives."""
        yield from self._files("WADO-RS retrieve of a series", f"{self.server.url}/studies/{study_uid}/series/{series_uid}")

    def _files(self, what: str, url: str):
        # dicomweb-client's public retrieve_*/iter_* calls parse every part with pydicom (a full
        # dcmread, then the pull would encode it again: ~9 CPU-ms per 512x512 CT slice) and no
        # public call hands back the raw parts. So its own GET (the session with the server's
        # credentials, its timeout and retry policy) and its multipart decoder, minus the parse;
        # dicomweb-client is pinned in requirements.lock and tests/pacs run this against Orthanc.
        response = self.call(what, self.client._http_get, url, headers={"Accept": AS_STORED_MULTIPART}, stream=True)
        if response.headers.get("Content-Type", "").startswith("application/dicom"):
            # one bare part, not multipart/related: some servers answer a single instance so
            # (dicomweb-client accepts it too)
            yield self.call(what, lambda: response.content)
            return
        parts = self.client._decode_multipart_message(response, stream=True)
        while True:
            try:
                part = self.call(what, next, parts)
            except StopIteration:
                return
            except ValueError:  # a part without its header block: the answer was cut
                raise PacsError(f"DICOMweb server {self.server.url} sent a broken multipart answer ({what}); "
                                "check that it runs, then re-run") from None
            yield part

    def iter_series(self, study_uid: str, series_uid: str):
        """WADO-RS: a series' instances as pydicom Datasets, streamed as they arrive."""
        it = self.call("WADO-RS retrieve of a series", self.client.iter_series, study_uid, series_uid,
                       media_types=AS_STORED)
        while True:
            try:
                ds = self.call("WADO-RS retrieve of a series", next, it)
            except StopIteration:
                return
            yield ds

    def store(self, datasets: list, what: str) -> None:
        """STOW-RS of the datasets; every one must be accepted."""
        response = self.call(f"STOW-RS of {what}", self.client.store_instances, datasets)
        failed = response.get("FailedSOPSequence") if response is not None else None
        if failed:
            raise PacsError(f"DICOMweb server {self.server.url} refused {len(failed.value)} of {len(datasets)} "
                            f"object(s) of {what} (STOW-RS FailedSOPSequence); see the server's log")


def connect(dicomweb: dict, push: bool = False, check: bool = True) -> Pacs:
    """A Pacs for `study.dicomweb` (credentials resolved; one request made first when check)."""
    pacs = Pacs(server_from_config(dicomweb, push=push))
    if check:
        pacs.check()
    return pacs
