"""The `gateway` command as an operator uses it."""

from __future__ import annotations

import errno
import json
import os
import pty
import signal
import subprocess
from pathlib import Path

import anyio
import pytest
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from audit_calls import audit_call
from gateway.audit import AuditRecorder, Redactor, Timings
from gateway.cli import main
from gateway.identity.principal import Principal
from gateway.storage import Database
from gateway.storage.database import MIGRATIONS_DIR, head_revision
from harness import gateway_command, run_cli, stdio_connector, write_gateway_config


def test_help_lists_the_subcommands() -> None:
    result = run_cli("--help")
    for command in ("serve", "stdio", "migrate", "keys", "tools"):
        assert command in result.stdout


def test_a_command_group_without_an_action_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys"]) == 2
    printed = capsys.readouterr().out
    assert printed.startswith("usage: gateway") and "manage agents' API keys" in printed


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    config = str(write_gateway_config(tmp_path, {}))
    created = run_cli("keys", "create", "--config", config, "--agent", "sales-bot", "--role", "sales")
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("agw_")
    assert "not shown again" in created.stdout
    listed = run_cli("keys", "list", "--config", config)
    assert "sales-bot" in listed.stdout and "sales" in listed.stdout
    assert key not in listed.stdout
    record = json.loads(run_cli("keys", "list", "--config", config, "--json").stdout)
    revoked = run_cli("keys", "revoke", "--config", config, record["id"])
    assert f"Revoked key {record['id']}" in revoked.stdout
    again = json.loads(run_cli("keys", "list", "--config", config, "--json").stdout)
    assert again["revoked_at"] is not None
    unknown = run_cli("keys", "revoke", "--config", config, "key_00000000", check=False)
    assert unknown.returncode == 1 and "key_00000000" in unknown.stderr
    bad = run_cli("keys", "create", "--config", config, "--agent", "bad agent!", check=False)
    assert bad.returncode == 2 and "agent" in bad.stderr


def test_tools_list_shows_mapping_annotations_and_health(tmp_path: Path) -> None:
    config = str(
        write_gateway_config(
            tmp_path,
            {
                "sink": stdio_connector(),
                "gone": 'kind = "mcp-stdio"\ncommand = ["/nonexistent/server"]\nconnect_timeout = 2\n',
            },
        )
    )
    table = run_cli("tools", "list", "--config", config).stdout
    assert "sink__echo" in table and "read_only,idempotent" in table
    rows = [json.loads(line) for line in run_cli("tools", "list", "--config", config, "--json").stdout.splitlines()]
    by_original = {(r.get("connector"), r.get("original")): r for r in rows}
    long_name = "summarise_quarterly_revenue_by_region_and_product_line_for_the_board"
    shortened = by_original[("sink", long_name)]["exposed"]
    assert len(shortened) <= 64 and shortened.startswith("sink__summarise_quarterly")
    assert by_original[("sink", "echo")]["health"] == "healthy"
    gone = next(r for r in rows if r.get("connector") == "gone")
    assert gone["health"] == "unhealthy"


def test_migrate_says_what_it_did(tmp_path: Path) -> None:
    database = tmp_path / "gateway.db"
    config = str(write_gateway_config(tmp_path, {}, database_url=f"sqlite:///{database}"))
    head = head_revision()

    created = run_cli("migrate", "--config", config)
    assert created.stdout == f"created the schema at revision {head} in sqlite:///{database}\n"
    again = run_cli("migrate", "--config", config)
    assert again.stdout == f"the schema in sqlite:///{database} is up to date at revision {head}\n"

    older = tmp_path / "older.db"
    alembic_config = AlembicConfig()
    alembic_config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with create_engine(f"sqlite:///{older}").begin() as connection:
        alembic_config.attributes["connection"] = connection
        alembic_command.upgrade(alembic_config, "0005")
    older_config = str(write_gateway_config(tmp_path / "older", {}, database_url=f"sqlite:///{older}"))
    upgraded = run_cli("migrate", "--config", older_config)
    assert upgraded.stdout == f"upgraded the schema in sqlite:///{older} from revision 0005 to {head}\n"


