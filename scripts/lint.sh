#!/bin/sh
# Static checks: ruff (lint and format) on everything, mypy --strict on src/. Installs like test.sh.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet -e '.[test]'
echo "==> ruff check"
.venv/bin/ruff check src tests bench examples
echo "==> ruff format --check"
.venv/bin/ruff format --check src tests bench examples
echo "==> mypy (strict, src/)"
.venv/bin/mypy
