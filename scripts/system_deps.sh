#!/usr/bin/env bash
# Debian packages the tests need: podman + runc (Docker-API engine) and bubblewrap for the sandbox; g++ builds
# the engine's int8 kernel (tq_agents/models/_engine/_vnni.cpp) on first use.
set -euo pipefail
need=()
for pkg in podman runc bubblewrap uidmap g++; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "system deps: podman $(podman --version | awk '{print $3}'), runc, bwrap $(bwrap --version | awk '{print $2}'), g++ $(g++ -dumpversion)"