def test_migrate_names_a_postgres_database_without_its_password(postgres_url: str, tmp_path: Path) -> None:
    url = make_url(postgres_url).set(password="s3cret-pw")
    config = str(write_gateway_config(tmp_path, {}, database_url=url.render_as_string(hide_password=False)))
    created = run_cli("migrate", "--config", config)
    assert created.stdout == (
        f"created the schema at revision {head_revision()} in {url.render_as_string(hide_password=True)}\n"
    )
    assert "s3cret-pw" not in created.stdout + created.stderr


def _record_calls(database_url: str, calls: int) -> None:
    async def record() -> None:
        database = Database(database_url)
        await database.migrate()
        try:
            async with AuditRecorder(database, Redactor(), replica_id="gw-1") as recorder:
                agent = Principal(agent="billing-bot", roles=("finance",))
                for n in range(calls):
                    handle = await recorder.record_call(
                        audit_call(agent, "crm.lookup", reasoning=f"lookup number {n} " * 8), decision="allow"
                    )
                    await recorder.record_outcome(handle, outcome="ok", timings=Timings(total_ms=1.0), wait=False)
        finally:
            await database.close()

    anyio.run(record)


@pytest.mark.parametrize(
    "command",
    [
        ("audit", "search", "--json", "--limit", "1000"),
        ("audit", "search", "--limit", "1000"),
        ("audit", "tail", "--no-follow", "-n", "1000", "--json"),
    ],
)
def test_output_cut_short_by_its_reader_ends_quietly(tmp_path: Path, command: tuple[str, ...]) -> None:
    """`gateway audit search | head -1`: far more output than a pipe holds (1,000 rows), and a reader that leaves."""
    config = str(write_gateway_config(tmp_path, {}))
    _record_calls(f"sqlite:///{tmp_path / 'gateway.db'}", 1000)
    process = subprocess.Popen(
        gateway_command(*command, "--config", config), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    first = process.stdout.readline()
    process.stdout.close()  # what `head -1` does after its line
    errors = process.stderr.read().decode()
    status = process.wait(timeout=60)
    assert first.strip()
    assert "Traceback" not in errors and "BrokenPipe" not in errors and "Exception ignored" not in errors, errors
    assert status == 128 + signal.SIGPIPE


def _stderr_through_terminal(*args: str) -> tuple[int, str]:
    """Run `gateway <args>` with stderr on a pseudo-terminal, as at an operator's shell; returns status, stderr."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(gateway_command(*args), stdout=subprocess.DEVNULL, stderr=terminal)
    finally:
        os.close(terminal)
    output = bytearray()
    try:
        while chunk := _read_terminal(controller):
            output += chunk
    finally:
        os.close(controller)
    return process.wait(timeout=60), output.decode().replace("\r\n", "\n")


def _read_terminal(controller: int) -> bytes:
    try:
        return os.read(controller, 65536)
    except OSError as error:  # EIO: every process holding the terminal has closed it
        if error.errno == errno.EIO:
            return b""
        raise


def test_logs_are_lines_for_people_on_a_terminal_and_json_elsewhere(tmp_path: Path) -> None:
    config = str(write_gateway_config(tmp_path, {"sink": stdio_connector()}))
    status, on_terminal = _stderr_through_terminal("tools", "list", "--config", config)
    assert status == 0
    lines = [line for line in on_terminal.splitlines() if "backend state at start" in line]
    assert lines == ["info     backend state at start  connector=sink state=healthy detail=connected"], on_terminal
    assert not any(line.startswith("{") for line in on_terminal.splitlines())

    piped = run_cli("tools", "list", "--config", config)
    records = [json.loads(line) for line in piped.stderr.splitlines() if line.startswith("{")]
    started = [record for record in records if record["message"] == "backend state at start"]
    assert [(r["level"], r["connector"], r["state"]) for r in started] == [("info", "sink", "healthy")]


def test_an_explicit_log_format_wins_over_the_terminal(tmp_path: Path) -> None:
    config = write_gateway_config(tmp_path, {"sink": stdio_connector()})
    config.write_text(
        config.read_text().replace('[logging]\nlevel = "info"', '[logging]\nlevel = "info"\nformat = "json"')
    )
    status, on_terminal = _stderr_through_terminal("tools", "list", "--config", str(config))
    assert status == 0
    records = [json.loads(line) for line in on_terminal.splitlines() if line.strip()]
    assert [r["connector"] for r in records if r["message"] == "backend state at start"] == ["sink"]
