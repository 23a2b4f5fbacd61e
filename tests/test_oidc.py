"""JWT bearer tokens against a real identity provider: keys generated here, published over HTTP.

Each `LocalIssuer` is a tiny OpenID provider on 127.0.0.1 serving its discovery document and its
JWK set, counting every request, so the tests can see exactly when the gateway fetches keys.
Tokens are signed with real RSA and EC keys; the forged ones are crafted by hand.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from joserfc.jwk import ECKey, RSAKey
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.errors import AuthenticationFailed
from gateway.front.bearer import PRINCIPAL_SCOPE_KEY, BearerAuthentication
from gateway.identity.api_keys import ApiKeyStore
from gateway.identity.authenticators import CompositeAuthenticator
from gateway.identity.claims import ClaimsCheck
from gateway.identity.jwt_auth import JwtAuthenticator
from gateway.identity.principal import Principal
from gateway.identity.signed_tokens import looks_like_jwt
from gateway.settings.auth import IssuerSettings
from gateway.storage import Database
from harness import eventually
from local_issuer import AUDIENCE, Clock, LocalIssuer

pytestmark = pytest.mark.anyio

#: The default `jwks_refetch_interval_seconds`.
REFETCH_INTERVAL = 5.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(document: dict[str, Any]) -> str:
    return b64(json.dumps(document).encode())


def settings_for(issuer: LocalIssuer, **overrides: Any) -> IssuerSettings:
    return IssuerSettings(issuer=issuer.url, audiences=(AUDIENCE,), **overrides)


async def refusal(authenticator: JwtAuthenticator | CompositeAuthenticator, token: str) -> str:
    """The reason a token is refused; fails the test if it is accepted."""
    with pytest.raises(AuthenticationFailed) as caught:
        await authenticator.authenticate(token)
    reason = str(caught.value)
    assert token not in reason
    return reason


@pytest.fixture(scope="module")
def rsa_key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig"})


@pytest.fixture(scope="module")
def ec_key() -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": "ec-1"})


@pytest.fixture
def issuer(rsa_key: RSAKey, clock: Clock) -> Iterator[LocalIssuer]:
    server = LocalIssuer(rsa_key, clock=clock)
    yield server
    server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def authenticator(issuer: LocalIssuer, clock: Clock) -> AsyncIterator[JwtAuthenticator]:
    jwt_authenticator = JwtAuthenticator([settings_for(issuer)], clock=clock)
    yield jwt_authenticator
    await jwt_authenticator.aclose()


# --- accepted tokens ---------------------------------------------------------------------------


async def test_valid_token_names_agent_user_and_roles(issuer: LocalIssuer, authenticator: JwtAuthenticator) -> None:
    token = issuer.token(roles=["finance"], groups=["emea", "finance"], scope="tools:call tools:list")

    principal = await authenticator.authenticate(token)

    assert principal == Principal(
        agent="billing-agent",
        roles=("finance", "emea"),
        user="alice",
        scopes=("tools:call", "tools:list"),
        auth_method="jwt",
        credential_id="token-1",
    )
    # The keys came from the discovery document, fetched once.
    assert issuer.hits["/.well-known/openid-configuration"] == 1
    assert issuer.jwks_hits == 1


async def test_agent_falls_back_to_client_id_and_a_client_acting_for_itself_has_no_user(
    issuer: LocalIssuer, authenticator: JwtAuthenticator
) -> None:
    token = issuer.token(azp=None, client_id="report-bot", sub="report-bot", jti=None)

    principal = await authenticator.authenticate(token)

    assert principal.agent == "report-bot"
    assert principal.user is None
    assert principal.credential_id is None
    assert principal.roles == ()


async def test_roles_from_a_dotted_path_and_a_configured_agent_claim(issuer: LocalIssuer, clock: Clock) -> None:
    settings = settings_for(
        issuer,
        agent_claims=("client.name", "azp"),
        user_claim="preferred_username",
        roles_claims=("realm_access.roles", "https://example.com/claims.roles"),
    )
    authenticator = JwtAuthenticator([settings], clock=clock)
    token = issuer.token(
        client={"name": "crm-agent"},
        preferred_username="bob@example.com",
        realm_access={"roles": ["crm-writer", "offline_access"]},
        **{"https://example.com/claims.roles": ["auditor"]},
    )

    principal = await authenticator.authenticate(token)
    await authenticator.aclose()

    assert principal.agent == "crm-agent"
    assert principal.user == "bob@example.com"
    assert principal.roles == ("crm-writer", "offline_access", "auditor")


async def test_audience_may_be_a_list_and_small_clock_skew_is_tolerated(
    issuer: LocalIssuer, authenticator: JwtAuthenticator
) -> None:
    now = int(issuer.clock())
    token = issuer.token(aud=["https://other.example", AUDIENCE], exp=now - 10, nbf=now + 10, iat=now + 10)

    principal = await authenticator.authenticate(token)

    assert principal.agent == "billing-agent"


async def test_tokens_signed_with_ec_and_rsa_keys_of_the_same_issuer(
    rsa_key: RSAKey, ec_key: ECKey, clock: Clock
) -> None:
    issuer = LocalIssuer(rsa_key, ec_key, clock=clock)
    authenticator = JwtAuthenticator([settings_for(issuer)], clock=clock)
    try:
        by_rsa = await authenticator.authenticate(issuer.token("rsa-1", azp="rsa-agent"))
        by_ec = await authenticator.authenticate(issuer.token("ec-1", azp="ec-agent"))
    finally:
        await authenticator.aclose()
        issuer.stop()

    assert (by_rsa.agent, by_ec.agent) == ("rsa-agent", "ec-agent")
    assert issuer.jwks_hits == 1


# --- refused tokens ----------------------------------------------------------------------------


async def test_expired_token_is_refused(issuer: LocalIssuer, authenticator: JwtAuthenticator) -> None:
    now = int(issuer.clock())
    assert await refusal(authenticator, issuer.token(iat=now - 600, exp=now - 120)) == "token expired"


async def test_token_expires_while_the_gateway_keeps_running(
    issuer: LocalIssuer, authenticator: JwtAuthenticator, clock: Clock
) -> None:
    token = issuer.token()
    await authenticator.authenticate(token)

    clock.advance(300 + 31)

    assert await refusal(authenticator, token) == "token expired"


async def test_token_not_yet_valid_is_refused(issuer: LocalIssuer, authenticator: JwtAuthenticator) -> None:
    reason = await refusal(authenticator, issuer.token(nbf=int(issuer.clock()) + 120))
    assert reason.startswith("token not yet valid")


async def test_token_issued_in_the_future_is_refused(issuer: LocalIssuer, authenticator: JwtAuthenticator) -> None:
    reason = await refusal(authenticator, issuer.token(iat=int(issuer.clock()) + 120))
    assert reason.startswith("token not yet valid")


async def test_token_for_another_resource_is_refused(issuer: LocalIssuer, authenticator: JwtAuthenticator) -> None:
    for audience in ("https://other-resource.example", ["https://a.example", "https://b.example"]):
        reason = await refusal(authenticator, issuer.token(aud=audience))
        assert reason == "token audience is not this gateway"
    reason = await refusal(authenticator, issuer.token(aud=None))
    assert "no audience" in reason


async def test_token_without_expiry_is_refused(issuer: LocalIssuer, authenticator: JwtAuthenticator) -> None:
    reason = await refusal(authenticator, issuer.token(exp=None))
    assert reason.startswith("token has no expiry")


async def test_token_from_an_unknown_issuer_is_refused_without_contacting_it(
    rsa_key: RSAKey, issuer: LocalIssuer, authenticator: JwtAuthenticator, clock: Clock
) -> None:
    stranger = LocalIssuer(rsa_key, clock=clock)
    try:
        reason = await refusal(authenticator, stranger.token())
    finally:
        stranger.stop()

    assert reason == f"unknown token issuer {stranger.url!r}"
    assert sum(stranger.hits.values()) == 0
    assert sum(issuer.hits.values()) == 0


async def test_tampered_payload_has_an_invalid_signature(issuer: LocalIssuer, authenticator: JwtAuthenticator) -> None:
    header, payload, signature = issuer.token(roles=["viewer"]).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["roles"] = ["admin"]
    forged = f"{header}.{segments(claims)}.{signature}"

    assert await refusal(authenticator, forged) == "invalid token signature"


async def test_unsigned_token_is_refused(issuer: LocalIssuer, authenticator: JwtAuthenticator) -> None:
    claims = {"iss": issuer.url, "aud": AUDIENCE, "azp": "billing-agent", "exp": int(issuer.clock()) + 300}
    unsigned = f"{segments({'alg': 'none', 'typ': 'JWT'})}.{segments(claims)}."

    assert await refusal(authenticator, unsigned) == "unsupported token algorithm 'none'"
    assert issuer.jwks_hits == 0


async def test_hmac_token_keyed_with_the_public_key_is_refused(
    issuer: LocalIssuer, rsa_key: RSAKey, authenticator: JwtAuthenticator
) -> None:
    # Algorithm confusion: a verifier that feeds the RSA public key to HMAC would accept this.
    claims = {"iss": issuer.url, "aud": AUDIENCE, "azp": "billing-agent", "exp": int(issuer.clock()) + 300}
    signing_input = f"{segments({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa-1'})}.{segments(claims)}"
    for secret in (rsa_key.as_pem(private=False), json.dumps(rsa_key.as_dict(private=False)).encode()):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()

        assert await refusal(authenticator, f"{signing_input}.{b64(mac)}") == "unsupported token algorithm 'HS256'"


async def test_algorithm_not_allowed_for_the_issuer_is_refused(ec_key: ECKey, clock: Clock) -> None:
    issuer = LocalIssuer(ec_key, clock=clock)
    authenticator = JwtAuthenticator([settings_for(issuer, algorithms=("RS256",))], clock=clock)
    try:
        reason = await refusal(authenticator, issuer.token("ec-1"))
    finally:
        await authenticator.aclose()
        issuer.stop()

    assert reason == "unsupported token algorithm 'ES256'"


async def test_key_of_the_wrong_type_for_the_algorithm_is_refused(issuer: LocalIssuer, clock: Clock) -> None:
    authenticator = JwtAuthenticator([settings_for(issuer, algorithms=("RS256", "ES256"))], clock=clock)
    other_ec = ECKey.generate_key("P-256", parameters={"kid": "rsa-1"})
    issuer.signing_keys["impostor"] = other_ec
    try:
        reason = await refusal(authenticator, issuer.token("impostor"))
    finally:
        await authenticator.aclose()

    assert reason == "signing key 'rsa-1' is not usable with algorithm 'ES256'"


async def test_malformed_tokens_are_refused_clearly(authenticator: JwtAuthenticator) -> None:
    assert (await refusal(authenticator, "abc.def")).startswith("malformed JWT")
    assert (await refusal(authenticator, "e30.e30.c2ln")).startswith("malformed JWT")  # header without alg
    not_json = f"{segments({'alg': 'RS256'})}.{b64(b'not json')}.c2ln"
    assert await refusal(authenticator, not_json) == "malformed JWT: the payload is not JSON"
    deeply_nested = f"{segments({'alg': 'RS256'})}.{b64(b'[' * 50_000)}.c2ln"
    assert await refusal(authenticator, deeply_nested) == "malformed JWT: the payload is not JSON"
    nested = b'{"alg":"RS256","x":' + b"[" * 4000 + b"}"
    nested_header = f"{b64(nested)}.{segments({})}.c2ln"
    assert (await refusal(authenticator, nested_header)).startswith("malformed JWT")


async def test_missing_scope_is_refused(issuer: LocalIssuer, clock: Clock) -> None:
    authenticator = JwtAuthenticator([settings_for(issuer, required_scopes=("mcp:tools",))], clock=clock)
    try:
        assert await refusal(authenticator, issuer.token(scope="openid")) == (
            "token lacks required scope(s): mcp:tools"
        )
        principal = await authenticator.authenticate(issuer.token(scope="openid mcp:tools"))
    finally:
        await authenticator.aclose()

    assert principal.scopes == ("openid", "mcp:tools")
    assert principal.roles == ()


async def test_a_scope_named_like_a_role_grants_no_role(issuer: LocalIssuer, authenticator: JwtAuthenticator) -> None:
    principal = await authenticator.authenticate(issuer.token(scope="admin payments:write"))

    assert principal.roles == ()
    assert principal.scopes == ("admin", "payments:write")


async def test_scopes_from_a_list_claim_and_from_configured_claims(issuer: LocalIssuer, clock: Clock) -> None:
    authenticator = JwtAuthenticator(
        [settings_for(issuer, scopes_claims=("permissions",), required_scopes=("crm:read",))], clock=clock
    )
    try:
        principal = await authenticator.authenticate(
            issuer.token(permissions=["crm:read", "crm:write", "crm:read"], scope="ignored")
        )
        assert await refusal(authenticator, issuer.token(scope="crm:read")) == (
            "token lacks required scope(s): crm:read"
        )
    finally:
        await authenticator.aclose()

    assert principal.scopes == ("crm:read", "crm:write")


async def test_a_configuration_that_lists_scope_among_roles_claims_keeps_scopes_as_roles(
    issuer: LocalIssuer, clock: Clock
) -> None:
    settings = settings_for(issuer, roles_claims=("roles", "groups", "scope"))
    authenticator = JwtAuthenticator([settings], clock=clock)
    try:
        principal = await authenticator.authenticate(issuer.token(groups=["ops"], scope="admin"))
    finally:
        await authenticator.aclose()

    assert principal.roles == ("ops", "admin")
    assert principal.scopes == ("admin",)


def test_required_scopes_need_a_claim_to_read_them_from() -> None:
    with pytest.raises(ValidationError, match="required_scopes needs scopes_claims"):
        IssuerSettings(
            issuer="https://login.example", audiences=("a",), scopes_claims=(), required_scopes=("mcp:tools",)
        )


# --- keys: discovery, rotation, refetch limits, outages ---------------------------------------


async def test_unknown_key_id_refetches_once_then_is_rate_limited(
    issuer: LocalIssuer, authenticator: JwtAuthenticator, clock: Clock
) -> None:
    await authenticator.authenticate(issuer.token())
    assert issuer.jwks_hits == 1
    clock.advance(REFETCH_INTERVAL + 1)
    forger = RSAKey.generate_key(2048)

    for number in range(20):
        forger_key = RSAKey.import_key(forger.as_dict(private=True), parameters={"kid": f"forged-{number}"})
        issuer.signing_keys[f"forged-{number}"] = forger_key
        reason = await refusal(authenticator, issuer.token(f"forged-{number}"))
        assert reason == f"unknown signing key 'forged-{number}' for issuer {issuer.url!r}"

    # The first forged key id caused one refetch; the other nineteen none.
    assert issuer.jwks_hits == 2
    # Genuine tokens keep working throughout, from the cache.
    await authenticator.authenticate(issuer.token("rsa-1"))
    assert issuer.jwks_hits == 2

    clock.advance(REFETCH_INTERVAL + 1)
    await refusal(authenticator, issuer.token("forged-0"))
    assert issuer.jwks_hits == 3


async def test_a_burst_of_first_requests_fetches_the_keys_once(
    issuer: LocalIssuer, authenticator: JwtAuthenticator
) -> None:
    principals: list[Principal] = []

    async def call(number: int) -> None:
        principals.append(await authenticator.authenticate(issuer.token(azp=f"agent-{number}")))

    async with anyio.create_task_group() as group:
        for number in range(25):
            group.start_soon(call, number)

    assert sorted(principal.agent for principal in principals) == sorted(f"agent-{n}" for n in range(25))
    assert issuer.hits["/.well-known/openid-configuration"] == 1
    assert issuer.jwks_hits == 1


async def test_rotated_key_is_accepted_after_one_refetch(
    issuer: LocalIssuer, authenticator: JwtAuthenticator, clock: Clock
) -> None:
    await authenticator.authenticate(issuer.token())
    clock.advance(REFETCH_INTERVAL + 1)
    issuer.publish(ECKey.generate_key("P-256", parameters={"kid": "ec-2"}))

    first = await authenticator.authenticate(issuer.token("ec-2", azp="rotated-agent"))
    second = await authenticator.authenticate(issuer.token("ec-2", azp="rotated-agent"))

    assert first.agent == second.agent == "rotated-agent"
    assert issuer.jwks_hits == 2


async def test_a_key_rotated_seconds_after_the_last_fetch_is_accepted_at_once(
    issuer: LocalIssuer, authenticator: JwtAuthenticator, clock: Clock
) -> None:
    await authenticator.authenticate(issuer.token())
    clock.advance(6)
    issuer.publish(ECKey.generate_key("P-256", parameters={"kid": "ec-2"}))

    principal = await authenticator.authenticate(issuer.token("ec-2", azp="rotated-agent"))

    assert principal.agent == "rotated-agent"
    assert issuer.jwks_hits == 2


async def test_requests_arriving_during_a_fetch_wait_for_it_instead_of_being_refused(
    issuer: LocalIssuer, authenticator: JwtAuthenticator, clock: Clock
) -> None:
    await authenticator.authenticate(issuer.token())
    clock.advance(REFETCH_INTERVAL + 1)
    issuer.publish(ECKey.generate_key("P-256", parameters={"kid": "ec-2"}))
    issuer.jwks_gate = threading.Event()
    agents: list[str] = []

    async def call(number: int) -> None:
        agents.append((await authenticator.authenticate(issuer.token("ec-2", azp=f"agent-{number}"))).agent)

    try:
        async with anyio.create_task_group() as group:
            group.start_soon(call, 0)
            await eventually(lambda: issuer.jwks_hits == 2, what="the refetch to reach the issuer")
            # The first request's fetch is now held at the issuer; these arrive while it is in flight.
            for number in range(1, 20):
                group.start_soon(call, number)
            await anyio.wait_all_tasks_blocked()
            issuer.jwks_gate.set()
    finally:
        issuer.jwks_gate.set()

    assert sorted(agents) == sorted(f"agent-{number}" for number in range(20))
    assert issuer.jwks_hits == 2


async def test_a_flood_of_invented_key_ids_fetches_at_most_once_per_interval(
    issuer: LocalIssuer, authenticator: JwtAuthenticator, clock: Clock
) -> None:
    await authenticator.authenticate(issuer.token())
    clock.advance(REFETCH_INTERVAL + 1)
    refused: list[str] = []

    async def forged(number: int) -> None:
        refused.append(await refusal(authenticator, issuer.token(header={"kid": f"invented-{uuid.uuid4()}"})))

    for _ in range(2):
        async with anyio.create_task_group() as group:
            for number in range(50):
                group.start_soon(forged, number)
    assert len(refused) == 100 and all(reason.startswith("unknown signing key 'invented-") for reason in refused)
    assert issuer.jwks_hits == 2

    clock.advance(REFETCH_INTERVAL - 1)
    await refusal(authenticator, issuer.token(header={"kid": "invented-late"}))
    assert issuer.jwks_hits == 2
    clock.advance(2)
    await refusal(authenticator, issuer.token(header={"kid": "invented-later"}))
    assert issuer.jwks_hits == 3


async def test_key_set_is_renewed_when_the_cache_expires(
    issuer: LocalIssuer, authenticator: JwtAuthenticator, clock: Clock
) -> None:
    await authenticator.authenticate(issuer.token())
    clock.advance(599)
    await authenticator.authenticate(issuer.token())
    assert issuer.jwks_hits == 1

    clock.advance(2)
    await authenticator.authenticate(issuer.token())
    assert issuer.jwks_hits == 2


async def test_cached_keys_keep_working_while_the_key_server_is_down(
    issuer: LocalIssuer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    authenticator = JwtAuthenticator([settings_for(issuer, jwks_cache_seconds=60)], clock=clock)
    try:
        await authenticator.authenticate(issuer.token())
        token = issuer.token(azp="still-working")
        issuer.stop()
        clock.advance(61)

        with caplog.at_level(logging.WARNING, logger="gateway.identity.key_sets"):
            principal = await authenticator.authenticate(token)
            again = await authenticator.authenticate(token)
    finally:
        await authenticator.aclose()

    assert principal.agent == again.agent == "still-working"
    failures = [record for record in caplog.records if record.getMessage() == "cannot fetch signing keys"]
    # One failed attempt, logged; the second call did not try again within the refetch interval.
    assert len(failures) == 1
    assert failures[0].issuer == issuer.url


async def test_key_server_down_from_the_start_is_a_clear_refusal(
    issuer: LocalIssuer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.jwks_status = 503
    authenticator = JwtAuthenticator([settings_for(issuer)], clock=clock)
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.identity.key_sets"):
            reason = await refusal(authenticator, issuer.token())
            again = await refusal(authenticator, issuer.token())
        assert issuer.jwks_hits == 1

        # The provider recovers; the next attempt after the interval succeeds.
        issuer.jwks_status = 200
        clock.advance(REFETCH_INTERVAL + 1)
        principal = await authenticator.authenticate(issuer.token())
    finally:
        await authenticator.aclose()

    assert reason == again == f"cannot fetch signing keys for issuer {issuer.url!r}; try again later"
    assert any("HTTP 503" in str(getattr(record, "error", "")) for record in caplog.records)
    assert principal.agent == "billing-agent"


async def test_unreachable_issuer_is_a_clear_refusal(rsa_key: RSAKey, clock: Clock) -> None:
    issuer = LocalIssuer(rsa_key, clock=clock)
    issuer.stop()
    authenticator = JwtAuthenticator([settings_for(issuer)], clock=clock)
    try:
        reason = await refusal(authenticator, issuer.token())
    finally:
        await authenticator.aclose()

    assert reason.startswith("cannot fetch signing keys for issuer")


async def test_several_issuers_at_once(rsa_key: RSAKey, ec_key: ECKey, clock: Clock) -> None:
    corporate = LocalIssuer(rsa_key, clock=clock)
    partner = LocalIssuer(ec_key, clock=clock)
    authenticator = JwtAuthenticator(
        [
            settings_for(corporate, roles_claims=("groups",)),
            IssuerSettings(
                issuer=partner.url,
                jwks_url=partner.url + "/jwks",
                audiences=("api://gateway",),
                algorithms=("ES256",),
                agent_claims=("client_id",),
                user_claim=None,
                roles_claims=("realm_access.roles",),
            ),
        ],
        clock=clock,
    )
    try:
        employee = await authenticator.authenticate(corporate.token(groups=["staff"]))
        external = await authenticator.authenticate(
            partner.token(aud="api://gateway", client_id="partner-bot", realm_access={"roles": ["supplier"]})
        )
        # The partner's key cannot vouch for a token claiming to come from the corporate issuer.
        partner_key_as_corporate = partner.token(iss=corporate.url, client_id="partner-bot")
        cross_reason = await refusal(authenticator, partner_key_as_corporate)
        # Each issuer's own audience: the corporate audience means nothing to the partner issuer.
        wrong_audience = await refusal(authenticator, partner.token(client_id="partner-bot"))
    finally:
        await authenticator.aclose()
        corporate.stop()
        partner.stop()

    assert employee == Principal(
        agent="billing-agent", roles=("staff",), user="alice", auth_method="jwt", credential_id="token-1"
    )
    assert external == Principal(
        agent="partner-bot", roles=("supplier",), user=None, auth_method="jwt", credential_id="token-1"
    )
    assert cross_reason == f"unknown signing key 'ec-1' for issuer {corporate.url!r}"
    assert wrong_audience == "token audience is not this gateway"
    # The partner's keys came from its configured URL, without discovery.
    assert partner.hits["/.well-known/openid-configuration"] == 0
    assert partner.jwks_hits == 1


# --- claim checks ------------------------------------------------------------------------------

#: A wall-clock time between two whole seconds, so the checks' rounding shows.
NOW = 1_700_000_000.25
SECOND = int(NOW)


def claims_check(**overrides: Any) -> ClaimsCheck:
    return ClaimsCheck(IssuerSettings(issuer="https://idp.example", audiences=(AUDIENCE,), **overrides), lambda: NOW)


def checked(check: ClaimsCheck, **changes: Any) -> str | None:
    """The refusal of a valid token's claims with `changes` (None removes a claim), or None when accepted."""
    claims = {"iss": "https://idp.example", "aud": AUDIENCE, "exp": SECOND + 300, "iat": SECOND, **changes}
    try:
        check.check({name: value for name, value in claims.items() if value is not None})
    except AuthenticationFailed as refused:
        return str(refused)
    return None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": None}, "token has no expiry ('exp'); tokens without one are not accepted"),
        ({"exp": "tomorrow"}, "token claim 'exp' is not a NumericDate"),
        ({"exp": True}, "token claim 'exp' is not a NumericDate"),
        ({"nbf": float("nan")}, "token claim 'nbf' is not a NumericDate"),
        ({"iat": [SECOND]}, "token claim 'iat' is not a NumericDate"),
        ({"exp": SECOND - 30}, "token expired"),
        ({"nbf": SECOND + 31}, "token not yet valid ('nbf' is in the future)"),
        ({"iat": SECOND + 31}, "token not yet valid: it was issued in the future ('iat')"),
        ({"aud": None}, "token names no audience ('aud'), so it may be meant for another resource"),
        ({"aud": ""}, "token audience is not this gateway"),
        ({"aud": []}, "token audience is not this gateway"),
        ({"aud": 7}, "token audience is not this gateway"),
        ({"aud": ["https://other.example"]}, "token audience is not this gateway"),
        # Wrong in two ways: the validity window is checked first, as it always was.
        ({"aud": None, "exp": SECOND - 60}, "token expired"),
    ],
)
def test_claims_are_refused_in_the_gateway_s_own_words(changes: dict[str, Any], reason: str) -> None:
    assert checked(claims_check(), **changes) == reason


