#!/bin/sh
# The whole test suite: installs the project and its test tools into .venv, then runs pytest.
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`) for the storage tests.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
# Two workers, each taking whole test files (module-scoped gateways start once): most of the
# suite waits on real gateway and backend processes, so two keep both cores busy.
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
