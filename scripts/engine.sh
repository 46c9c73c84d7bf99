#!/usr/bin/env bash
# Start/stop a Podman Docker-API service on a unix socket, for the sandbox tests and benchmarks.
#
#   eval "$(bash scripts/engine.sh start)"   # prints `export DOCKER_HOST=unix://...` for eval
#   bash scripts/engine.sh stop
#   bash scripts/engine.sh status
#
# The socket, pid file and log live under $TQ_ENGINE_DIR (default: $TQ_RUN_TMP/engine, else
# /tmp/tq-engine). Both commands are idempotent: `start` reuses a service that already answers.
# Flags that work on Debian's podman here: runc (crun fails) and the cgroupfs manager.
set -euo pipefail

DIR="${TQ_ENGINE_DIR:-${TQ_RUN_TMP:-/tmp}/tq-engine}"
SOCK="$DIR/podman.sock"
PIDFILE="$DIR/podman.pid"
LOG="$DIR/podman.log"

log() { echo "engine.sh: $*" >&2; }

answers() {
  # The Docker API's ping endpoint answers "OK" once the service is ready.
  [ -S "$SOCK" ] || return 1
  if command -v curl >/dev/null; then
    [ "$(curl -s --max-time 2 --unix-socket "$SOCK" http://d/_ping 2>/dev/null)" = "OK" ]
  else
    python3 - "$SOCK" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sys.argv[1])
s.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
data = b""
while chunk := s.recv(4096):
    data += chunk
sys.exit(0 if data.endswith(b"OK") else 1)
PY
  fi
}

alive() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
  command -v podman >/dev/null || { log "podman not found: run scripts/system_deps.sh (apt-get install podman runc)"; exit 1; }
  mkdir -p "$DIR"
  if answers; then
    log "reusing the service at $SOCK"
  else
    if alive; then kill "$(cat "$PIDFILE")" 2>/dev/null || true; sleep 0.5; fi
    rm -f "$SOCK"
    # setsid: the service outlives this script but not a `stop`; its output goes to a log file.
    # env -i: the service starts with a clean environment, so nothing of the caller's (tokens, proxies)
    # can reach a container through podman's environment pass-through.
    setsid env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME="${HOME:-/root}" podman --runtime runc --cgroup-manager=cgroupfs --log-level=warning \
      system service --time=0 "unix://$SOCK" >"$LOG" 2>&1 < /dev/null &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 150); do
      answers && break
      if ! alive; then log "podman service exited; its log ($LOG):"; cat "$LOG" >&2; exit 1; fi
      sleep 0.2
    done
    if ! answers; then log "podman service did not answer on $SOCK within 30 s; log ($LOG):"; cat "$LOG" >&2; exit 1; fi
    log "podman Docker-API service up at $SOCK (pid $(cat "$PIDFILE"))"
  fi
  echo "export DOCKER_HOST=unix://$SOCK"
  echo "export TQ_ENGINE_DIR=$DIR"
}

stop() {
  if alive; then
    pid="$(cat "$PIDFILE")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped podman service (pid $pid)"
  else
    log "no podman service running for $DIR"
  fi
  rm -f "$PIDFILE" "$SOCK"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) if answers; then echo "up: unix://$SOCK"; else echo "down"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