def test_the_leeway_bounds_are_whole_seconds_and_a_fractional_leeway_refuses_nothing_more() -> None:
    check = claims_check()
    assert checked(check, exp=SECOND - 29, nbf=SECOND + 30, iat=SECOND + 30) is None
    assert checked(check, exp=SECOND - 30) == "token expired"

    half_second = claims_check(leeway_seconds=0.5)
    assert checked(half_second, exp=SECOND, nbf=SECOND + 1) is None
    assert checked(half_second, exp=SECOND - 1) == "token expired"


def test_claims_the_gateway_reads_by_its_own_rules_are_left_to_them() -> None:
    # `sub` and `jti` matter only where the issuer's settings use them (user_claim, credential id).
    assert checked(claims_check(), sub=42, jti={"not": "a string"}) is None


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["none", "HS256", "HS512", "XS999"])
def test_unsafe_or_unknown_algorithms_cannot_be_configured(algorithm: str) -> None:
    with pytest.raises(ValidationError, match=algorithm):
        IssuerSettings(issuer="https://idp.example", audiences=(AUDIENCE,), algorithms=("RS256", algorithm))


def test_issuer_settings_need_an_audience_and_a_safe_key_url() -> None:
    with pytest.raises(ValidationError, match="audiences"):
        IssuerSettings(issuer="https://idp.example", audiences=())
    with pytest.raises(ValidationError, match="https"):
        IssuerSettings(issuer="http://idp.example", audiences=(AUDIENCE,))
    with pytest.raises(ValidationError, match="https"):
        IssuerSettings(issuer="corp-idp", jwks_url="http://idp.example/keys", audiences=(AUDIENCE,))
    with pytest.raises(ValidationError, match="extra"):
        IssuerSettings.model_validate({"issuer": "https://idp.example", "audiences": [AUDIENCE], "audience": "x"})

    settings = IssuerSettings.model_validate(
        {"issuer": "https://idp.example/", "audiences": [AUDIENCE], "roles_claims": ["groups"]}
    )
    assert settings.discovery_url == "https://idp.example/.well-known/openid-configuration"
    assert settings.roles_claims == ("groups",)
    with pytest.raises(ValidationError):
        settings.leeway_seconds = 0  # type: ignore[misc]


