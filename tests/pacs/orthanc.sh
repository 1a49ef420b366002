#!/usr/bin/env bash
# A throw-away DICOMweb server on this machine: Debian's Orthanc with its DICOMweb plugin, for the
# tests and for a user who wants to try `study.dicomweb` without a hospital PACS (docs/pacs.md).
#
#   tests/pacs/orthanc.sh start DIR [PORT]   start Orthanc with its storage in DIR (kept: a second
#                                            start on DIR serves what the first stored); prints
#                                            "URL PID" (URL = the DICOMweb root) and returns once
#                                            GET /system answers
#   tests/pacs/orthanc.sh stop PID|DIR       stop it (SIGTERM, then SIGKILL after 10 s)
#
# Loopback only: Orthanc 1.10 cannot bind to 127.0.0.1 alone, so "RemoteAccessAllowed": false makes
# it refuse every request that does not come from this machine. The DICOM (DIMSE) port is off.
# HTTP basic auth when ORTHANC_CREDENTIALS=user:password is set in the environment (read from the
# environment rather than the command line, so it does not show in `ps`).
# Needs: orthanc, orthanc-dicomweb (Debian), curl, python3.
set -euo pipefail

plugin=${ORTHANC_DICOMWEB_PLUGIN:-/usr/share/orthanc/plugins/libOrthancDicomWeb.so}

die() { echo "orthanc.sh: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir=$1 port=${2:-}
  command -v Orthanc >/dev/null || die "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
  [[ -f $plugin ]] || die "$plugin missing (apt-get install orthanc-dicomweb, or set ORTHANC_DICOMWEB_PLUGIN)"
  mkdir -p "$dir/storage"
  dir=$(cd "$dir" && pwd)
  [[ -n $port ]] || port=$(free_port)
  local auth=false users="{}" curl_auth=()
  if [[ -n ${ORTHANC_CREDENTIALS:-} ]]; then
    [[ $ORTHANC_CREDENTIALS == *:* ]] || die "ORTHANC_CREDENTIALS must be user:password"
    auth=true
    users=$(python3 -c 'import json, os; u, p = os.environ["ORTHANC_CREDENTIALS"].split(":", 1); print(json.dumps({u: p}))')
    curl_auth=(--user "$ORTHANC_CREDENTIALS")
  fi
  umask 077  # the configuration holds the password
  cat >"$dir/orthanc.json" <<EOF
{
  "Name": "tumorburden-test",
  "HttpPort": $port,
  "StorageDirectory": "$dir/storage",
  "IndexDirectory": "$dir/storage",
  "DicomServerEnabled": false,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": $auth,
  "RegisteredUsers": $users,
  "HttpCompressionEnabled": false,
  "StableAge": 1,
  "Plugins": ["$plugin"],
  "DicomWeb": {"Enable": true, "Root": "/dicom-web/", "StudiesMetadata": "Full", "SeriesMetadata": "Full"}
}
EOF
  Orthanc "$dir/orthanc.json" >"$dir/orthanc.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/orthanc.pid"
  for _ in $(seq 1 150); do
    if curl -sf "${curl_auth[@]}" -o /dev/null "http://127.0.0.1:$port/system"; then
      echo "http://127.0.0.1:$port/dicom-web $pid"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || die "Orthanc exited at start; see $dir/orthanc.log: $(tail -n 1 "$dir/orthanc.log")"
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  die "Orthanc did not answer on port $port within 15 s; see $dir/orthanc.log"
}

stop() {
  local pid=$1
  if [[ -d $pid ]]; then
    [[ -f $pid/orthanc.pid ]] || die "$pid/orthanc.pid missing: no server started in $pid"
    pid=$(cat "$pid/orthanc.pid")
  fi
  [[ $pid =~ ^[0-9]+$ ]] || die "stop takes a PID or the folder given to start, got '$pid'"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
}

case ${1:-} in
  start) [[ $# -ge 2 ]] || die "usage: $0 start DIR [PORT]"; start "$2" "${3:-}" ;;
  stop) [[ $# -eq 2 ]] || die "usage: $0 stop PID|DIR"; stop "$2" ;;
  *) die "usage: $0 start DIR [PORT] | stop PID|DIR" ;;
esac
