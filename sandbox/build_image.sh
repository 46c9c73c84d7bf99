#!/usr/bin/env bash
# Build the sandbox image offline from a minimal root filesystem and import it into the engine.
#
#   bash sandbox/build_image.sh [IMAGE]        # IMAGE defaults to $TQ_SANDBOX_IMAGE or tq-agents-sandbox:latest
#
# No registry is needed (this is what CI uses). The root filesystem holds only what model-written code
# needs: the host's Debian Python 3 runtime (python3.X-minimal + stdlib), bash, dash, coreutils, grep,
# sed, findutils and the shared libraries they link against, plus a non-root user `sandbox` (uid 1000).
# Every setuid/setgid bit is stripped. The result is imported with `podman import` (or `docker import`)
# and carries USER 1000, WORKDIR /work and a clean ENV. Users with a registry can instead build
# sandbox/Dockerfile, which yields an equivalent image from python:3.11-slim.
set -euo pipefail

IMAGE="${1:-${TQ_SANDBOX_IMAGE:-tq-agents-sandbox:latest}}"
PKGS=(bash dash coreutils grep sed findutils)

log() { echo "build_image.sh: $*" >&2; }

# The Debian Python runtime: python3.N-minimal + libpython3.N-stdlib (installed if missing).
PYV="$(/usr/bin/python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")' 2>/dev/null || true)"
if [ -z "$PYV" ]; then
  log "installing Debian python3-minimal"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-minimal libpython3-stdlib >/dev/null
  PYV="$(/usr/bin/python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
fi
PKGS+=("python$PYV-minimal" "libpython$PYV-minimal" "libpython$PYV-stdlib")
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || { log "Debian package $p is missing: apt-get install $p"; exit 1; }
done

if command -v podman >/dev/null; then ENGINE=podman; elif command -v docker >/dev/null; then ENGINE=docker; else
  log "neither podman nor docker found: apt-get install podman runc"; exit 1
fi

t0=$(date +%s)
WORK="$(mktemp -d -t tq-rootfs-XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
ROOT="$WORK/rootfs"
mkdir -p "$ROOT"

# Merged-/usr layout, as on Debian 12.
mkdir -p "$ROOT"/usr/{bin,lib,lib64,sbin} "$ROOT"/{etc,tmp,work,proc,sys,dev,home/sandbox}
for d in bin lib lib64 sbin; do ln -s "usr/$d" "$ROOT/$d"; done

# 1. The files of the packages (regular files and symlinks only; directories are created as needed).
for p in "${PKGS[@]}"; do dpkg -L "$p"; done | sort -u | while IFS= read -r f; do
  case "$f" in /usr/share/doc/*|/usr/share/man/*|/usr/share/info/*|/usr/share/locale/*|/usr/share/lintian/*) continue ;; esac
  case "$f" in */test/*|*/tests/*|*/idlelib/*|*/tkinter/*|*/turtledemo/*|*/ensurepip/*) continue ;; esac
  if [ -f "$f" ] || [ -L "$f" ]; then
    # Resolve the merged-/usr aliases (/bin -> /usr/bin, /lib -> /usr/lib).
    rel="${f#/}"
    case "$rel" in bin/*|lib/*|lib64/*|sbin/*) rel="usr/$rel" ;; esac
    mkdir -p "$ROOT/$(dirname "$rel")"
    cp -a "$f" "$ROOT/$rel"
  fi
done
ln -sf "python$PYV" "$ROOT/usr/bin/python3"
ln -sf python3 "$ROOT/usr/bin/python"

# 2. Shared libraries of every ELF file in the tree (transitively, via ldd), plus the dynamic loader.
find "$ROOT/usr" -type f \( -perm -u+x -o -name '*.so*' \) -print0 \
  | { xargs -0 ldd 2>/dev/null || true; } | awk '/=>/ {print $3} /^\t\/lib/ {print $1}' | grep '^/' | sort -u \
  | while IFS= read -r lib; do
      for src in "$lib" "$(readlink -f "$lib")"; do
        rel="${src#/}"; case "$rel" in lib/*|lib64/*) rel="usr/$rel" ;; esac
        [ -e "$ROOT/$rel" ] && continue
        mkdir -p "$ROOT/$(dirname "$rel")"
        cp -a "$src" "$ROOT/$rel"
      done
    done

# 3. Users, no setuid/setgid bits, a permissive but empty /work.
cat >"$ROOT/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
sandbox:x:1000:1000:sandbox:/home/sandbox:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$ROOT/etc/group" <<'EOF'
root:x:0:
sandbox:x:1000:
nogroup:x:65534:
EOF
echo "hosts: files" >"$ROOT/etc/nsswitch.conf"
echo "127.0.0.1 localhost" >"$ROOT/etc/hosts"
: >"$ROOT/etc/resolv.conf"
find "$ROOT" -xdev -perm /6000 -type f -exec chmod ug-s {} +
chown 1000:1000 "$ROOT/work" "$ROOT/home/sandbox"
chmod 1777 "$ROOT/tmp"

size=$(du -sm "$ROOT" | cut -f1)
log "rootfs assembled: ${size} MB (python$PYV) in $(( $(date +%s) - t0 )) s"

# 4. Import into the engine.
tar -C "$ROOT" --numeric-owner -cf - . | "$ENGINE" import \
  --change "USER=1000:1000" \
  --change "WORKDIR=/work" \
  --change "ENV=PATH=/usr/local/bin:/usr/bin:/bin" \
  --change "ENV=HOME=/home/sandbox" \
  --change "ENV=LANG=C.UTF-8" \
  --change 'CMD=["/usr/bin/python3"]' \
  --change "LABEL=org.tq-agents.sandbox=1" \
  - "$IMAGE" >/dev/null
log "imported $IMAGE into $ENGINE in $(( $(date +%s) - t0 )) s total"
RUNFLAGS=(); [ "$ENGINE" = podman ] && RUNFLAGS=(--runtime runc --cgroup-manager=cgroupfs)
"$ENGINE" "${RUNFLAGS[@]}" run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=256:256 "$IMAGE" /usr/bin/python3 -c 'import sys, os; print("sandbox image ok:", sys.version.split()[0], "uid", os.getuid())' >&2 \
  || { log "smoke test of $IMAGE failed"; exit 1; }
