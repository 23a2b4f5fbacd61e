"""Approvers signed in with the organisation's identity provider (`[auth.people]`), on the approvals API.

A real OpenID provider on 127.0.0.1 (`LocalIssuer`) publishes its keys over HTTP and signs both
the agent's access token and the people's sign-in tokens, as one Keycloak realm or Okta org would.
The API runs over ASGI on the real approval and user stores (SQLite and PostgreSQL).
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey
from starlette.applications import Starlette

from gateway.approvals import Approval, ApprovalStore, Requirement, Sealer
from gateway.calls import Call, Origin, Target
from gateway.config import load_config
from gateway.errors import AuthenticationFailed, ConfigError
from gateway.front.approvals_api import OPENAPI_PATH, ApprovalFeed, approvals_routes
from gateway.identity.api_keys import ApiKeyStore
from gateway.identity.jwt_auth import JwtAuthenticator
from gateway.identity.people import PeopleAuthenticator
from gateway.identity.users import UserStore
from gateway.settings.auth import AuthSettings, IssuerSettings, PeopleSettings
from gateway.storage import Database
from local_issuer import AUDIENCE, Clock, LocalIssuer

pytestmark = pytest.mark.anyio

#: The approvals API as the provider knows it: the audience of people's sign-in tokens only.
PEOPLE = "gateway-approvals"
SEALING_KEY = base64.b64encode(os.urandom(32)).decode()


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


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@dataclass
class World:
    issuer: LocalIssuer
    database: Database
    store: ApprovalStore
    client: httpx.AsyncClient

    async def hold(self, approvers: tuple[str, ...], *, quorum: int = 1) -> Approval:
        """A payment the agent made, acting for the user its own token names, held for `approvers`."""
        settings = auth_settings(self.issuer)
        authenticator = JwtAuthenticator(settings.issuers, people=settings.people, clock=self.issuer.clock)
        try:
            agent = await authenticator.authenticate(agent_token(self.issuer))
        finally:
            await authenticator.aclose()
        call = Call(
            "tools/call",
            Origin(agent, session_id="sess-1"),
            "bank.transfer",
            {"account": "DE00 1234", "amount": 1250.5},
            target=Target("bank", "transfer"),
        )
        return await self.store.create(
            call,
            Requirement(approvers=approvers, quorum=quorum, expires_in=timedelta(minutes=30)),
            policy_ids=("p-transfers",),
            reasons=("transfers need approval",),
            redacted_arguments={"account": "DE00 1234", "amount": 1250.5},
            policy_version=None,
        )

    async def approve(self, approval: Approval, credential: str) -> httpx.Response:
        return await self.client.post(
            f"/api/v1/approvals/{approval.id}/approve", json={"comment": "checked"}, headers=bearer(credential)
        )


@pytest.fixture
async def world(issuer: LocalIssuer, database: Database) -> AsyncIterator[World]:
    store = ApprovalStore(database, Sealer([("k1", SEALING_KEY)]))
    feed = ApprovalFeed(store, poll=0.05)
    people = PeopleAuthenticator(UserStore(database), auth_settings(issuer), clock=issuer.clock)
    app = Starlette(routes=approvals_routes(store, people, feed=feed))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            yield World(issuer, database, store, client)
    finally:
        feed.close()
        await people.aclose()


async def test_a_person_signed_in_with_the_idp_approves_and_the_vote_names_them(world: World) -> None:
    approval = await world.hold(("user:carol",))
    world.issuer.hits.clear()
    carol = person(world.issuer, "carol")

    approved = await world.approve(approval, carol)

    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "approved"
    shown = await world.client.get(f"/api/v1/approvals/{approval.id}", headers=bearer(carol))
    assert shown.status_code == 200
    [vote] = shown.json()["votes"]
    assert (vote["user"], vote["approve"], vote["comment"]) == ("carol", True, "checked")
    # Nobody minted carol a key or a row: the provider vouched for her.
    assert await UserStore(world.database).list() == []
    # The issuer's keys were fetched once, and reused for the second request.
    assert world.issuer.jwks_hits == 1


async def test_roles_from_the_token_count_toward_the_quorum_with_user_keys_alike(world: World) -> None:
    approval = await world.hold(("role:finance-managers",), quorum=2)
    _, bobs_key = await UserStore(world.database).create("bob", ("finance-managers",))

    sales = await world.approve(approval, person(world.issuer, "frank", "sales"))
    assert sales.status_code == 403 and sales.json()["error"] == "NotAnApprover"
    first = await world.approve(approval, person(world.issuer, "dan", "finance-managers", "emea"))
    assert first.status_code == 200 and first.json()["state"] == "pending" and first.json()["approvals"] == 1
    second = await world.approve(approval, bobs_key)  # a user key's vote counts toward the same quorum

    assert second.status_code == 200 and second.json()["state"] == "approved"
    votes = {vote["user"]: vote["roles"] for vote in second.json()["votes"]}
    assert votes == {"dan": ["finance-managers", "emea"], "bob": ["finance-managers"]}


async def test_the_user_the_agent_acts_for_cannot_approve_when_signed_in(world: World) -> None:
    approval = await world.hold(("role:finance-managers", "user:alice"))
    assert approval.user == "alice"  # read from the agent's token, by the same claim as people's

    own = await world.approve(approval, person(world.issuer, "alice", "finance-managers"))

    assert own.status_code == 403 and own.json()["error"] == "SelfApproval"
    assert "alice" in own.json()["detail"] and "cannot decide it" in own.json()["detail"]
    assert await world.store.votes(approval.id) == ()


async def test_tokens_and_keys_that_are_not_a_person_s_are_refused_saying_why(world: World) -> None:
    approval = await world.hold(("role:finance-managers",))
    issuer, now = world.issuer, int(world.issuer.clock())
    users = UserStore(world.database)
    await users.create("mallory", ("finance-managers",))
    await users.disable("mallory")
    _, agents_key = await ApiKeyStore(world.database).create("billing-agent", ("finance-managers",))
    # Signed under the issuer's name and key id, with a key the issuer never published.
    published = issuer.signing_keys
    issuer.signing_keys = {"rsa-1": RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})}
    forged_token = person(issuer, "dan", "finance-managers")
    issuer.signing_keys = published

    refusals = {
        "expired": (
            person(issuer, "dan", "finance-managers", iat=now - 600, exp=now - 120),
            "token expired",
        ),
        "forged signature": (forged_token, "invalid token signature"),
        "wrong audience": (
            person(issuer, "dan", "finance-managers", aud="https://crm.example/api"),
            "token audience is not this gateway's sign-in for people: ask the identity provider for a token "
            f"issued for {PEOPLE}",
        ),
        "agent's token": (
            agent_token(issuer, groups=["finance-managers"]),
            "this token identifies an agent, not a person",
        ),
        "agent's token also naming people": (
            agent_token(issuer, aud=[AUDIENCE, PEOPLE]),
            "this token identifies an agent, not a person",
        ),
        "agent's own client-credentials token": (
            person(issuer, "billing-agent", "finance-managers", azp="billing-agent"),
            "this token identifies an agent, not a person: the person it names is the client that obtained it",
        ),
        "agent's API key": (agents_key, "that is an agent's API key"),
        "no person named": (person(issuer, None, "finance-managers"), "token names no person"),
        "a name no user could have": (
            person(issuer, "dan\nadmin", "finance-managers"),
            "names this person 'dan\\nadmin', which is not a usable user name",
        ),
        "disabled local user": (
            person(issuer, "mallory", "finance-managers"),
            "user 'mallory' is disabled on this gateway, so cannot decide held calls",
        ),
    }
    for case, (credential, reason) in refusals.items():
        refused = await world.approve(approval, credential)
        assert refused.status_code == 401, (case, refused.text)
        assert refused.headers["www-authenticate"].startswith("Bearer"), case
        assert refused.json()["error"] == "AuthenticationFailed", case
        assert reason in refused.json()["detail"], (case, refused.json()["detail"])
        assert credential not in refused.text, case
    assert await world.store.votes(approval.id) == ()
    assert (await world.store.get(approval.id)).state.value == "pending"


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


async def test_the_openapi_document_offers_a_person_s_token_beside_a_user_key(world: World) -> None:
    document = (await world.client.get(OPENAPI_PATH)).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["personToken"]["scheme"] == "bearer" and schemes["personToken"]["bearerFormat"] == "JWT"
    assert schemes["userKey"]["scheme"] == "bearer"
    assert document["security"] == [{"userKey": []}, {"personToken": []}]


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
