"""Configuration files: what loads, and what a person editing a file is told when it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config, load_connector, load_connectors
from gateway.errors import ConfigError
from gateway.settings.connectors import McpHttpConnector, McpStdioConnector
from harness import free_port, run_cli, write_gateway_config


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_stdio_and_http_connectors_load_with_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TOKEN", "s3cret-value")
    write(
        tmp_path / "connectors" / "crm.toml",
        """
kind = "mcp-stdio"
command = ["${PYTHON}", "server.py"]
env = { CRM_TOKEN = "${CRM_TOKEN}" }
cwd = "backend"
labels = ["customer-data"]

[tools.update_record]
labels = ["writes"]
description = "Change one field of a customer record."

[tools.delete_everything]
enabled = false
""",
    )
    write(
        tmp_path / "connectors" / "billing.toml",
        """
kind = "mcp-http"
url = "https://billing.example/mcp"
headers = { Authorization = "Bearer ${CRM_TOKEN}" }
timeout = 5
""",
    )
    write(tmp_path / "gateway.toml", "[server]\nport = 9000\n")
    config = load_config(tmp_path / "gateway.toml")
    billing, crm = config.connectors
    assert isinstance(crm, McpStdioConnector) and isinstance(billing, McpHttpConnector)
    assert crm.name == "crm" and crm.command[1] == "server.py"
    assert crm.cwd == (tmp_path / "connectors" / "backend").resolve()
    assert crm.env["CRM_TOKEN"].get_secret_value() == "s3cret-value"
    assert crm.tools["update_record"].labels == ("writes",)
    assert crm.tools["delete_everything"].enabled is False
    assert billing.headers["Authorization"].get_secret_value() == "Bearer s3cret-value"
    assert billing.timeout == 5
    # Secrets never show in a repr or a dump, which is what ends up in logs.
    assert "s3cret-value" not in repr(config) and "s3cret-value" not in str(config.model_dump())


def test_relative_sqlite_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    write(tmp_path / "connectors" / ".keep", "")
    write(tmp_path / "gateway.toml", '[storage]\nurl = "sqlite:///state/gw.db"\n')
    config = load_config(tmp_path / "gateway.toml")
    assert config.gateway.storage.url == f"sqlite:///{tmp_path.resolve() / 'state' / 'gw.db'}"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('kind = "mcp-stdio"\ncommand = ["x"]\ntimeout = "soon"\n', "bad.toml:3: key 'timeout'"),
        ('kind = "mcp-stdio"\n\n\ncommand = []\n', "bad.toml:4: key 'command'"),
        ('kind = "mcp-http"\nurl = "ftp://nowhere"\n', "bad.toml:2: key 'url': must be an http"),
        ('kind = "mcp-carrier-pigeon"\n', "bad.toml:1: key 'kind'"),
        ('command = ["x"]\n', "bad.toml: key 'kind' is missing"),
        (
            'kind = "mcp-stdio"\ncommand = ["x"]\n[tools.search]\nenabled = "maybe"\n',
            "bad.toml:4: key 'tools.search.enabled'",
        ),
        ('kind = "mcp-stdio"\ncommand = ["x"]\nsurprise = 1\n', "bad.toml:3: key 'surprise': Extra inputs"),
        ('kind = "mcp-stdio"\ncommand = ["x"\n', "bad.toml: invalid TOML"),
        (
            'kind = "mcp-http"\nurl = "http://h/mcp"\nheaders = { X-Key = "${NOT_SET_ANYWHERE_42}" }\n',
            "bad.toml:3: key 'headers.X-Key' refers to environment variable NOT_SET_ANYWHERE_42, which is not set",
        ),
    ],
)
def test_bad_connector_file_names_file_line_and_key(tmp_path: Path, body: str, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_connector(write(tmp_path / "bad.toml", body))
    assert expected in str(error.value)


def test_bad_connector_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="key 'name'"):
        load_connector(write(tmp_path / "x.toml", 'name = "crm/evil"\nkind = "mcp-stdio"\ncommand = ["x"]\n'))


def test_duplicate_connector_name_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "connectors" / "a.toml", 'name = "crm"\nkind = "mcp-stdio"\ncommand = ["x"]\n')
    write(tmp_path / "connectors" / "b.toml", 'name = "crm"\nkind = "mcp-stdio"\ncommand = ["y"]\n')
    write(tmp_path / "gateway.toml", "")
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "gateway.toml")
    assert "b.toml: connector name 'crm' is already used by" in str(error.value)
    assert "a.toml" in str(error.value)


def test_bad_gateway_setting_names_line(tmp_path: Path) -> None:
    write(tmp_path / "gateway.toml", '[server]\nhost = "0.0.0.0"\nport = 70000\n')
    with pytest.raises(ConfigError, match=r"gateway.toml:3: key 'server.port'"):
        load_config(tmp_path / "gateway.toml")


@pytest.mark.parametrize("separator", [".", "::", "", "/"])
def test_separator_must_be_name_safe(tmp_path: Path, separator: str) -> None:
    write(tmp_path / "gateway.toml", f'[server]\nname_separator = "{separator}"\n')
    with pytest.raises(ConfigError, match="name_separator"):
        load_config(tmp_path / "gateway.toml")


def test_serve_refuses_to_start_on_a_bad_connector_file(tmp_path: Path) -> None:
    write_gateway_config(tmp_path, {"broken": 'kind = "mcp-stdio"\ncommand = "not a list"\n'})
    result = run_cli("serve", "--config", str(tmp_path / "gateway.toml"), "--port", str(free_port()), check=False)
    assert result.returncode == 1
    assert "broken.toml:2: key 'command'" in result.stderr


def test_serve_refuses_duplicate_connector_names(tmp_path: Path) -> None:
    write_gateway_config(
        tmp_path,
        {
            "one": 'name = "same"\nkind = "mcp-stdio"\ncommand = ["x"]\n',
            "two": 'name = "same"\nkind = "mcp-stdio"\ncommand = ["x"]\n',
        },
    )
    result = run_cli("serve", "--config", str(tmp_path / "gateway.toml"), "--port", str(free_port()), check=False)
    assert result.returncode == 1
    assert "connector name 'same' is already used" in result.stderr


@pytest.mark.parametrize(
    ("file", "body", "expected"),
    [
        (
            "sales__crm.toml",
            'kind = "mcp-stdio"\ncommand = ["x"]\n',
            "sales__crm.toml:1: the file name gives connector name 'sales__crm', which contains the name separator "
            "'__', so exposed names would be ambiguous (tool 'x' of 'sales__crm' and tool 'crm__x' of a connector "
            "'sales' would both be 'sales__crm__x')",
        ),
        (
            "crm.toml",
            'kind = "mcp-stdio"\n\nname = "crm_"\ncommand = ["x"]\n',
            "crm.toml:3: key 'name': connector name 'crm_' ends with '_', the start of the name separator '__'",
        ),
    ],
)
def test_connector_name_that_makes_exposed_names_ambiguous_is_refused(
    tmp_path: Path, file: str, body: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_connector(write(tmp_path / file, body))
    assert expected in str(error.value)
    assert 'choose another name (set name = "..." in the file, or rename the file)' in str(error.value)


def test_ambiguous_connector_names_follow_the_configured_separator(tmp_path: Path) -> None:
    write(tmp_path / "connectors" / "sales_crm.toml", 'kind = "mcp-stdio"\ncommand = ["x"]\n')
    write(tmp_path / "gateway.toml", "")
    assert [c.name for c in load_config(tmp_path / "gateway.toml").connectors] == ["sales_crm"]
    write(tmp_path / "gateway.toml", '[server]\nname_separator = "_"\n')
    with pytest.raises(ConfigError, match=r"sales_crm.toml:1: the file name .* contains the name separator '_'"):
        load_config(tmp_path / "gateway.toml")


def test_serve_refuses_connector_names_whose_tools_could_share_an_exposed_name(tmp_path: Path) -> None:
    write_gateway_config(
        tmp_path,
        {
            "sales": 'kind = "mcp-stdio"\ncommand = ["x"]\n',
            "crm": 'name = "sales__crm"\nkind = "mcp-stdio"\ncommand = ["x"]\n',
        },
    )
    result = run_cli("serve", "--config", str(tmp_path / "gateway.toml"), "--port", str(free_port()), check=False)
    assert result.returncode == 1
    assert "crm.toml:1: key 'name': connector name 'sales__crm' contains the name separator '__'" in result.stderr


@pytest.mark.parametrize(("file", "body"), [("gateway.toml", ""), ("erp.toml", 'name = "gateway"\n')])
def test_a_connector_may_not_take_the_name_of_the_gateways_own_tools(tmp_path: Path, file: str, body: str) -> None:
    write(tmp_path / "connectors" / file, body + 'kind = "mcp-stdio"\ncommand = ["x"]\n')
    with pytest.raises(ConfigError) as error:
        load_connectors(tmp_path / "connectors")
    assert f"{file}: connector name 'gateway' is reserved for the gateway's own tools" in str(error.value)
    assert "gateway__approval_status" in str(error.value)


def test_a_console_sign_in_without_its_identity_provider_names_the_table_to_fix(tmp_path: Path) -> None:
    write(tmp_path / "connectors" / ".keep", "")
    write(tmp_path / "gateway.toml", '[server]\nhost = "127.0.0.1"\n\n[console.oidc]\nclient_id = "gateway-console"\n')
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "gateway.toml")
    assert str(error.value).endswith(
        "gateway.toml:4: key 'console': [console.oidc] signs people in with the identity provider [auth.people] "
        "names, and [auth.people] is not configured: add it, with 'gateway-console' among its audiences"
    )
