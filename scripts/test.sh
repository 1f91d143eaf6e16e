#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run the whole suite.
#   - Python packages (the service and its [test] extra) into ./.venv (scripts/install.sh)
#   - Azurite (the Azure Storage emulator) and axios (seed 001's Node example) from npm into ./node_modules
#   - Debian's chromium and chromium-driver, which the operator console's browser tests drive (as root;
#     otherwise those tests skip, or fail under CI=true)
# PostgreSQL (127.0.0.1:5432, database `test`) and Redis (127.0.0.1:6379) are expected to be
# running; moto's S3 server and Azurite are started by the tests themselves on loopback.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k twilio -x`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "chromium is not installed and this is not root: the console's browser tests will not run" >&2
    fi
fi

bash scripts/install.sh '.[test]'
npm install --no-audit --no-fund --loglevel=error
# Let Python keep what it compiles where the machine says not to (PYTHONDONTWRITEBYTECODE): the hundreds
# of processes the tests start then compile the service's modules once, not 0.2 s of it each, and a
# second run's xdist workers collect the suite in 7 s instead of 14 (pytest keeps its rewritten tests).
unset PYTHONDONTWRITEBYTECODE
# worksteal: a worker that runs out of tests takes half of those still waiting for the other. With the
# slow tests first (tests/conftest.py), the default schedule left one worker idle for the last 84 s.
exec .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-auto}" --dist worksteal "$@"
