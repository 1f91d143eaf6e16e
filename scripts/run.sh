#!/usr/bin/env bash
# Install the service into ./.venv and start it (web + worker) on its embedded defaults:
# SQLite database, SQLite-backed queue and local-disk blob store under ./data.
# Extra arguments go to `webhook-service run`, e.g. `bash scripts/run.sh --port 9000`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh
exec .venv/bin/webhook-service run "$@"
