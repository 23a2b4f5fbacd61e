"""The web console: gateway.toml's `[console]` table.

People (never agents) sign in at `/ui` with a user key or, when `[console.oidc]` is set, through
the organisation's identity provider (`[auth.people]`). What they may do there follows their
roles: `viewer` reads, `approver` also decides the held calls whose policies name them, `admin`
also manages keys and users and reloads policies.
"""

from __future__ import annotations

from pydantic import Field

from gateway.settings.base import SettingsModel
from gateway.settings.console_oidc import ConsoleOidcSettings


class ConsoleSettings(SettingsModel):
    enabled: bool = Field(default=True, description="Serve the web console at `/ui`.")
    idle_timeout: float = Field(
        default=1800.0,
        gt=0,
        description="Seconds without a request after which a console session ends and its person signs in again.",
    )
    absolute_timeout: float = Field(
        default=43200.0,
        gt=0,
        description="Seconds after sign-in after which a console session ends, however active it is.",
    )
    viewer_roles: tuple[str, ...] = Field(
        default=("viewer", "approver", "admin"),
        description="Roles that may sign in and read every page. A person with none of them is refused at sign-in.",
    )
    approver_roles: tuple[str, ...] = Field(
        default=("approver", "admin"),
        description="Roles that may decide held calls in the console (only those whose approval policies name them).",
    )
    admin_roles: tuple[str, ...] = Field(
        default=("admin",),
        description="Roles that may create and revoke keys, manage users and reload policies in the console.",
    )
    oidc: ConsoleOidcSettings | None = Field(
        default=None,
        description=(
            "Sign-in through the identity provider `[auth.people]` names (authorization code with PKCE); "
            "unset: people sign in with their user keys only."
        ),
    )
