"""Approvers signed in with the organisation's identity provider (`[auth.people]`): its settings.

People's sign-in tokens must never pass for agents' tokens or the reverse, and a person must be
named as the agents' tokens name the user they act for; settings that would break either are
refused when the file is loaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError

# --- the settings ---------------------------------------------------------------------------------


def write_config(tmp_path: Path, people: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[auth]
resource = "https://gateway.example/mcp"

[[auth.issuers]]
issuer = "https://login.example/realms/acme"
user_claim = "preferred_username"

[auth.people]
issuer = "https://login.example/realms/acme"
{people}
"""
    )
    return path


def test_auth_people_loads_from_gateway_toml(tmp_path: Path) -> None:
    config = load_config(
        write_config(
            tmp_path,
            'audiences = ["gateway-approvals"]\nuser_claim = "preferred_username"\n'
            'roles_claims = ["realm_access.roles"]',
        ),
        with_connectors=False,
    )
    people = config.gateway.auth.people
    assert people is not None
    assert (people.audiences, people.user_claim, people.roles_claims) == (
        ("gateway-approvals",),
        "preferred_username",
        ("realm_access.roles",),
    )
    assert config.gateway.auth.issuers[0].audiences == ("https://gateway.example/mcp",)


@pytest.mark.parametrize(
    ("people", "refusal"),
    [
        (
            'audiences = ["https://gateway.example/mcp"]\nuser_claim = "preferred_username"',
            "share the audience 'https://gateway.example/mcp', so an agent's token would pass for a person's",
        ),
        (
            'audiences = ["gateway-approvals"]\nuser_claim = "email"',
            "reads the user an agent acts for from 'preferred_username': both must name people alike, or a person "
            "could approve a call made for them",
        ),
        ('user_claim = "preferred_username"', "audiences"),
        ('audiences = ["gateway-approvals"]\nalgorithms = ["HS256"]', "HMAC tokens would be forgeable"),
    ],
)
def test_auth_people_that_would_let_an_agent_pass_for_a_person_is_refused(
    tmp_path: Path, people: str, refusal: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(write_config(tmp_path, people), with_connectors=False)
    assert refusal in " ".join(str(refused.value).split())
