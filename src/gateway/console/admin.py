"""What the console's administration forms share: reading their fields, and the audit event of each change.

Every change an admin makes (a key issued or revoked, a user created or disabled) is a console
audit event naming the person, how they signed in and where from. Secrets never reach it: the
events carry ids, names and roles, which is what a later reader needs to tell what was done.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request

from gateway.console.access import Visitor
from gateway.console.services import ConsoleServices

_ROLE_SEPARATORS = re.compile(r"[\s,]+")


def field(form: FormData, name: str) -> str:
    """A text field of the form, trimmed; empty when missing or not text (a file)."""
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def roles_of(text: str) -> list[str]:
    """Role names typed as people type lists: separated by commas, spaces or both."""
    return [role for role in _ROLE_SEPARATORS.split(text) if role]


async def record(
    services: ConsoleServices,
    request: Request,
    visitor: Visitor,
    action: str,
    *,
    target: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """The audit event of an admin's change, naming them; `details` must hold no secret."""
    await services.audit.record_console_event(
        action,
        user=visitor.user.name,
        via=visitor.session.via,
        client_address=request.client.host if request.client else None,
        target=target,
        details=details,
    )
