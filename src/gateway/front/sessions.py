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

import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.identity.principal import Principal
from gateway.sealed_text import SealedText

logger = logging.getLogger(__name__)

_PREFIX = "s1."
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
        self._sealed = SealedText(
            secrets_,
            key_context=_KEY_CONTEXT,
            associated_data=_ASSOCIATED_DATA,
            prefix=_PREFIX,
            max_chars=_MAX_TOKEN_CHARS,
        )
        if self._sealed.process_local:
            logger.info(
                "session ids are sealed with a key made for this process; set server.session_keys to share "
                "sessions between workers or replicas"
            )
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
        values = [session.id, session.protocol_version, session.owner, client_name, client_version, session.issued_at]
        return session, self._sealed.seal(values)

    def open(self, token: str) -> SealedSession | None:
        """The session behind `token`, or None when it is forged, expired, ended or sealed with an unknown key."""
        values = self._sealed.open(token)
        if values is None:
            return None
        session = SealedSession(*values)
        if self._clock() - session.issued_at > self._lifetime or session.id in self._ended:
            return None
        return session

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
