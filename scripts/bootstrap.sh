#!/usr/bin/env bash
# Set up flowguard on a fresh machine: system tools for the traffic lab (when root with apt-get),
# a virtual environment in .venv, and flowguard with its development extras. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

LAB_PACKAGES="tcpdump openssh-server openssh-client autossh dropbear-bin nginx-light stunnel4 socat nftables iproute2 ethtool openssl curl git rsync mosquitto mosquitto-clients tcpreplay golang-go"

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $LAB_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    echo "bootstrap: installing$missing" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
else
  echo "bootstrap: not root with apt-get: lab tools not installed (lab tests will skip)" >&2
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
echo "bootstrap: ready (.venv/bin/flowguard)" >&2
