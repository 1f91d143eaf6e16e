#!/usr/bin/env bash
# Install the service into ./.venv (made if missing), with the extras the argument names:
# `bash scripts/install.sh` for the service alone, `bash scripts/install.sh '.[test]'` for the tests too.
# uv does the installing: pip reads every release of every package on the index, botocore's thousands
# among them, and takes two minutes of CPU to install the test extra into a new .venv; uv takes 30 s.
# --compile-bytecode, as pip does: where PYTHONDONTWRITEBYTECODE is set (containers often set it), every
# process would otherwise compile what it imports from source each time it starts (6.5 s for the web
# app, against 2.2 s).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check 'uv>=0.9'
.venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python -e "${1:-.}"
