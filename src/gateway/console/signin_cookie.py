"""A sign-in in progress, kept by the browser while the person is away at the identity provider.

Between sending a person to the provider and their coming back, the console must remember the
`state` it sent (so that only the browser that started a sign-in can finish it), the `nonce` the
ID token must carry, the PKCE verifier the code is redeemed with, where it sent the person back
to, and where in the console to go afterwards. Keeping that in the browser rather than in one
process's memory lets any process finish a sign-in another one started, provided they share a
key. The cookie is sealed with AES-GCM, so the browser can neither read the verifier nor change
where it is sent afterwards, and it opens for at most `SIGN_IN_SECONDS` after the sign-in began.

The keys are derived from `[server] session_keys`, the secrets every process behind one endpoint
already shares (the first seals, all open, as for session ids), under a context of their own so
a sign-in cookie never opens as anything else. Without them a key made for this process is used,
and a sign-in that comes back to another process, or after a restart, is simply started again.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: How long a person has to sign in at the provider and come back.
SIGN_IN_SECONDS = 600
_PREFIX = "c1."
_NONCE_BYTES = 12
_ASSOCIATED_DATA = b"autonomy-gateway/console-sign-in/1"
_KEY_CONTEXT = b"autonomy-gateway console sign-in key\x00"
#: Browsers keep cookies of up to about 4 KB; a longer value is not one of ours.
_MAX_VALUE_CHARS = 4000


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """What the console sent to the provider, needed to believe what comes back."""

    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    return_to: str
    started_at: float


class SignInCookie:
    """Seals a `PendingSignIn` into a cookie value and opens it again, for `SIGN_IN_SECONDS` at most."""

    def __init__(self, secrets: Sequence[str] = (), *, clock: Callable[[], float]) -> None:
        keys = [hashlib.sha256(_KEY_CONTEXT + secret.encode()).digest() for secret in secrets]
        self._keys = [AESGCM(key) for key in keys] if keys else [AESGCM(os.urandom(32))]
        self._clock = clock

    def seal(self, pending: PendingSignIn) -> str:
        payload = json.dumps(astuple(pending), separators=(",", ":")).encode()
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[0].encrypt(nonce, payload, _ASSOCIATED_DATA)
        return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")

    def open(self, value: str | None) -> PendingSignIn | None:
        """The sign-in `value` holds; None when absent, altered, sealed with another key, or too old."""
        if value is None or not value.startswith(_PREFIX) or len(value) > _MAX_VALUE_CHARS:
            return None
        encoded = value[len(_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except ValueError:
            return None
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        for key in self._keys:
            try:
                payload = key.decrypt(nonce, sealed, _ASSOCIATED_DATA)
            except (InvalidTag, ValueError):
                continue
            pending = PendingSignIn(*json.loads(payload))
            age = self._clock() - pending.started_at
            return pending if 0 <= age <= SIGN_IN_SECONDS else None
        return None
