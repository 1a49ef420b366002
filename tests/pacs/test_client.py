"""The DICOMweb connection against a real Orthanc: credentials, and the one-line errors."""

import json
import socket

import pytest

from tumorburden.pacs.client import PacsError, connect, server_from_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_script_serves_dicomweb_on_loopback_only_with_its_own_storage(orthanc):
    config = json.loads((orthanc.folder / "orthanc.json").read_text())
    assert config["RemoteAccessAllowed"] is False and config["DicomServerEnabled"] is False
    assert config["StorageDirectory"].startswith(str(orthanc.folder))
    assert orthanc.url.startswith("http://127.0.0.1:")
    connect({"url": orthanc.url}).check()
    assert connect({"url": orthanc.url}).studies_of("nobody") == []


def test_stop_by_pid_ends_the_server(orthanc):
    url = orthanc.url
    orthanc.stop()
    with pytest.raises(PacsError) as err:
        connect({"url": url})
    assert url in str(err.value) and "unreachable" in str(err.value)


def test_unreachable_server_is_one_line_naming_it():
    url = f"http://127.0.0.1:{_free_port()}/dicom-web"
    with pytest.raises(PacsError) as err:
        connect({"url": url})
    msg = str(err.value)
    assert "\n" not in msg and url in msg and "study.dicomweb.url" in msg


def test_credentials_from_environment(orthanc_factory, monkeypatch):
    server = orthanc_factory("radiology:s3cret")
    monkeypatch.setenv("TB_PACS", "radiology:s3cret")
    connect({"url": server.url, "credentials_env": "TB_PACS"}).check()

    monkeypatch.setenv("TB_PACS", "radiology:wrong")
    with pytest.raises(PacsError) as err:
        connect({"url": server.url, "credentials_env": "TB_PACS"})
    msg = str(err.value)
    assert "401" in msg and server.url in msg and "wrong" not in msg and "s3cret" not in msg

    with pytest.raises(PacsError, match="needs a login"):
        connect({"url": server.url})


def test_credentials_from_netrc(orthanc_factory, tmp_path):
    server = orthanc_factory("radiology:s3cret")
    netrc = tmp_path / "pacs.netrc"
    netrc.write_text("machine 127.0.0.1 login radiology password s3cret\n")
    netrc.chmod(0o600)
    connect({"url": server.url, "netrc": str(netrc)}).check()
    netrc.write_text("machine elsewhere login radiology password s3cret\n")
    with pytest.raises(PacsError, match="no entry for machine 127.0.0.1"):
        connect({"url": server.url, "netrc": str(netrc)})


def test_missing_environment_variable_and_password_in_url_are_refused(monkeypatch):
    monkeypatch.delenv("TB_PACS_UNSET", raising=False)
    with pytest.raises(PacsError, match="TB_PACS_UNSET is not set"):
        server_from_config({"url": "http://pacs:8042/dicom-web", "credentials_env": "TB_PACS_UNSET"})
    with pytest.raises(PacsError) as err:
        server_from_config({"url": "http://al:pw@pacs:8042/dicom-web"})
    assert "pw" not in str(err.value).replace("push_url", "") or "password" in str(err.value)
    assert "carries a user name or password" in str(err.value)
    assert "s3cret" not in repr(server_from_config({"url": "http://pacs/dicom-web"}))
