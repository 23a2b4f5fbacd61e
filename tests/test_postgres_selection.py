"""Running without PostgreSQL: `-m "not postgres"` leaves out every test that needs the server, and only those."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import POSTGRES_FIXTURES

TESTS = Path(__file__).resolve().parent


def _fixtures_per_test(marker: str) -> dict[str, set[str]]:
    """Each test `-m marker` selects, with the fixtures it uses, as pytest itself reports them."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--fixtures-per-test"]
    listing = subprocess.run(
        [*command, "-m", marker, str(TESTS)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=TESTS.parent,
    )
    assert listing.returncode == 0, listing.stdout[-3000:] + listing.stderr[-3000:]
    tests: dict[str, set[str]] = {}
    current: set[str] | None = None
    for line in listing.stdout.splitlines():
        if " fixtures used by " in line:
            current = tests.setdefault(line.split(" fixtures used by ", 1)[1].strip(" -"), set())
        elif current is not None and " -- " in line and not line.startswith(" "):
            current.add(line.split(" -- ", 1)[0].strip())
    return tests


def test_not_postgres_selects_no_test_that_needs_the_server() -> None:
    without = _fixtures_per_test("not postgres")
    # The SQLite half of the database tests is selected, and its fixtures were read.
    assert any("database_url" in fixtures for fixtures in without.values())
    needing = sorted(name for name, fixtures in without.items() if fixtures & POSTGRES_FIXTURES)
    assert not needing, f"these tests need PostgreSQL but are not marked postgres: {needing}"
