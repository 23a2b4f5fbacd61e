"""`gateway audit ...` run in-process with argv lists, as the top-level command will run them."""

from __future__ import annotations

import argparse
import json

import anyio
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from audit_calls import audit_call
from gateway.audit import AuditRecorder, Redactor, Timings
from gateway.cli.audit import OpenDatabase, build
from gateway.errors import GatewayError, InvalidAuditQuery
from gateway.identity.principal import Principal
from gateway.storage import Database
from test_audit_query import assert_no_canary, record_canaries

AGENT = Principal(agent="billing-bot", roles=("finance",), user="alice@example.com")
KEY = Ed25519PrivateKey.generate()


def audit(database_url: str, *argv: str) -> int:
    """Parse and run `gateway audit <argv>` the way the top-level command does."""
    opened: list[argparse.Namespace] = []

    def open_database(args: argparse.Namespace) -> Database:
        opened.append(args)
        return Database(database_url)

    args = _audit_parser(open_database).parse_args(["audit", *argv])
    status = args.run(args)
    assert opened and opened[0].config == "gateway.toml"
    return status


def _audit_parser(open_database: OpenDatabase) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway")
    build(parser.add_subparsers().add_parser("audit"), open_database)
    return parser


def _record(database_url: str, *, canaries: bool = False, calls: int = 3) -> None:
    async def record() -> None:
        database = Database(database_url)
        await database.migrate()
        recorder = AuditRecorder(database, Redactor(), replica_id="gw-1", signing_key=KEY, checkpoint_every=4)
        await recorder.start()
        try:
            if canaries:
                await record_canaries(recorder)
            for n in range(calls):
                handle = await recorder.record_call(
                    audit_call(AGENT, "crm.lookup", reasoning=f"lookup {n}"), decision="allow"
                )
                await recorder.record_outcome(handle, outcome="ok", timings=Timings(total_ms=5 + n))
        finally:
            await recorder.close()
            await database.close()

    anyio.run(record)


def _tamper(database_url: str, statement: str) -> None:
    async def tamper() -> None:
        database = Database(database_url)
        try:
            async with database.engine.begin() as connection:
                await connection.execute(text(statement))
        finally:
            await database.close()

    anyio.run(tamper)


def test_search_and_tail_print_tables_and_json_without_secrets(database_url, capsys):
    _record(database_url, canaries=True)
    assert audit(database_url, "search", "--config", "gateway.toml") == 0
    table = capsys.readouterr()
    lines = table.out.splitlines()
    assert lines[0].split() == ["TIME", "CALL", "AGENT", "USER", "TOOL", "DECISION", "OUTCOME", "TOTAL", "MS"]
    assert len(lines) == 5 and "payments.charge" in table.out and "backend_error" in table.out
    assert_no_canary(table.out + table.err, "audit search")

    assert audit(database_url, "search", "--config", "gateway.toml", "--tool", "crm.lookup", "--json") == 0
    found = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [call["reasoning"] for call in found] == ["lookup 2", "lookup 1", "lookup 0"]
    assert all(call["outcome"] == "ok" for call in found)

    assert audit(database_url, "search", "--config", "gateway.toml", "--limit", "2", "--since", "1h") == 0
    paged = capsys.readouterr()
    assert len(paged.out.splitlines()) == 3 and "--cursor " in paged.err

    assert audit(database_url, "tail", "--config", "gateway.toml", "--no-follow", "-n", "100") == 0
    tailed = capsys.readouterr()
    assert "payments.charge" in tailed.out and "outcome" in tailed.out
    assert_no_canary(tailed.out + tailed.err, "audit tail")
    assert audit(database_url, "tail", "--config", "gateway.toml", "--no-follow", "-n", "100", "--json") == 0
    assert_no_canary(capsys.readouterr().out, "audit tail --json")


