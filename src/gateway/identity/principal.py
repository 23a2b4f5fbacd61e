"""Who is calling: the one identity value every stage of a request sees.

Every way in (API key, JWT, OIDC) ends in the same `Principal`, so policy, approvals and audit
never care how the caller proved who it is; `auth_method` and `credential_id` are kept only so the
audit log can say which credential was used (and a revoked one can be traced), never the secret.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller, built once per request and never changed afterwards.

    `agent` is the Cedar `Agent` entity id, `roles` its `Role` parents, and `user` the human the
    agent acts for when the credential says so (a token's subject; API keys carry none).
    `scopes` are the OAuth scopes a token grants (`principal.scopes` in Cedar); they confer no role.
    """

    agent: str
    roles: tuple[str, ...]
    user: str | None = None
    scopes: tuple[str, ...] = ()
    auth_method: str = "api_key"
    credential_id: str | None = None
