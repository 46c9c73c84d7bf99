#!/usr/bin/env bash
# The README's test command: set everything up from scratch and run the whole test suite.
#   bash scripts/test.sh [pytest args...]
# Installs Debian packages (podman, runc, bubblewrap), creates .venv (pinned CPU torch), starts a
# Podman Docker-API service on a unix socket under a temp dir, builds the sandbox image offline,
# runs ruff and pytest (which also runs every benchmark in --quick mode), then stops the service.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system_deps.sh
bash scripts/setup.sh
export TQ_RUN_TMP="${TQ_RUN_TMP:-$(mktemp -d -t tq-test-XXXXXX)}"
eval "$(bash scripts/engine.sh start)"
trap 'bash scripts/engine.sh stop || true' EXIT
bash sandbox/build_image.sh
.venv/bin/ruff check .
# The engine must be reachable in CI: sandbox tests fail (not skip) when it is not.
export TQ_REQUIRE_ENGINE=1
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
