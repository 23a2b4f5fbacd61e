"""`gateway users` as an operator runs it: people, their keys printed once, and keys that stop working."""

from __future__ import annotations

import json
from pathlib import Path

from harness import run_cli, write_gateway_config


def test_users_create_list_key_revoke_disable(tmp_path: Path) -> None:
    config = str(write_gateway_config(tmp_path, {}))
    created = run_cli("users", "create", "--config", config, "carol", "--role", "treasury", "--role", "audit")
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("agu_") and "not shown again" in created.stdout and "treasury, audit" in created.stdout
    listed = run_cli("users", "list", "--config", config)
    assert "carol" in listed.stdout and "treasury,audit" in listed.stdout and key not in listed.stdout
    another = json.loads(run_cli("users", "key", "--config", config, "carol", "--json").stdout)
    assert another["key"].startswith("agu_") and another["user"] == "carol"
    revoked = run_cli("users", "revoke", "--config", config, another["id"])
    assert f"Revoked key {another['id']} of user 'carol'" in revoked.stdout
    record = json.loads(run_cli("users", "list", "--config", config, "--json").stdout)
    assert record["name"] == "carol" and [k["revoked_at"] is not None for k in record["keys"]] == [False, True]
    assert another["key"] not in json.dumps(record)
    disabled = run_cli("users", "disable", "--config", config, "carol")
    assert "Disabled user 'carol'" in disabled.stdout
    again = run_cli("users", "key", "--config", config, "carol", check=False)
    assert again.returncode == 1 and "disabled" in again.stderr


def test_users_refuse_bad_names_duplicates_and_unknown_ids(tmp_path: Path) -> None:
    config = str(write_gateway_config(tmp_path, {}))
    bad = run_cli("users", "create", "--config", config, "carol smith", check=False)
    assert bad.returncode == 2 and "user name" in bad.stderr
    run_cli("users", "create", "--config", config, "carol")
    twice = run_cli("users", "create", "--config", config, "carol", check=False)
    assert twice.returncode == 1 and "exists already" in twice.stderr
    unknown = run_cli("users", "revoke", "--config", config, "ukey_00000000", check=False)
    assert unknown.returncode == 1 and "ukey_00000000" in unknown.stderr
    nobody = run_cli("users", "disable", "--config", config, "dave", check=False)
    assert nobody.returncode == 1 and "dave" in nobody.stderr
