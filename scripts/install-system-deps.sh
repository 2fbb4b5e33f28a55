#!/usr/bin/env bash
# Installs what Tapline's tests and lab need on a Debian/Ubuntu machine (run as root):
# packet tools from Debian, and moto (AWS on the wire) and cfn-lint from PyPI when absent.
# Safe to run again: it installs only what is missing.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: run as root (apt-get, network namespaces)" >&2
  exit 2
fi

APT_PACKAGES=(tcpdump tshark wireshark-common nmap hping3 python3-scapy softflowd nfdump awscli iproute2 jq procps curl)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-system-deps: installing ${missing[*]}"
  apt-get update -qq
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# moto and cfn-lint are preinstalled on the project's machines; elsewhere they come from PyPI.
python3 -c 'import moto.server' 2>/dev/null || python3 -m pip install --quiet "moto[server]"
command -v cfn-lint >/dev/null 2>&1 || python3 -m pip install --quiet cfn-lint
