"""One bearer credential, several ways to prove it: routes each credential to the authenticator for its kind.

The `/mcp` door takes a single `Authorization: Bearer ...` header, whether the agent holds an API
key issued by the gateway or an access token from the organisation's identity provider. The two
never look alike (API keys carry no dots, JWTs are three dot-separated segments), so the shape
decides which authenticator sees the credential and a credential is never tried against both.
Before either sees it, a credential longer than `max_token_bytes` is refused unread: real API keys
are 47 bytes and real access tokens a few kilobytes, while the JOSE library would otherwise decode
a crafted token of over 100 KB on every request.
"""

from __future__ import annotations

from gateway.errors import AuthenticationFailed
from gateway.identity.api_keys import ApiKeyStore
from gateway.identity.jwt_auth import JwtAuthenticator
from gateway.identity.principal import Principal
from gateway.identity.signed_tokens import looks_like_jwt
from gateway.settings.auth import DEFAULT_MAX_TOKEN_BYTES

JWT_DISABLED = "JWT bearer tokens are not enabled on this gateway"
API_KEYS_DISABLED = "API keys are not enabled on this gateway"


class CompositeAuthenticator:
    """Authenticates API keys with `api_keys` and JWTs with `jwt`; either may be left out.

    A credential of a kind that is not configured is refused with a reason saying so, rather than
    "unknown key", so an operator who forgot to configure token issuers sees why at once.
    """

    def __init__(
        self,
        api_keys: ApiKeyStore | None,
        jwt: JwtAuthenticator | None,
        *,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
    ) -> None:
        if api_keys is None and jwt is None:
            raise ValueError("enable API keys, JWT bearer tokens, or both")
        if max_token_bytes < 1:
            raise ValueError("max_token_bytes must be at least 1")
        self._api_keys = api_keys
        self._jwt = jwt
        self._max_token_bytes = max_token_bytes

    async def authenticate(self, presented: str) -> Principal:
        """The principal the credential speaks for, or `AuthenticationFailed` saying why not."""
        # Headers arrive as latin-1, one character per byte, so the length is the size on the wire.
        if len(presented) > self._max_token_bytes:
            raise AuthenticationFailed(
                f"bearer credential is {len(presented)} bytes, over this gateway's limit of {self._max_token_bytes} "
                "(auth.max_token_bytes); ask the identity provider for a token with fewer claims"
            )
        if looks_like_jwt(presented):
            if self._jwt is None:
                raise AuthenticationFailed(JWT_DISABLED)
            return await self._jwt.authenticate(presented)
        if self._api_keys is None:
            raise AuthenticationFailed(API_KEYS_DISABLED)
        return await self._api_keys.authenticate(presented)
