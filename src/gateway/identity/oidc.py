"""JWT bearer tokens from OIDC providers, checked against each issuer's published keys.

An agent that got an access token from the organisation's identity provider (Entra ID, Okta,
Keycloak, Auth0, ...) presents it as its bearer credential. The gateway accepts it only when the
token is signed by a key the configured issuer publishes (its JWKS), with an algorithm that issuer
is allowed to use, is meant for this gateway (`aud`) and is within its validity window. The token
then ends in the same `Principal` as an API key: the agent is the OAuth client that obtained the
token, the user the subject it acts for, the roles come from the token's role and group claims, and
the scopes it grants from its scope claims. Scopes are kept apart from roles: a scope is what the
client asked for and the user consented to, often chosen by the client itself, so a token whose
scope says `admin` must not put the agent in `Role::"admin"`.

Only asymmetric algorithms are accepted. `none` would accept forged tokens, and an HMAC
algorithm would let anyone who knows the issuer's *public* key sign tokens (the classic
algorithm-confusion attack), so neither can be configured. Keys are fetched over HTTP and cached;
an unknown key id triggers at most one refetch per `jwks_refetch_interval_seconds`, so a flood of
tokens naming invented keys cannot turn the gateway into a weapon against the identity provider.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anyio
import httpx
from joserfc.errors import JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import JWKRegistry, Key
from joserfc.jws import CompactSignature, JWSRegistry, extract_compact, validate_compact

from gateway.errors import AuthenticationFailed
from gateway.identity.principal import Principal
from gateway.settings.auth import SUPPORTED_ALGORITHMS, IssuerSettings, check_key_url

logger = logging.getLogger(__name__)

AUTH_METHOD = "jwt"

_SEGMENT = r"[A-Za-z0-9_-]+"
#: Header and payload are never empty; the signature segment is empty only in unsigned
#: (`alg: none`) tokens, which still count as JWTs so that they are refused as such.
_JWT_PATTERN = re.compile(rf"{_SEGMENT}\.{_SEGMENT}\.[A-Za-z0-9_-]*")
_HTTP_TIMEOUT_SECONDS = 10.0
_MAX_AGENT_NAME_LENGTH = 256
#: How much of an attacker-chosen value (issuer, key id, algorithm) a refusal may quote.
_MAX_QUOTED_LENGTH = 80


def looks_like_jwt(credential: str) -> bool:
    """Whether a bearer credential has the shape of a JWT: three base64url segments.

    Only the shape is checked, so that a credential can be routed to the right authenticator
    before anything is decoded; API keys (`agw_...`) never contain a dot.
    """
    return _JWT_PATTERN.fullmatch(credential) is not None


class JwtAuthenticator:
    """Turns a JWT from one of the configured issuers into a `Principal`, or refuses it saying why.

    `http_client` fetches discovery documents and key sets; when none is given the authenticator
    owns one and `aclose` closes it. `clock` is wall-clock time in seconds (token times are
    wall-clock), replaceable for tests; it also times the key cache.
    """

    def __init__(
        self,
        issuers: Sequence[IssuerSettings],
        *,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not issuers:
            raise ValueError("configure at least one token issuer")
        self._owns_client = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=_HTTP_TIMEOUT_SECONDS, follow_redirects=False)
        self._clock = clock
        self._issuers: dict[str, _Issuer] = {}
        for settings in issuers:
            if settings.issuer in self._issuers:
                raise ValueError(f"token issuer {settings.issuer!r} is configured twice")
            self._issuers[settings.issuer] = _Issuer(settings, self._http, clock)
        self._algorithms = frozenset(alg for settings in issuers for alg in settings.algorithms)

    async def aclose(self) -> None:
        """Close the HTTP client if this authenticator created it."""
        if self._owns_client:
            await self._http.aclose()

    async def authenticate(self, token: str) -> Principal:
        """The principal a token speaks for, or `AuthenticationFailed` naming what was wrong.

        The signature is checked before any claim is trusted; the issuer is chosen by the
        unverified `iss` only to know whose keys must have signed the token.
        """
        if not looks_like_jwt(token):
            raise AuthenticationFailed("malformed JWT: expected three base64url segments")
        signed = _parse(token)
        header = signed.protected
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise AuthenticationFailed(f"unsupported token algorithm {_quoted(algorithm)}")
        claims = _claims(signed)
        issuer_name = claims.get("iss")
        if issuer_name is None:
            raise AuthenticationFailed("token names no issuer ('iss')")
        issuer = self._issuers.get(issuer_name) if isinstance(issuer_name, str) else None
        if issuer is None:
            raise AuthenticationFailed(f"unknown token issuer {_quoted(issuer_name)}")
        await issuer.verify_signature(signed, algorithm)
        issuer.check_claims(claims, self._clock())
        return issuer.principal(claims)


class _Issuer:
    """One configured issuer: its key cache, its algorithm registry and its claim mapping."""

    def __init__(self, settings: IssuerSettings, http: httpx.AsyncClient, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._registry = _registry(settings.algorithms)
        self._keys = _KeyCache(settings, http, clock)

    async def verify_signature(self, signed: CompactSignature, algorithm: str) -> None:
        settings = self.settings
        if algorithm not in settings.algorithms:
            raise AuthenticationFailed(
                f"unsupported token algorithm {_quoted(algorithm)} for issuer {_quoted(settings.issuer)}"
            )
        try:
            self._registry.check_header(signed.protected)
            model = self._registry.get_alg(algorithm)
        except JoseError as error:
            raise AuthenticationFailed(f"malformed JWT header: {error.description}") from None
        kid = signed.protected.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise AuthenticationFailed("malformed JWT header: 'kid' must be a string")
        key = await self._keys.key_for(kid, model)
        try:
            valid = validate_compact(signed, key, registry=self._registry)
        except JoseError as error:
            raise AuthenticationFailed(f"token cannot be verified: {error.description}") from None
        if not valid:
            raise AuthenticationFailed("invalid token signature")

    def check_claims(self, claims: Mapping[str, Any], now: float) -> None:
        settings = self.settings
        leeway = settings.leeway_seconds
        expires = _numeric_date(claims, "exp")
        if expires is None:
            raise AuthenticationFailed("token has no expiry ('exp'); tokens without one are not accepted")
        if now - leeway >= expires:
            raise AuthenticationFailed("token expired")
        not_before = _numeric_date(claims, "nbf")
        if not_before is not None and now + leeway < not_before:
            raise AuthenticationFailed("token not yet valid ('nbf' is in the future)")
        issued_at = _numeric_date(claims, "iat")
        if issued_at is not None and now + leeway < issued_at:
            raise AuthenticationFailed("token not yet valid: it was issued in the future ('iat')")
        audience = claims.get("aud")
        if audience is None:
            raise AuthenticationFailed("token names no audience ('aud'), so it may be meant for another resource")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or not any(
            isinstance(value, str) and value in settings.audiences for value in audiences
        ):
            raise AuthenticationFailed("token audience is not this gateway")
        if settings.required_scopes:
            granted = set(_claimed_words(claims, settings.scopes_claims))
            missing = [scope for scope in settings.required_scopes if scope not in granted]
            if missing:
                raise AuthenticationFailed(f"token lacks required scope(s): {' '.join(missing)}")

    def principal(self, claims: Mapping[str, Any]) -> Principal:
        settings = self.settings
        agent = _agent(claims, settings.agent_claims)
        user: str | None = None
        if settings.user_claim is not None:
            value = _lookup(claims, settings.user_claim)
            if value is not None and not isinstance(value, str):
                raise AuthenticationFailed(f"token claim {settings.user_claim!r} is not a string")
            # A client-credentials token's subject is often the client itself: it acts for nobody.
            user = value if value and value != agent else None
        jti = claims.get("jti")
        return Principal(
            agent=agent,
            roles=_claimed_words(claims, settings.roles_claims),
            scopes=_claimed_words(claims, settings.scopes_claims),
            user=user,
            auth_method=AUTH_METHOD,
            credential_id=jti if isinstance(jti, str) and jti else None,
        )


class _KeySetUnavailable(Exception):
    """The issuer's discovery document or key set could not be fetched or read (internal)."""


