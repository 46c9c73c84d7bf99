#!/usr/bin/env bash
# Debian packages the sandbox tests need: podman + runc (Docker-API engine) and bubblewrap.
set -euo pipefail
need=()
for pkg in podman runc bubblewrap uidmap; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "system deps: podman $(podman --version | awk '{print $3}'), runc, bwrap $(bwrap --version | awk '{print $2}')"