def test_issuer_configured_twice_is_a_mistake() -> None:
    settings = IssuerSettings(issuer="https://idp.example", audiences=(AUDIENCE,))
    with pytest.raises(ValueError, match="twice"):
        JwtAuthenticator([settings, settings])


def test_jwt_shape() -> None:
    assert looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl")
    assert looks_like_jwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.")
    assert not looks_like_jwt("agw_" + "A" * 43)
    assert not looks_like_jwt("a.b")
    assert not looks_like_jwt("a.b.c.d")
    assert not looks_like_jwt("a b.c.d")
    assert not looks_like_jwt(".b.c")


# --- the composite authenticator and the /mcp door --------------------------------------------


async def test_composite_routes_keys_and_tokens(
    tmp_path: Path, issuer: LocalIssuer, authenticator: JwtAuthenticator
) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    await database.migrate()
    try:
        store = ApiKeyStore(database)
        record, key = await store.create("ops-agent", ["ops"])
        both = CompositeAuthenticator(store, authenticator)

        by_key = await both.authenticate(key)
        by_token = await both.authenticate(issuer.token())
        assert await refusal(both, "agw_" + "A" * 43) == "unknown API key"

        keys_only = CompositeAuthenticator(store, None)
        assert await refusal(keys_only, issuer.token()) == "JWT bearer tokens are not enabled on this gateway"
    finally:
        await database.close()

    assert (by_key.agent, by_key.auth_method, by_key.credential_id) == ("ops-agent", "api_key", record.id)
    assert (by_token.agent, by_token.auth_method) == ("billing-agent", "jwt")

    tokens_only = CompositeAuthenticator(None, authenticator)
    assert await refusal(tokens_only, key) == "API keys are not enabled on this gateway"
    with pytest.raises(ValueError, match="enable"):
        CompositeAuthenticator(None, None)


