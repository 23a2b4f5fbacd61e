"""`gateway connectors new` and `gateway connectors check`, and loading a Python connector's file.

The scaffold must be a working package: its own pytest passes in a fresh process and it passes
the contract. A connector that breaks the contract fails with a report naming each broken check.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_connector
from gateway.errors import ConfigError
from gateway.sdk import ConnectorNotFound, load
from harness import run_cli

SAMPLES = Path(__file__).parent / "connector_samples"


def test_new_scaffolds_a_package_whose_test_and_contract_pass(tmp_path: Path) -> None:
    made = run_cli("connectors", "new", "tickets", "--directory", str(tmp_path))
    root = tmp_path / "tickets"
    assert "gateway connectors check tickets" in made.stdout  # what to do next
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points."gateway.connectors"]\ntickets = "tickets_connector:connector"' in pyproject
    assert 'entry_point = "tickets"' in (root / "tickets.toml").read_text()
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout
    checked = run_cli(
        "connectors", "check", "tickets_connector:connector", "--path", str(root / "src"),
        "--call", 'greet={"name": "Ada"}',
    )  # fmt: skip
    assert "the connector passes the contract" in checked.stdout
    assert "FAIL" not in checked.stdout and "pass  errors mapped" in checked.stdout


def test_new_refuses_an_existing_directory_and_a_bad_name(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    taken = run_cli("connectors", "new", "taken", "--directory", str(tmp_path), check=False)
    assert taken.returncode == 1 and "already exists" in taken.stderr
    bad = run_cli("connectors", "new", "Bad-Name", "--directory", str(tmp_path), check=False)
    assert bad.returncode == 1 and "not a usable connector name" in bad.stderr


def test_check_fails_a_broken_connector_with_a_report_per_check() -> None:
    result = run_cli(
        "connectors", "check", "broken_connector:careless", "--path", str(SAMPLES),
        "--call", 'slow={"seconds": 2.5}', check=False,
    )  # fmt: skip
    assert result.returncode == 1
    out = result.stdout
    assert "pass  schemas" in out
    assert "FAIL  descriptions: no description (the model reads it to choose the tool): undocumented" in out
    assert "FAIL  health: the health hook reports unhealthy: RuntimeError: the upstream API is down" in out
    assert "FAIL  cancellation of slow: kept running" in out and "blocks the event loop" in out
    assert "3 check(s) failed: descriptions, health, cancellation of slow" in result.stderr


def test_check_fails_a_named_call_that_cannot_show_cancellation(tmp_path: Path) -> None:
    run_cli("connectors", "new", "tickets", "--directory", str(tmp_path))
    result = run_cli(
        "connectors", "check", "tickets_connector:connector", "--path", str(tmp_path / "tickets" / "src"),
        "--call", "gret={}", "--call", 'greet={"nam": "Ada"}', check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "FAIL  cancellation of gret: the connector has no tool named 'gret' (its tools: greet)" in result.stdout
    assert "FAIL  cancellation of greet: answered with a tool error before it could be cancelled" in result.stdout
    assert "'nam'" in result.stdout


def test_check_reports_a_start_that_raises_and_a_name_that_finds_nothing() -> None:
    failing = run_cli("connectors", "check", "broken_connector:connector", "--path", str(SAMPLES), check=False)
    assert failing.returncode == 1
    assert "FAIL  start: start raised ConnectionError: the billing API refused the credentials (401)" in failing.stdout
    missing = run_cli("connectors", "check", "no-such-connector", check=False)
    assert missing.returncode == 1 and "no installed package declares the entry point 'no-such-connector'" in (
        missing.stdout
    )


def test_an_installed_entry_point_is_found(tmp_path: Path) -> None:
    """A package's `gateway.connectors` entry point, as pip installs it (a dist-info on the path)."""
    dist = tmp_path / "orders_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: orders-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[gateway.connectors]\norders = orders_connector:connector\n")
    env_path = os.pathsep.join([str(tmp_path), str(SAMPLES)])
    code = "from gateway.sdk import load; print(load('orders').name)"
    found = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": env_path}, capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "orders"


def test_loading_refuses_what_is_not_a_connector() -> None:
    with pytest.raises(ConnectorNotFound, match=r"is a str, not a gateway\.sdk\.Connector"):
        load("broken_connector:__doc__", path=[SAMPLES])
    with pytest.raises(ConnectorNotFound, match="has no attribute 'nothing'"):
        load("broken_connector:nothing", path=[SAMPLES])


def test_a_connector_file_naming_both_or_neither_target_is_refused_with_its_line(tmp_path: Path) -> None:
    both = tmp_path / "both.toml"
    both.write_text('kind = "python"\nentry_point = "x"\nmodule = "m:c"\n')
    with pytest.raises(ConfigError, match=r"both\.toml.*set exactly one of entry_point"):
        load_connector(both)
    bare = tmp_path / "bare.toml"
    bare.write_text('kind = "python"\nmodule = "just_a_module"\n')
    with pytest.raises(ConfigError, match="names no attribute"):
        load_connector(bare)
    relative = tmp_path / "rel.toml"
    relative.write_text('kind = "python"\nmodule = "m:c"\npath = ["src"]\nisolation = "subprocess"\n')
    loaded = load_connector(relative)
    assert loaded.path == ((tmp_path / "src").resolve(),)  # type: ignore[union-attr]