class _KeyCache:
    """An issuer's signing keys, fetched on first use, renewed when stale or when a new key id shows up.

    Every fetch attempt, scheduled or not, is at least `jwks_refetch_interval_seconds` apart:
    that bounds the load the gateway puts on the provider whatever tokens arrive, and while the
    provider is down the keys already fetched keep verifying tokens. A request that finds a fetch
    in flight waits for it rather than being refused: right after a rotation, every request with
    the new key id shares the one fetch its first request started.
    """

    def __init__(self, settings: IssuerSettings, http: httpx.AsyncClient, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._http = http
        self._clock = clock
        self._jwks_url = settings.jwks_url
        self._keys: tuple[Key, ...] | None = None
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf
        self._attempts = 0
        self._lock = anyio.Lock()

    async def key_for(self, kid: str | None, algorithm: JWSAlgModel) -> Key:
        if self._keys is None or self._clock() - self._fetched_at >= self._settings.jwks_cache_seconds:
            await self._refresh("key set not fetched yet" if self._keys is None else "cached key set is stale")
        key = self._find(kid, algorithm)
        # The lock is held exactly while a fetch is in flight.
        if key is None and (self._lock.locked() or self._may_fetch()):
            await self._refresh(f"unknown key id {_quoted(kid)}")
            key = self._find(kid, algorithm)
        if key is None:
            raise AuthenticationFailed(
                f"unknown signing key {_quoted(kid)} for issuer {_quoted(self._settings.issuer)}"
            )
        return key

    def _find(self, kid: str | None, algorithm: JWSAlgModel) -> Key | None:
        keys = self._keys or ()
        if kid is not None:
            named = [key for key in keys if key.kid == kid]
            if not named:
                return None
            for key in named:
                if _fits(key, algorithm):
                    return key
            raise AuthenticationFailed(f"signing key {_quoted(kid)} is not usable with algorithm {algorithm.name!r}")
        fitting = [key for key in keys if _fits(key, algorithm)]
        if len(fitting) == 1:
            return fitting[0]
        if not fitting:
            raise AuthenticationFailed(f"the issuer publishes no signing key for algorithm {algorithm.name!r}")
        raise AuthenticationFailed("token names no signing key ('kid') and the issuer publishes several")

    def _may_fetch(self) -> bool:
        return self._clock() - self._attempted_at >= self._settings.jwks_refetch_interval_seconds

    async def _refresh(self, reason: str) -> None:
        attempts_seen = self._attempts
        async with self._lock:
            if self._attempts != attempts_seen:
                # Another request fetched while this one waited: use its result.
                self._raise_if_no_keys()
                return
            if not self._may_fetch():
                self._raise_if_no_keys()
                return
            self._attempts += 1
            self._attempted_at = self._clock()
            try:
                keys = await self._download()
            except _KeySetUnavailable as error:
                logger.warning(
                    "cannot fetch signing keys",
                    extra={
                        "issuer": self._settings.issuer,
                        "url": self._jwks_url or self._settings.discovery_url,
                        "error": str(error),
                        "cached_keys": len(self._keys or ()),
                    },
                )
                self._raise_if_no_keys()
                return
            logger.info(
                "fetched signing keys",
                extra={"issuer": self._settings.issuer, "keys": len(keys), "reason": reason},
            )
            self._keys = keys
            self._fetched_at = self._clock()

    def _raise_if_no_keys(self) -> None:
        if self._keys is None:
            raise AuthenticationFailed(
                f"cannot fetch signing keys for issuer {_quoted(self._settings.issuer)}; try again later"
            )

    async def _download(self) -> tuple[Key, ...]:
        if self._jwks_url is None:
            self._jwks_url = await self._discover()
        document = await self._get_json(self._jwks_url)
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise _KeySetUnavailable(f"{self._jwks_url} is not a JWK set (no 'keys' list)")
        keys: list[Key] = []
        for entry in entries:
            key = _signing_key(entry)
            if key is not None:
                keys.append(key)
        if not keys:
            raise _KeySetUnavailable(f"{self._jwks_url} holds no usable public signing key")
        return tuple(keys)

    async def _discover(self) -> str:
        url = self._settings.discovery_url
        document = await self._get_json(url)
        if document.get("issuer") != self._settings.issuer:
            # OpenID Connect Discovery 1.0, section 4.3: the document must name the same issuer.
            raise _KeySetUnavailable(f"{url} names issuer {document.get('issuer')!r}, not {self._settings.issuer!r}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise _KeySetUnavailable(f"{url} has no 'jwks_uri'")
        try:
            check_key_url(jwks_uri, "jwks_uri")
        except ValueError as error:
            raise _KeySetUnavailable(f"{url}: {error}") from None
        return jwks_uri

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as error:
            raise _KeySetUnavailable(f"GET {url} failed: {error!r}") from error
        if response.status_code != 200:
            raise _KeySetUnavailable(f"GET {url} answered HTTP {response.status_code}")
        try:
            document = response.json()
        except ValueError as error:
            raise _KeySetUnavailable(f"GET {url} did not return JSON") from error
        if not isinstance(document, dict):
            raise _KeySetUnavailable(f"GET {url} did not return a JSON object")
        return document


def _registry(algorithms: Sequence[str]) -> JWSRegistry:
    """A JWS registry that allows exactly `algorithms`.

    Unknown header parameters are tolerated (providers add their own, such as `x5t` or `nonce`),
    but `crit` ones are still refused, as RFC 7515 requires. The size limits are widened from the
    library defaults so that 8192-bit RSA signatures and headers carrying certificates still fit.
    """
    registry = JWSRegistry(algorithms=list(algorithms), strict_check_header=False)
    registry.max_header_length = 8192
    registry.max_signature_length = 2048
    return registry


_PARSING_REGISTRY = _registry(sorted(SUPPORTED_ALGORITHMS))


def _parse(token: str) -> CompactSignature:
    try:
        signed = extract_compact(token.encode("ascii"), registry=_PARSING_REGISTRY)
    except (JoseError, ValueError, RecursionError) as error:
        # RecursionError: JSON nested deeper than the parser goes, sent to crash the request.
        detail = error.description if isinstance(error, JoseError) else "undecodable header or payload"
        raise AuthenticationFailed(f"malformed JWT: {detail}") from None
    if not isinstance(signed.protected, dict):
        raise AuthenticationFailed("malformed JWT: the header is not a JSON object")
    if "b64" in signed.protected:
        raise AuthenticationFailed("malformed JWT: the 'b64' header is not accepted in a JWT")
    return signed


def _claims(signed: CompactSignature) -> dict[str, Any]:
    try:
        claims = json.loads(signed.payload)
    except (ValueError, RecursionError):
        raise AuthenticationFailed("malformed JWT: the payload is not JSON") from None
    if not isinstance(claims, dict):
        raise AuthenticationFailed("malformed JWT: the payload is not a JSON object")
    return claims


def _signing_key(entry: object) -> Key | None:
    """A JWK set entry as a verification key, or None for entries that must not or cannot verify.

    Symmetric (`oct`) entries are skipped: a key anyone can download is no secret. Entries marked
    for encryption, and key types this library does not know, are skipped as RFC 7517 allows.
    """
    if not isinstance(entry, dict) or entry.get("kty") == "oct" or entry.get("use", "sig") != "sig":
        return None
    try:
        key = JWKRegistry.import_key(entry)
        key.ensure_kid()
    except (JoseError, ValueError, TypeError, KeyError) as error:
        logger.info("ignoring unusable key in key set", extra={"kid": entry.get("kid"), "error": str(error)})
        return None
    return key


def _fits(key: Key, algorithm: JWSAlgModel) -> bool:
    try:
        algorithm.check_key(key)
    except JoseError:
        return False
    return True


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AuthenticationFailed(f"token claim {name!r} is not a NumericDate")
    return float(value)


def _lookup(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by dotted path into nested objects (`realm_access.roles`).

    The literal name wins, because some providers use URLs with dots as claim names.
    """
    if path in claims:
        return claims[path]
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _words(value: object) -> list[str]:
    """Role-like names from a claim: a list of strings, or one space-separated string (`scope`)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str) and item]
    return []


def _claimed_words(claims: Mapping[str, Any], paths: Sequence[str]) -> tuple[str, ...]:
    """The names found under any of `paths`, each once, in the order the claims list them."""
    found: dict[str, None] = {}
    for path in paths:
        found.update(dict.fromkeys(_words(_lookup(claims, path))))
    return tuple(found)


def _agent(claims: Mapping[str, Any], names: Sequence[str]) -> str:
    for name in names:
        value = _lookup(claims, name)
        if value is None:
            continue
        if not isinstance(value, str) or not value or len(value) > _MAX_AGENT_NAME_LENGTH or not value.isprintable():
            raise AuthenticationFailed(f"token claim {name!r} is not a usable agent name")
        return value
    raise AuthenticationFailed(f"token names no agent: it has none of the claims {', '.join(names)}")


def _quoted(value: object) -> str:
    """An attacker-chosen value made safe to put in a refusal: short, quoted, ASCII only."""
    if not isinstance(value, str):
        return type(value).__name__ if value is not None else "(none)"
    if len(value) > _MAX_QUOTED_LENGTH:
        value = value[:_MAX_QUOTED_LENGTH] + "..."
    return ascii(value)
