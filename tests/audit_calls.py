"""Calls as the pipeline hands them to the audit recorder, for tests that record calls directly."""

from __future__ import annotations

from typing import Any

from gateway.calls import Call, Origin, Target
from gateway.identity.principal import Principal


def audit_call(
    principal: Principal,
    name: str | None = None,
    *,
    method: str = "tools/call",
    arguments: Any = None,
    reasoning: str | None = None,
    workflow: str | None = None,
    target: Target | None = None,
) -> Call:
    """`principal`'s request for `name`, with nothing else of the connection it came over."""
    return Call(method, Origin(principal), name, arguments, reasoning=reasoning, workflow=workflow, target=target)
