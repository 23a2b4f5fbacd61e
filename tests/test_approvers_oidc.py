"""Approvers signed in with the organisation's identity provider (`[auth.people]`).

A real OpenID provider on 127.0.0.1 (`LocalIssuer`) publishes its keys over HTTP and signs both
the agent's access token and the people's sign-in tokens, as one Keycloak realm or Okta org would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc.jwk import RSAKey

from gateway.config import load_config
from gateway.errors import AuthenticationFailed, ConfigError
from gateway.identity.jwt_auth import JwtAuthenticator
from gateway.identity.people import PeopleAuthenticator
from gateway.identity.users import UserStore
from gateway.settings.auth import AuthSettings, IssuerSettings, PeopleSettings
from gateway.storage import Database
from local_issuer import AUDIENCE, Clock, LocalIssuer

pytestmark = pytest.mark.anyio

#: The approvals API as the provider knows it: the audience of people's sign-in tokens only.
PEOPLE = "gateway-approvals"


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})


@pytest.fixture
def issuer(rsa_key: RSAKey) -> Iterator[LocalIssuer]:
    server = LocalIssuer(rsa_key, clock=Clock())
    yield server
    server.stop()


def auth_settings(issuer: LocalIssuer, *, people: bool = True) -> AuthSettings:
    """One provider for agents and people, reading both by `preferred_username`, people's roles from `groups`."""
    return AuthSettings(
        issuers=(IssuerSettings(issuer=issuer.url, audiences=(AUDIENCE,), user_claim="preferred_username"),),
        people=PeopleSettings(
            issuer=issuer.url, audiences=(PEOPLE,), user_claim="preferred_username", roles_claims=("groups",)
        )
        if people
        else None,
    )


def person(issuer: LocalIssuer, name: str | None, *groups: str, **claims: Any) -> str:
    """A person's sign-in token, as the provider issues it to the approvals client for them."""
    person_claims = {"aud": PEOPLE, "azp": "approvals-console", "sub": f"0b1e-{name}", "preferred_username": name}
    return issuer.token(**{**person_claims, "groups": list(groups), **claims})


def agent_token(issuer: LocalIssuer, **claims: Any) -> str:
    """The billing agent's access token for the gateway's /mcp, acting for alice."""
    return issuer.token(**{"aud": AUDIENCE, "azp": "billing-agent", "preferred_username": "alice", **claims})


async def test_a_person_s_token_is_refused_at_the_agents_door(issuer: LocalIssuer) -> None:
    settings = auth_settings(issuer)
    agents = JwtAuthenticator(settings.issuers, people=settings.people, clock=issuer.clock)
    try:
        principal = await agents.authenticate(agent_token(issuer))
        assert (principal.agent, principal.user) == ("billing-agent", "alice")
        for token in (person(issuer, "carol", "finance-managers"), agent_token(issuer, aud=[AUDIENCE, PEOPLE])):
            with pytest.raises(AuthenticationFailed, match="this token identifies a person, not an agent"):
                await agents.authenticate(token)
    finally:
        await agents.aclose()


async def test_without_auth_people_only_user_keys_sign_people_in(issuer: LocalIssuer, database: Database) -> None:
    users = UserStore(database)
    people = PeopleAuthenticator(users, auth_settings(issuer, people=False), clock=issuer.clock)
    try:
        _, key = await users.create("bob", ("finance-managers",))
        assert (await people.authenticate(key)).name == "bob"
        with pytest.raises(AuthenticationFailed, match=r"\[auth.people\] is not configured"):
            await people.authenticate(person(issuer, "carol"))
        with pytest.raises(AuthenticationFailed, match="this token identifies an agent, not a person"):
            await people.authenticate(agent_token(issuer))
    finally:
        await people.aclose()
    assert issuer.jwks_hits == 0  # nothing was verified, so nothing was fetched


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