def test_export_writes_the_file_with_a_progress_bar(database_url, tmp_path, capsys):
    _record(database_url, canaries=True)
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"audit.{fmt}"
        assert audit(database_url, "export", "--config", "gateway.toml", "--format", fmt, "--output", str(out)) == 0
        printed = capsys.readouterr()
        assert "exported" in printed.out and str(out) in printed.out
        assert "events" in printed.err and "[###" in printed.err
        assert_no_canary(out.read_text() + printed.out + printed.err, f"audit export --format {fmt}")


def test_verify_exits_0_when_intact_and_1_naming_the_first_bad_entry(database_url, tmp_path, capsys):
    _record(database_url)
    checkpoints = tmp_path / "checkpoints.json"
    public_key = tmp_path / "audit.pub"
    public_key.write_bytes(
        KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert audit(database_url, "checkpoints", "--config", "gateway.toml", "--output", str(checkpoints)) == 0
    assert "wrote 2 checkpoint(s)" in capsys.readouterr().out
    assert len(json.loads(checkpoints.read_text())["checkpoints"]) == 2

    options = ("--checkpoints", str(checkpoints), "--public-key", str(public_key))
    assert audit(database_url, "verify", "--config", "gateway.toml", *options) == 0
    assert "audit log intact: 8 events in 1 chain(s), 2 exported checkpoint(s) checked" in capsys.readouterr().out

    _tamper(database_url, "DELETE FROM audit_events WHERE seq = 3")
    assert audit(database_url, "verify", "--config", "gateway.toml", *options) == 1
    printed = capsys.readouterr().out
    assert "audit log NOT intact: first bad entry: replica gw-1 seq 3: deleted" in printed
    assert audit(database_url, "verify", "--config", "gateway.toml", "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["problems"][0]["kind"] == "deleted"

    with pytest.raises(GatewayError, match="cannot read"):
        audit(database_url, "verify", "--config", "gateway.toml", "--public-key", str(tmp_path / "missing.pem"))


def test_prune_deletes_old_events_and_keeps_the_log_verifiable(database_url, capsys):
    _record(database_url, calls=4)
    assert audit(database_url, "prune", "--config", "gateway.toml", "--older-than", "3d") == 0
    assert "pruned 0 events" in capsys.readouterr().out

    assert audit(database_url, "prune", "--config", "gateway.toml", "--older-than", "0s") == 0
    # Everything up to the last checkpoint goes; that checkpoint stays to anchor the chain.
    assert "replica gw-1: deleted 10 events; chain now starts at seq 11" in capsys.readouterr().out
    _record(database_url, calls=1)
    assert audit(database_url, "verify", "--config", "gateway.toml") == 0
    assert "intact: 4 events" in capsys.readouterr().out
    with pytest.raises(InvalidAuditQuery, match="not a duration"):
        audit(database_url, "prune", "--config", "gateway.toml", "--older-than", "ninety days")


def test_help_lists_every_action(capsys):
    parser = _audit_parser(lambda args: Database("sqlite:///unused.db"))
    with pytest.raises(SystemExit):
        parser.parse_args(["audit", "--help"])
    printed = capsys.readouterr().out
    for action in ("tail", "search", "export", "verify", "checkpoints", "prune"):
        assert action in printed


def test_search_kind_auth_shows_refused_authentications_without_the_credential(database_url, capsys):
    _record(database_url, canaries=True, calls=1)
    assert audit(database_url, "search", "--config", "gateway.toml", "--kind", "auth") == 0
    table = capsys.readouterr()
    lines = table.out.splitlines()
    assert lines[0].split() == ["TIME", "CLIENT", "AGENT", "AUTH", "PATH", "REASON"]
    assert len(lines) == 2 and "10.0.0.9" in lines[1] and "unknown bearer" in lines[1]
    assert_no_canary(table.out + table.err, "audit search --kind auth")

    assert audit(database_url, "search", "--config", "gateway.toml", "--kind", "auth", "--json", "--since", "1h") == 0
    printed = capsys.readouterr().out
    [refused] = [json.loads(line) for line in printed.splitlines()]
    assert refused["kind"] == "auth_refused" and refused["replica"] == "gw-1"
    assert refused["client_address"] == "10.0.0.9" and refused["reason"].startswith("unknown bearer ")
    assert_no_canary(printed, "audit search --kind auth --json")
    assert audit(database_url, "search", "--config", "gateway.toml", "--kind", "auth", "--until", "1h") == 0
    assert len(capsys.readouterr().out.splitlines()) == 1  # the header only: nothing that old

    # Calls stay what a search shows by default: the refusal is not among them.
    assert audit(database_url, "search", "--config", "gateway.toml", "--json") == 0
    assert {call["name"] for call in map(json.loads, capsys.readouterr().out.splitlines())} == {
        "payments.charge",
        "crm.lookup",
    }


def test_search_kind_auth_refuses_filters_only_calls_have(capsys):
    opened: list[argparse.Namespace] = []
    parser = _audit_parser(lambda args: opened.append(args) or Database("sqlite:///unused.db"))
    args = parser.parse_args(["audit", "search", "--kind", "auth", "--tool", "crm.lookup"])
    assert args.run(args) == 2
    assert opened == []  # refused before the database is even opened
    printed = capsys.readouterr()
    assert printed.out == ""
    assert "--tool only filter calls; with --kind auth use --since, --until, --limit and --cursor" in printed.err


def test_search_kind_recovered_shows_calls_a_restart_closed_as_unknown(database_url, capsys):
    async def crash_and_restart() -> str:
        database = Database(database_url)
        await database.migrate()
        try:
            crashed = AuditRecorder(database, Redactor(), replica_id="gw-1")
            await crashed.start()
            handle = await crashed.record_call(audit_call(AGENT, "crm.lookup"), decision="allow")
            await crashed.close()  # with the call still open, as a crash leaves it
            async with AuditRecorder(database, Redactor(), replica_id="gw-1"):
                pass
            return handle.call_id
        finally:
            await database.close()

    call_id = anyio.run(crash_and_restart)
    assert audit(database_url, "search", "--config", "gateway.toml", "--kind", "recovered") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TIME", "REPLICA", "CALLS", "CALL", "IDS"]
    assert len(lines) == 2 and lines[1].split()[1:] == ["gw-1", "1", call_id]


def test_search_help_names_the_decisions_and_kinds_the_log_holds(capsys):
    parser = _audit_parser(lambda args: Database("sqlite:///unused.db"))
    with pytest.raises(SystemExit):
        parser.parse_args(["audit", "search", "--help"])
    printed = " ".join(capsys.readouterr().out.lower().split())
    for decision in ("allow", "deny", "hold", "refused", "invalid_arguments"):
        assert decision in printed, decision
    assert "{call,auth,recovered,approval,console,suspension,tool_pin}" in printed and "held" in printed


def test_search_kind_approval_shows_each_change_with_who_and_what_they_said(database_url, capsys):
    async def record() -> None:
        database = Database(database_url)
        await database.migrate()
        async with AuditRecorder(database, Redactor(), replica_id="gw-1") as recorder:
            await recorder.record_approval_event(
                "01a245f9-0000-7000-8000-000000000001",
                "vote",
                state="approved",
                previous_state="pending",
                actor="maria",
                agent="finance-bot",
                user=None,
                tool="finance__pay_invoice",
                workflow=None,
                comment="checked against the contract",
                details=None,
            )
        await database.close()

    anyio.run(record)
    assert audit(database_url, "search", "--config", "gateway.toml", "--kind", "approval") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["TIME", "APPROVAL", "ACTION", "STATE", "ACTOR", "TOOL", "COMMENT"]
    assert len(lines) == 2
    approval, action, state, actor, tool = lines[1].split()[1:6]
    assert (approval, action, state, actor) == ("01a245f9-0000-7000-8000-000000000001", "vote", "approved", "maria")
    assert tool == "finance__pay_invoice"
    assert lines[1].rstrip().endswith("checked against the contract")