async def test_bearer_door_accepts_a_token_and_explains_a_refusal(
    issuer: LocalIssuer, authenticator: JwtAuthenticator
) -> None:
    async def whoami(request: Request) -> JSONResponse:
        principal: Principal = request.scope[PRINCIPAL_SCOPE_KEY]
        return JSONResponse({"agent": principal.agent, "user": principal.user})

    app = BearerAuthentication(Starlette(routes=[Route("/mcp", whoami)]), CompositeAuthenticator(None, authenticator))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        accepted = await client.get("/mcp", headers={"Authorization": f"Bearer {issuer.token()}"})
        expired_token = issuer.token(exp=int(issuer.clock()) - 120)
        refused = await client.get("/mcp", headers={"Authorization": f"Bearer {expired_token}"})

    assert accepted.status_code == 200
    assert accepted.json() == {"agent": "billing-agent", "user": "alice"}
    assert refused.status_code == 401
    assert refused.json()["error_description"] == "token expired"
    assert 'error_description="token expired"' in refused.headers["www-authenticate"]


async def test_an_oversized_token_is_refused_before_it_is_decoded(issuer: LocalIssuer, clock: Clock) -> None:
    authenticator = JwtAuthenticator([settings_for(issuer)], clock=clock)
    try:
        # Properly signed by the issuer's own key, but 88 KB of claims.
        huge = issuer.token(padding="x" * 66_000)
        assert len(huge) > 88_000
        reason = await refusal(CompositeAuthenticator(None, authenticator), huge)
        assert reason == (
            f"bearer credential is {len(huge)} bytes, over this gateway's limit of 16384 (auth.max_token_bytes); "
            "ask the identity provider for a token with fewer claims"
        )
        # Refused unread: not even the issuer's keys were fetched to check it.
        assert issuer.jwks_hits == 0

        normal = issuer.token()
        exact = CompositeAuthenticator(None, authenticator, max_token_bytes=len(normal))
        assert (await exact.authenticate(normal)).agent == "billing-agent"
        tighter = CompositeAuthenticator(None, authenticator, max_token_bytes=len(normal) - 1)
        assert "over this gateway's limit" in await refusal(tighter, normal)
    finally:
        await authenticator.aclose()


async def test_the_size_limit_applies_to_api_keys_too(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    await database.migrate()
    try:
        store = ApiKeyStore(database)
        _, key = await store.create("ops-agent")
        assert (await CompositeAuthenticator(store, None, max_token_bytes=len(key)).authenticate(key)).agent == (
            "ops-agent"
        )
        reason = await refusal(CompositeAuthenticator(store, None), "agw_" + "A" * 20_000)
        assert reason.startswith("bearer credential is 20004 bytes, over this gateway's limit of 16384")
    finally:
        await database.close()
