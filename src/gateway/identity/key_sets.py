"""An issuer's signing keys (its JWK set): fetched on first use, cached, refetched when stale or rotated.

Every fetch attempt, scheduled or not, is at least `jwks_refetch_interval_seconds` apart: that
bounds the load the gateway puts on the provider whatever tokens arrive, so a flood of tokens
naming invented key ids cannot turn the gateway into a weapon against the identity provider.
While the provider is down, the keys already fetched keep verifying tokens.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import anyio
import httpx
from joserfc.errors import JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import JWKRegistry, Key

from gateway.errors import AuthenticationFailed
from gateway.identity.discovery import IssuerDocumentUnavailable, discover_jwks_uri, fetch_json_object
from gateway.identity.quoting import quoted
from gateway.settings.auth import TokenIssuer

logger = logging.getLogger(__name__)


class KeySet:
    """One issuer's verification keys, renewed when stale or when a token names a key id not seen yet.

    A request that finds a fetch in flight waits for it rather than being refused: right after a
    rotation, every request with the new key id shares the one fetch its first request started.
    `clock` is wall-clock time in seconds.
    """

    def __init__(self, settings: TokenIssuer, http: httpx.AsyncClient, clock: Callable[[], float]) -> None:
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
        """The key that must have signed a token naming `kid` with `algorithm`, or `AuthenticationFailed`."""
        if self._keys is None or self._clock() - self._fetched_at >= self._settings.jwks_cache_seconds:
            await self._refresh("key set not fetched yet" if self._keys is None else "cached key set is stale")
        key = self._find(kid, algorithm)
        # The lock is held exactly while a fetch is in flight.
        if key is None and (self._lock.locked() or self._may_fetch()):
            await self._refresh(f"unknown key id {quoted(kid)}")
            key = self._find(kid, algorithm)
        if key is None:
            raise AuthenticationFailed(f"unknown signing key {quoted(kid)} for issuer {quoted(self._settings.issuer)}")
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
            raise AuthenticationFailed(f"signing key {quoted(kid)} is not usable with algorithm {algorithm.name!r}")
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
            except IssuerDocumentUnavailable as error:
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
                f"cannot fetch signing keys for issuer {quoted(self._settings.issuer)}; try again later"
            )

    async def _download(self) -> tuple[Key, ...]:
        if self._jwks_url is None:
            self._jwks_url = await discover_jwks_uri(self._http, self._settings)
        document = await fetch_json_object(self._http, self._jwks_url)
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise IssuerDocumentUnavailable(f"{self._jwks_url} is not a JWK set (no 'keys' list)")
        keys = tuple(key for key in map(_signing_key, entries) if key is not None)
        if not keys:
            raise IssuerDocumentUnavailable(f"{self._jwks_url} holds no usable public signing key")
        return keys


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
