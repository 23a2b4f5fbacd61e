"""What a signed-in person may do in the console, from their roles: read, decide, administer.

The checks run on the server for every route and every write (`Guard`); a hidden button is a
courtesy, never the control. Deciding a held call also passes the approval store's own checks
(only listed approvers count, never the requester or the user it acts for), so `approver` in the
console opens the door and the policy's `@approvers` decide who may walk through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gateway.console.sessions import ConsoleSession
from gateway.identity.users import User
from gateway.settings.console import ConsoleSettings


class Permission(StrEnum):
    VIEWER = "viewer"
    APPROVER = "approver"
    ADMIN = "admin"


def permissions_of(roles: tuple[str, ...], settings: ConsoleSettings) -> frozenset[Permission]:
    """The console permissions `roles` carry (`[console] viewer_roles`, `approver_roles`, `admin_roles`)."""
    held = set(roles)
    granted: set[Permission] = set()
    if held & set(settings.admin_roles):
        granted |= {Permission.ADMIN, Permission.APPROVER, Permission.VIEWER}
    if held & set(settings.approver_roles):
        granted |= {Permission.APPROVER, Permission.VIEWER}
    if held & set(settings.viewer_roles):
        granted.add(Permission.VIEWER)
    return frozenset(granted)


@dataclass(frozen=True, slots=True)
class Visitor:
    """The person behind a console request, with their session and what they may do."""

    session: ConsoleSession
    permissions: frozenset[Permission]

    @property
    def user(self) -> User:
        return self.session.user

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions
