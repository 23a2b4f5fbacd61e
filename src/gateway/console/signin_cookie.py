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

from collections.abc import Callable, Sequence
from dataclasses import astuple, dataclass

from gateway.sealed_text import SealedText

#: How long a person has to sign in at the provider and come back.
SIGN_IN_SECONDS = 600
_PREFIX = "c1."
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
        self._sealed = SealedText(
            secrets,
            key_context=_KEY_CONTEXT,
            associated_data=_ASSOCIATED_DATA,
            prefix=_PREFIX,
            max_chars=_MAX_VALUE_CHARS,
        )
        self._clock = clock

    def seal(self, pending: PendingSignIn) -> str:
        return self._sealed.seal(astuple(pending))

    def open(self, value: str | None) -> PendingSignIn | None:
        """The sign-in `value` holds; None when absent, altered, sealed with another key, or too old."""
        values = self._sealed.open(value)
        if values is None:
            return None
        pending = PendingSignIn(*values)
        age = self._clock() - pending.started_at
        return pending if 0 <= age <= SIGN_IN_SECONDS else None
