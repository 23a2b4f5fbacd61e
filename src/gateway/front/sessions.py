"""Session ids that carry their own state, so any worker of any replica can serve any request.

A 2025-11-25 (or older) client keeps one `Mcp-Session-Id` for its whole conversation, and a
load balancer may send each request to a different process. Instead of keeping sessions in
one process's memory, the id itself holds what a worker needs (the negotiated revision, who
opened the session, the client's name), sealed with AES-GCM under a key every process shares:
a worker that has never seen the session opens the id and serves the request. Keys rotate by
listing the new key first; ids sealed with an older listed key still open.

Ending a session (HTTP DELETE) cannot un-issue a sealed id, so ended ids are remembered until
they would have expired anyway; other processes learn of them through the signal bus.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.identity.principal import Principal

logger = logging.getLogger(__name__)

_PREFIX = "s1."
_NONCE_BYTES = 12
_ASSOCIATED_DATA = b"autonomy-gateway/mcp-session/1"
_KEY_CONTEXT = b"autonomy-gateway session key\x00"
#: Longer ids are not ours: refuse them before any decoding work.
_MAX_TOKEN_CHARS = 2048


@dataclass(frozen=True, slots=True)
class SealedSession:
    """What a worker needs to serve one request of a session it has never seen."""

    id: str
    """Short random name of the session: what audit, traces and cancellations refer to."""
    protocol_version: str
    owner: str
    """Digest of the credential that opened the session; any other credential gets 404."""
    client_name: str | None
    client_version: str | None
    issued_at: float


def owner_digest(principal: Principal) -> str:
    """Binds a session to the credential that opened it, without putting the identity in the id."""
    material = "\x00".join(
        (principal.auth_method, principal.credential_id or "", principal.agent, principal.user or "")
    ).encode()
    return hashlib.sha256(material).hexdigest()[:32]


class SessionSealer:
    """Issues and opens sealed session ids; holds the ended ones until they would expire."""

    def __init__(
        self,
        secrets_: Sequence[str],
        *,
        lifetime: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if secrets_:
            self._keys = [AESGCM(_derive(secret)) for secret in secrets_]
        else:
            logger.info(
                "session ids are sealed with a key made for this process; set server.session_keys to share "
                "sessions between workers or replicas"
            )
            self._keys = [AESGCM(os.urandom(32))]
        self._lifetime = lifetime
        self._clock = clock
        self._ended: dict[str, float] = {}

    def issue(
        self, principal: Principal, protocol_version: str, client_name: str | None, client_version: str | None
    ) -> tuple[SealedSession, str]:
        session = SealedSession(
            id=secrets.token_urlsafe(12),
            protocol_version=protocol_version,
            owner=owner_digest(principal),
            client_name=client_name,
            client_version=client_version,
            issued_at=self._clock(),
        )
        payload = json.dumps(
            [session.id, session.protocol_version, session.owner, client_name, client_version, session.issued_at],
            separators=(",", ":"),
        ).encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[0].encrypt(nonce, payload, _ASSOCIATED_DATA)
        return session, _PREFIX + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def open(self, token: str) -> SealedSession | None:
        """The session behind `token`, or None when it is forged, expired, ended or sealed with an unknown key."""
        if not token.startswith(_PREFIX) or len(token) > _MAX_TOKEN_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(token[len(_PREFIX) :] + "=" * (-len(token) % 4))
        except ValueError:
            return None
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        for key in self._keys:
            try:
                payload = key.decrypt(nonce, sealed, _ASSOCIATED_DATA)
            except (InvalidTag, ValueError):
                continue
            session = SealedSession(*json.loads(payload))
            if self._clock() - session.issued_at > self._lifetime or session.id in self._ended:
                return None
            return session
        return None

    def end(self, session: SealedSession) -> None:
        self.forget(session.id, session.issued_at + self._lifetime)

    def forget(self, session_id: str, until: float) -> None:
        """Refuse `session_id` from now until `until` (when its id would have expired anyway)."""
        now = self._clock()
        if until <= now:
            return
        self._ended[session_id] = until
        if len(self._ended) > 1024 and len(self._ended) % 1024 == 0:
            for ended_id, expiry in list(self._ended.items()):
                if expiry <= now:
                    del self._ended[ended_id]

    def expiry_of(self, session: SealedSession) -> float:
        return session.issued_at + self._lifetime


def _derive(secret: str) -> bytes:
    """Any long random string works as a key; hashing fixes its length for AES-256."""
    return hashlib.sha256(_KEY_CONTEXT + secret.encode()).digest()
